/* The prober role (placeholder loop until the checks land): idles, exits on SIGTERM or when the master dies. */
#include <signal.h>
#include <unistd.h>

#include "prober/prober.h"

int
prober_main(struct conf *cf, struct shm_hdr *shm)
{
	(void)cf;
	(void)shm;
	signal(SIGTERM, SIG_DFL);
	while (getppid() != 1)
		sleep(1);
	return 0;
}
