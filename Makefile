# sparrow - plain Makefile (no other build system).
#   make            optimized build: ./sparrow and the unit tests
#   make test       build and run every test (prints `N passed, M failed`)
#   make asan       AddressSanitizer + UBSan build into build/asan
#   make test-asan  the tests on the sanitizer build
#   make serve      install dependencies, build, serve the default model on 127.0.0.1:8080
#   make run        greedy story from the default model
#   make bench      sparrow bench on the shipped models, next to llama.cpp's figures
#   make fuzz       libFuzzer (clang, ASan + UBSan) on every tests/fuzz/fuzz_*.c harness,
#                   FUZZ_SECONDS each (default 60); make fuzz-ci: 15 s each
#   make valgrind   memcheck over the light unit tests and a short daemon session (build/valgrind)
#   make fault      build/fault/sparrow: the daemon with -DSPARROW_FAULT_INJECTION hooks
SHARED ?= ../shared
MODEL ?= $(SHARED)/models/stories260K-f32.gguf
SAN ?= 0

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -march=native -g -pthread -I. $(WARN) \
               $(shell pkg-config --cflags jansson 2>/dev/null)
LDLIBS := -lopenblas -ljansson -lmicrohttpd $(shell pkg-config --libs libsystemd 2>/dev/null || echo -lsystemd) -lm -pthread

ifeq ($(SAN),1)
BUILD := build/asan
CFLAGS := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
          -fno-sanitize-recover=all
LDFLAGS := -fsanitize=address,undefined
else ifeq ($(SAN),fuzz)
# libFuzzer build of the library; harnesses link with -fsanitize=fuzzer.
CC := clang
BUILD := build/fuzz
# The portable kernels only (kernels/cpu.h): all the parsers need, and the
# SIMD kernels, dead code then, are not compiled under the sanitizers.
CFLAGS := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
          -fno-sanitize-recover=all -DSPARROW_PORTABLE_ONLY
LDFLAGS := -fsanitize=address,undefined
else ifeq ($(SAN),fault)
# The daemon with the fault-injection hooks the fault tests drive (never shipped).
BUILD := build/fault
CFLAGS := $(CFLAGS_BASE) -O2 -DSPARROW_FAULT_INJECTION
LDFLAGS :=
else ifeq ($(SAN),valgrind)
# The optimized build for memcheck: valgrind cannot run AVX-512, so AVX2 as the
# baseline (the AVX-512 kernels are chosen at run time, and not under valgrind).
BUILD := build/valgrind
CFLAGS := $(subst -march=native,-march=x86-64-v3,$(CFLAGS_BASE)) -O2
LDFLAGS :=
else
BUILD := build/opt
CFLAGS := $(CFLAGS_BASE) -O2
LDFLAGS :=
endif

LIB_SRCS := $(wildcard config/*.c kernels/*.c engine/*.c scheduler/*.c) \
            $(filter-out server/main.c,$(wildcard server/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BIN := $(BUILD)/sparrow

.PHONY: all deps test asan test-asan serve run bench install clean check-layers fuzz fuzz-ci fuzz-bins valgrind fault man deb plots
all: $(BIN) $(TEST_BINS)
ifeq ($(SAN),0)
	@ln -sf $(BIN) sparrow
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Build identity for `sparrow --version` and /metrics: only server/buildinfo.o
# gets the commit and the flags, and it is recompiled only when they change
# (the stamp file is rewritten only when its content differs).
GIT_DESC := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
BUILDINFO_DEFS := -DSPARROW_GIT='"$(GIT_DESC)"' -DSPARROW_CFLAGS='"$(strip $(CFLAGS))"'
ifeq ($(SAN),fuzz)     # no baked-in identity (quoting CFLAGS breaks on the define above): "unknown"; fuzz_http needs /metrics
BUILDINFO_DEFS :=
endif
BUILDINFO_KEY := $(GIT_DESC) $(CC) $(strip $(CFLAGS))
$(BUILD)/server/buildinfo.o: CFLAGS += $(BUILDINFO_DEFS)
$(BUILD)/server/buildinfo.o: $(BUILD)/buildinfo.stamp
$(BUILD)/buildinfo.stamp: FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' "$(BUILDINFO_KEY)" | cmp -s - $@ || printf '%s\n' "$(BUILDINFO_KEY)" > $@
FORCE:

$(BUILD)/libsparrow.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/server/main.o $(BUILD)/libsparrow.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libsparrow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Fuzz harnesses: under SAN=fuzz linked with libFuzzer; in every other build
# each one is compiled again with its entry point renamed (fuzz_api_one_input)
# for test_fuzz_regressions, which replays tests/fuzz/{regressions,corpus}/.
FUZZ_HARNESSES := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_REPLAY_OBJS := $(FUZZ_HARNESSES:%=$(BUILD)/tests/fuzz/replay_%.o)
FUZZ_SECONDS ?= 60

$(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLVMFuzzerTestOneInput=$*_one_input -MMD -MP -c $< -o $@

$(BUILD)/tests/test_fuzz_regressions: $(BUILD)/tests/unit/test_fuzz_regressions.o $(FUZZ_REPLAY_OBJS) $(BUILD)/libsparrow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/libsparrow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-bins: $(FUZZ_HARNESSES:%=$(BUILD)/fuzz/%)

fuzz:
	@$(MAKE) --no-print-directory SAN=fuzz fuzz-bins
	@SHARED=$(SHARED) bash tests/fuzz/run-fuzz.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=15

valgrind:
	@$(MAKE) --no-print-directory SAN=valgrind all
	@SHARED=$(SHARED) bash scripts/valgrind.sh build/valgrind

fault:
	@$(MAKE) --no-print-directory SAN=fault build/fault/sparrow

deps:
	@bash scripts/install-deps.sh

test: deps
	@$(MAKE) --no-print-directory all check-layers
	@SHARED=$(SHARED) BIN=$(BIN) bash tests/run-tests.sh $(BUILD)/tests

asan:
	$(MAKE) SAN=1 all

test-asan:
	$(MAKE) SAN=1 test

serve: deps
	@$(MAKE) --no-print-directory all
	./sparrow serve -m $(MODEL) --host 127.0.0.1 --port 8080

run: all
	./sparrow run -m $(MODEL) -p "Once upon a time" -n 128

bench: all
	bash scripts/bench.sh

# Calls go one way: server -> scheduler -> engine -> kernels; config is read by all.
check-layers:
	@bad=$$(grep -l -E '#include "(server|scheduler|engine)/' kernels/*.[ch] 2>/dev/null; \
	        grep -l -E '#include "(server|scheduler)/' engine/*.[ch] 2>/dev/null; \
	        grep -l -E '#include "server/' scheduler/*.[ch] 2>/dev/null; \
	        grep -l -E '#include "(server|scheduler|engine|kernels)/' config/*.[ch] 2>/dev/null); \
	if [ -n "$$bad" ]; then echo "layering violated in: $$bad"; exit 1; fi

# make install [DESTDIR=/tmp/root] [PREFIX=/usr]: binary, units, config (an
# existing /etc/sparrow/sparrow.conf is kept), sysusers and tmpfiles snippets.
PREFIX ?= /usr
UNITDIR ?= /lib/systemd/system
install: all
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sparrow
	install -d $(DESTDIR)$(UNITDIR)
	for u in systemd/*.service systemd/*.socket; do install -m 0644 $$u $(DESTDIR)$(UNITDIR)/; done
	install -D -m 0644 systemd/sparrow.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/sparrow.conf
	install -D -m 0644 systemd/sparrow.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/sparrow.conf
	[ -e $(DESTDIR)/etc/sparrow/sparrow.conf ] || install -D -m 0644 config/sparrow.conf $(DESTDIR)/etc/sparrow/sparrow.conf

clean:
	rm -rf build sparrow

-include $(LIB_OBJS:.o=.d) $(BUILD)/server/main.d $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d) \
         $(FUZZ_REPLAY_OBJS:.o=.d) $(FUZZ_HARNESSES:%=$(BUILD)/tests/fuzz/%.d)

# Man pages from the binary's own --help (scripts/gen-man.sh); docs/man/ holds
# the committed result and tests/cli/test_man.sh fails when it is stale.
man: $(BIN)
	bash scripts/gen-man.sh $(BIN) docs/man

# Debian package (debian/, debhelper): build/deb/sparrow_VERSION_amd64.deb.
# dpkg-buildpackage writes into the parent directory; the results move here.
deb:
	dpkg-buildpackage -us -uc -b
	@mkdir -p build/deb
	@v=$$(dpkg-parsechangelog -S Version); \
	 mv ../sparrow_$${v}_*.deb ../sparrow-dbgsym_$${v}_*.deb ../sparrow_$${v}_*.buildinfo ../sparrow_$${v}_*.changes build/deb/ && \
	 ls -l build/deb/sparrow_$${v}_*.deb

# PNGs under docs/img/ from the checked-in results in docs/data/ (gnuplot).
plots:
	bash scripts/plot-bench.sh -o docs/img/bench.png docs/data/bench-sparrow.jsonl docs/data/bench-llamacpp.jsonl
	bash scripts/plot-serving.sh -o docs/img/serving.png docs/data/serving-sparrow.jsonl docs/data/serving-llamaserver.jsonl
	bash scripts/plot-prefix.sh -o docs/img/prefix.png docs/data/serving-prefix-sparrow.jsonl docs/data/serving-prefix-llamaserver.jsonl
	bash scripts/plot-sparse.sh -o docs/img/sparse.png docs/data/sparse.jsonl
	bash scripts/plot-fairness.sh -o docs/img/fairness.png docs/data/fairness.json
