# sparrow - plain Makefile (no other build system).
#   make            optimized build: ./sparrow and the unit tests
#   make test       build and run every test (prints `N passed, M failed`)
#   make asan       AddressSanitizer + UBSan build into build/asan
#   make test-asan  the tests on the sanitizer build
#   make serve      install dependencies, build, serve the default model on 127.0.0.1:8080
#   make run        greedy story from the default model
#   make bench      sparrow bench on the shipped models, next to llama.cpp's figures
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

.PHONY: all deps test asan test-asan serve run bench clean check-layers
all: $(BIN) $(TEST_BINS)
ifeq ($(SAN),0)
	@ln -sf $(BIN) sparrow
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsparrow.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/server/main.o $(BUILD)/libsparrow.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libsparrow.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

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

clean:
	rm -rf build sparrow

-include $(LIB_OBJS:.o=.d) $(BUILD)/server/main.d $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d)
