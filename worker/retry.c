/* The retry rules: when a failed or refused attempt may be replayed on another backend. */
#include "worker/retry.h"

int
retry_replayable(const struct retry_facts *f)
{
	if (f->answered || !f->held)
		return 0;
	switch (f->err) {
	case UPE_CONNECT:
		return 1;
	case UPE_STATUS:
		return f->idempotent;
	case UPE_SEND:
	case UPE_EMPTY:
	case UPE_HELD:
		return f->idempotent;
	case UPE_TIMEOUT:
		/* a timeout while the client still sends its body is the client's, not the backend's */
		return f->idempotent && f->complete;
	case UPE_BAD:
	case UPE_TRUNCATED:
		return 0;
	}
	return 0;
}

int
retry_status_wanted(const uint8_t *bitmap, int status,
    const struct retry_facts *f, int attempts, int max)
{
	if (status < 100 || status > 599)
		return 0;
	if (!(bitmap[status / 8] & (1u << (status % 8))) && !(f->llm && status >= 500))
		return 0;
	return f->idempotent && f->held && f->complete && !f->answered &&
	    attempts <= max;
}
