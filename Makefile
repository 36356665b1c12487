# moat — network egress enforcer for AI agents and MCP servers.
#
#   make              build/moat
#   make check        unit + integration tests (installs missing Debian packages)
#   make check SAN=1  the same under ASan + UBSan
#   make fuzz         libFuzzer targets in build-fuzz/ (clang)
#   make demo         the live demo in throw-away network namespaces
#
# Several trees can be built side by side: make BUILD=build-foo.

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
PKGS    := libnftnl libmnl libcurl libcjson libpcap
# libcurl (--engine) and libpcap (--pcap) are opened on first use (common/dlib.h): their
# headers come from PKGS, but moat is not linked with them, so other commands never map them.
LINK_PKGS := libnftnl libmnl libcjson
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN    := -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wwrite-strings \
           -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
           -Wimplicit-fallthrough -Wno-unused-parameter
ifeq ($(CI),true)
WARN    += -Werror
endif

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -DMOAT_VERSION='"$(VERSION)"' \
           -DMOAT_PROFILE_DIR='"$(PREFIX)/share/moat/profiles"' \
           -DMOAT_SRC_PROFILE_DIR='"$(CURDIR)/profiles/builtin"' \
           -DMOAT_LIBEXEC_DIR='"$(PREFIX)/libexec/moat"' \
           -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(LINK_PKGS) 2>/dev/null) -lpthread

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

MODULES  := common profiles enforcer tproxy runner tools
LIB_SRCS := $(filter-out runner/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/runner/main.o

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(BUILD)/tests/helpers/%)

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BUILD ?= build-fuzz
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

.PHONY: all deps bench-deps check check-unit check-integration check-fuzz fuzz demo install clean bench bench-quick
all: $(BUILD)/moat $(BUILD)/moat-pause

$(BUILD)/libmoat.a: $(LIB_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/moat: $(MAIN_OBJ) $(BUILD)/libmoat.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmoat.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -o $@ $< $(BUILD)/libmoat.a $(LDFLAGS) $(LDLIBS) -lcmocka

# Helper programs used by tests and benchmarks (no libmoat): the clients and servers
# moat is tested against, so never under moat's sanitizers (a leak report of a
# client's OpenSSL objects would fail a test of moat).
NOSAN = $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(1))
$(BUILD)/tests/helpers/%: tests/helpers/%.c
	@mkdir -p $(@D)
	$(CC) $(call NOSAN,$(CFLAGS)) -o $@ $< $(call NOSAN,$(LDFLAGS)) -lssl -lcrypto -lpthread

# Programs that run inside container images, which may have no libc: static, and never with
# sanitizers (their runtimes do not link statically).  moat-pause is moat's own (installed to
# libexec, found next to the moat binary first); pause and tlsclient go into the test image.
STATIC_CFLAGS := -O2 -g -std=gnu11 $(WARN) -D_GNU_SOURCE
$(BUILD)/moat-pause: runner/pause/moat-pause.c
	@mkdir -p $(@D)
	$(CC) $(STATIC_CFLAGS) -static -o $@ $<
$(BUILD)/tests/helpers/pause: $(BUILD)/moat-pause
	@mkdir -p $(@D)
	cp $< $@
$(BUILD)/tests/helpers/tlsclient: tests/helpers/tlsclient.c
	@mkdir -p $(@D)
	$(CC) $(STATIC_CFLAGS) -static -o $@ $< -lssl -lcrypto -lpthread

deps:
	@tools/deps

check: deps
	$(MAKE) all tests
	tests/run --build $(BUILD)

tests: $(BUILD)/moat $(UNIT_BINS) $(HELPER_BINS)

check-unit: $(UNIT_BINS)
	tests/run --build $(BUILD) --unit-only

check-integration: $(BUILD)/moat $(HELPER_BINS)
	tests/run --build $(BUILD) --integration-only

# libFuzzer: every parser has a target; FUZZ_SECONDS bounds a run of each.  The library
# is compiled once with coverage instrumentation (fuzzer-no-link); each target links it.
FUZZ_CFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
               -DMOAT_FUZZ -DMOAT_VERSION='"$(VERSION)"' -DMOAT_PROFILE_DIR='"/nonexistent"' \
               -DMOAT_SRC_PROFILE_DIR='"/nonexistent"' -DMOAT_LIBEXEC_DIR='"/nonexistent"'
FUZZ_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
fuzz: $(FUZZ_BINS)
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c -o $@ $<
$(FUZZ_BUILD)/libmoat-fuzz.a: $(FUZZ_OBJS)
	$(AR) rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libmoat-fuzz.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
		$(FUZZ_BUILD)/libmoat-fuzz.a $(LDLIBS)

FUZZ_SECONDS ?= 20
check-fuzz: fuzz
	tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)

demo: deps
	$(MAKE) all $(HELPER_BINS)
	tools/demo --build $(BUILD)

bench-deps:
	@tools/deps --optional

bench: bench-deps
	$(MAKE) all $(HELPER_BINS)
	bench/run --build $(BUILD)

bench-quick: bench-deps
	$(MAKE) all $(HELPER_BINS)
	bench/run --build $(BUILD) --quick

install: $(BUILD)/moat $(BUILD)/moat-pause
	install -D -m 0755 $(BUILD)/moat $(DESTDIR)$(PREFIX)/bin/moat
	install -D -m 0755 $(BUILD)/moat-pause $(DESTDIR)$(PREFIX)/libexec/moat/moat-pause
	install -d $(DESTDIR)$(PREFIX)/share/moat/profiles
	install -m 0644 profiles/builtin/*.json $(DESTDIR)$(PREFIX)/share/moat/profiles/
	install -D -m 0644 docs/moat.1 $(DESTDIR)$(PREFIX)/share/man/man1/moat.1

clean:
	rm -rf build build-* $(FUZZ_BUILD)

-include $(shell find $(BUILD) $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
