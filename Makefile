# routerd: one Makefile.  make | make test | make run | make install | make bench | make bench-llm | make fuzz | make clean
# V=1 prints full commands; SAN=1 builds with ASan+UBSan into build-san/; CI=... adds -Werror.

CC	?= cc
PREFIX	?= /usr/local
DESTDIR	?=
BINDIR	 = $(PREFIX)/sbin
MANDIR	 = $(PREFIX)/share/man
SYSCONFDIR ?= /etc

LLHTTP_SRC	?= /usr/share/llhttp
LLHTTP_INC	?= /usr/share/include/llhttp

# BUILD=dir puts objects elsewhere (parallel sessions in one tree).
BUILD	?= build
ifeq ($(SAN),1)
B	 = $(BUILD)-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT	 = -O1 -g
else
B	 = $(BUILD)
SANFLAGS =
OPT	 = -O2 -g
endif

WARN	 = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wpointer-arith -Wcast-qual -Wformat=2 -Wno-unused-parameter
ifneq ($(CI),)
WARN	+= -Werror
endif

CPPFLAGS += -D_GNU_SOURCE -I. -I$(LLHTTP_INC)
CFLAGS	 ?= $(OPT)
CFLAGS	 += -std=c11 -pipe $(WARN) $(SANFLAGS) -MMD -MP
LDFLAGS	 += $(SANFLAGS)
LDLIBS	 = -lyaml -ljansson -lbsd -lssl -lcrypto -lm

ifeq ($(V),1)
Q =
else
Q = @
endif

# Everything routerd is made of, but its main(), so the tests link the same code.
CORE_SRCS := $(wildcard lib/*.c conf/*.c shm/*.c worker/*.c prober/*.c syncer/*.c) \
	     $(filter-out master/main.c,$(wildcard master/*.c))
CORE_OBJS := $(CORE_SRCS:%.c=$(B)/%.o)
LLHTTP_OBJS := $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o
CTL_SRCS  := $(wildcard ctl/*.c)
CTL_OBJS  := $(CTL_SRCS:%.c=$(B)/%.o)
FAKEBE_SRCS := $(wildcard tests/fakebe/*.c)
FAKEBE_OBJS := $(FAKEBE_SRCS:%.c=$(B)/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

FAKEREG_SRC := $(wildcard tests/fakereg/fakereg.py)

PROGS	 = $(B)/routerd $(if $(CTL_SRCS),$(B)/routerctl) $(if $(FAKEBE_SRCS),$(B)/fakebe) \
	   $(if $(FAKEREG_SRC),$(B)/fakereg)
ifeq ($(BUILD),build)
PROGS	+= routerd $(if $(CTL_SRCS),routerctl)
endif

.PHONY: all test unit integration run install bench bench-llm clean deps lint-man deb check-sdk fuzz fuzz-build

all: $(PROGS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# llhttp's generated C is not ours: compile it without our warning set.
$(B)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      llhttp/$*.c")
	$(Q)$(CC) $(CPPFLAGS) $(OPT) $(SANFLAGS) -std=c11 -w -c -o $@ $<

$(B)/routerd: $(B)/master/main.o $(CORE_OBJS) $(LLHTTP_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/routerctl: $(CTL_OBJS) $(B)/lib/log.o $(B)/lib/ctlproto.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/fakebe: $(FAKEBE_OBJS) $(LLHTTP_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lpthread

# The fake service registry is Python 3 (stdlib only): "building" it is a copy.
$(B)/fakereg: $(FAKEREG_SRC)
	@mkdir -p $(dir $@)
	$(Q)cp $< $@.tmp && chmod 755 $@.tmp && mv -f $@.tmp $@

routerd: $(B)/routerd
	$(Q)cp $< $@.tmp && mv -f $@.tmp $@
routerctl: $(B)/routerctl
	$(Q)cp $< $@.tmp && mv -f $@.tmp $@

# A unit suite links only the modules it names in UNIT_LINK_<suite> (default: all of them).
modobjs = $(patsubst %.c,$(B)/%.o,$(filter-out master/main.c ctl/routerctl.c,$(foreach m,$(1),$(wildcard $(m)/*.c))))
UNIT_LINK_shm	= shm lib
UNIT_LINK_conf	= conf lib
UNIT_LINK_ctl	= ctl lib
UNIT_LINK_manpage	= conf lib
UNIT_LINK_breaker	= prober shm conf lib
UNIT_LINK_prober	= prober shm conf lib
UNIT_LINK_signals	= prober shm conf lib
ALL_MODS	= lib conf shm worker prober syncer master

.SECONDEXPANSION:
$(B)/tests/test_%: tests/unit/test_%.c $$(call modobjs,$$(or $$(UNIT_LINK_$$*),$(ALL_MODS))) $(LLHTTP_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion -lpthread

# make test: every unit suite (criterion), then the integration suite on real processes.
test: all $(UNIT_BINS) lint-man
	@sh tests/unit/run.sh $(UNIT_BINS)
	@$(MAKE) --no-print-directory integration

unit: $(UNIT_BINS)
	@sh tests/unit/run.sh $(UNIT_BINS)

integration: all
	@ROUTERD=$(abspath $(B))/routerd FAKEBE=$(abspath $(B))/fakebe \
	    ROUTERCTL=$(abspath $(B))/routerctl SAN=$(SAN) \
	    python3 tests/integration/run.py

# make check-sdk: the official openai SDK (node) as a real client; needs node, npm and the npm registry.
check-sdk: all
	@bash tests/sdk/run.sh $(abspath $(B))

# make run: routerd in the foreground in front of two demo backends.
run: all
	@sh tests/demo.sh $(abspath $(B))/routerd $(abspath $(B))/fakebe

$(B)/bench-select: bench/select.c $(call modobjs,shm lib) $(B)/worker/balance.o $(B)/conf/conf.o $(B)/conf/directives.o $(B)/conf/yaml.o $(B)/conf/dump.o $(B)/conf/default.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench-registry: bench/registry.c $(CORE_OBJS) $(LLHTTP_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench: all $(B)/bench-select $(B)/bench-registry
	@B=$(B) sh bench/run.sh

# make bench-llm: nginx, HAProxy and routerd's strategies in front of 4 simulated vLLM GPUs
# (tests/vllmsim), streaming workloads; BENCH_LLM_SECONDS=N shortens each run (default 20).
bench-llm: all
	@B=$(B) ROUTERD=$(abspath $(B))/routerd bash bench/llm/run.sh

# make fuzz: every libFuzzer harness tests/fuzz/fuzz_NAME.c, built with clang into
# $(BUILD)-fuzz/ (the project's objects too, instrumented), then each run for FUZZ_SECONDS
# on a copy of tests/fuzz/corpus/NAME/.  A new harness is a new file: it links every module
# unless FUZZ_LINK_NAME names fewer, takes FUZZ_MAXLEN_NAME (default 4096) bytes at most and
# FUZZ_OPTS_NAME as more libFuzzer flags (joined by +).
FUZZ_CC		?= clang
FUZZ_B		 = $(BUILD)-fuzz
FUZZ_SECONDS	?= 60
FUZZ_SAN	 = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
		   -fno-omit-frame-pointer
FUZZ_CFLAGS	 = -O1 -g -std=c11 -pipe $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP
FUZZ_SRCS	:= $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES	:= $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
FUZZ_BINS	:= $(FUZZ_NAMES:%=$(FUZZ_B)/fuzz_%)
FUZZ_COMMON	:= $(FUZZ_B)/tests/fuzz/common.o
FUZZ_LLHTTP	:= $(FUZZ_B)/llhttp/llhttp.o $(FUZZ_B)/llhttp/api.o $(FUZZ_B)/llhttp/http.o
# FUZZ_LINK_NAME: module directories (every .c in them) and single .c files.
fuzzobjs = $(patsubst %.c,$(FUZZ_B)/%.o,$(filter-out master/main.c ctl/routerctl.c,\
	   $(foreach m,$(1),$(wildcard $(m)/*.c)) $(filter %.c,$(1))))
FUZZ_LINK_conf	= conf lib
FUZZ_LINK_http	= worker/http.c
FUZZ_LINK_jscan	= worker/jscan.c
FUZZ_LINK_prom	= prober/signals.c
FUZZ_MAXLEN_conf	= 8192
FUZZ_MAXLEN_registry	= 16384
FUZZ_MAXLEN_http	= 8192
FUZZ_MAXLEN_h1	= 8192
FUZZ_MAXLEN_jscan	= 8192
FUZZ_MAXLEN_reframe	= 65536
FUZZ_MAXLEN_regmsg	= 16384
# its log line for every malformed message would fill the run's log: stderr closed (libFuzzer
# and the sanitizers still report); replay a crash without it to see the harness's messages
FUZZ_OPTS_regmsg	= -close_fd_mask=2

$(FUZZ_B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_B)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  llhttp/$*.c")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -std=c11 -w -c -o $@ $<

$(FUZZ_B)/fuzz_%: $(FUZZ_B)/tests/fuzz/fuzz_%.o $(FUZZ_COMMON) \
    $$(call fuzzobjs,$$(or $$(FUZZ_LINK_$$*),$(ALL_MODS))) $(FUZZ_LLHTTP)
	@$(if $(Q),echo "  FUZZLD  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS) -ldl

# Objects only the harnesses name are still worth keeping between runs.
.SECONDARY: $(FUZZ_LLHTTP) $(FUZZ_COMMON)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_B) $(FUZZ_SECONDS) \
	    $(foreach n,$(FUZZ_NAMES),$(n):$(or $(FUZZ_MAXLEN_$(n)),4096):$(FUZZ_OPTS_$(n)))

# The config goes to $(SYSCONFDIR)/routerd (/etc: routerd reads /etc/routerd/routerd.yaml
# whatever PREFIX is); an existing one is kept.
install: $(B)/routerd $(if $(CTL_SRCS),$(B)/routerctl)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/routerd
	install -m 755 $(B)/routerd $(DESTDIR)$(BINDIR)/routerd
	$(if $(CTL_SRCS),install -m 755 $(B)/routerctl $(DESTDIR)$(BINDIR)/routerctl)
	install -m 644 $(wildcard man/*.8) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(wildcard man/*.5) $(DESTDIR)$(MANDIR)/man5/
	test -f $(DESTDIR)$(SYSCONFDIR)/routerd/routerd.yaml || install -m 644 conf/routerd.yaml $(DESTDIR)$(SYSCONFDIR)/routerd/routerd.yaml

# mandoc -T lint, warnings and style included.  "referenced manual not found" only says which
# pages this machine has installed (ours are not), so it does not count.
lint-man:
	@command -v mandoc >/dev/null || { echo "lint-man: mandoc is not installed (make deps)" >&2; exit 1; }
	@out=$$(mandoc -T lint -W style man/*.8 man/*.5 2>&1 | \
	    grep -v -e 'STYLE: referenced manual not found' -e 'outdated mandoc.db'); \
	if [ -n "$$out" ]; then echo "$$out"; echo "lint-man: mandoc -T lint is not clean" >&2; exit 1; fi; \
	echo "== mandoc -T lint man/: clean"

# make deb: the Debian package (dpkg-buildpackage, debhelper) from a copy of the sources in
# $(B)/deb, so that the tree stays clean; the .deb lands in $(B)/deb.
DEB_DIR	 = $(B)/deb
DEB_SRCS = Makefile $(sort $(patsubst %/,%,$(dir $(CORE_SRCS) $(CTL_SRCS)))) man packaging
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/routerd
	tar -cf - --exclude='*.o' --exclude='*.d' $(DEB_SRCS) | tar -xf - -C $(DEB_DIR)/routerd
	cp -R packaging/debian $(DEB_DIR)/routerd/debian
	cp packaging/routerd.init packaging/routerd.service packaging/routerd.logrotate $(DEB_DIR)/routerd/debian/
	cd $(DEB_DIR)/routerd && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	    dpkg-buildpackage -b -us -uc
	@ls $(DEB_DIR)/*.deb

deps:
	sh packaging/build-deps.sh

clean:
	rm -rf $(BUILD) $(BUILD)-san $(BUILD)-fuzz routerd routerctl

-include $(shell find $(B) -path '$(B)/deb' -prune -o -name '*.d' -type f -print 2>/dev/null)
-include $(shell find $(FUZZ_B) -name '*.d' -type f -print 2>/dev/null)
