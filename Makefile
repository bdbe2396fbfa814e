# The commands people type.  The real build is Meson + Ninja in $(BUILD).
BUILD      ?= build
BUILD_SAN  ?= build-san
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all deps build build-san run install check check-quick check-san clean bench fuzz check-valgrind

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

# Address + undefined-behaviour sanitizers, clang so libFuzzer is there too.
$(BUILD_SAN)/build.ninja:
	CC=clang meson setup $(BUILD_SAN) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false

build-san: deps $(BUILD_SAN)/build.ninja
	@ninja -C $(BUILD_SAN)

run: build
	@scripts/run.sh $(BUILD)

# meson install from $(BUILD): programs, libsnbd, headers, snbd.pc, man
# pages, SYSCONFDIR/snbd/snbd.conf and the systemd units (dist/).
# PREFIX is Meson's prefix (with /usr, the configuration goes to /etc and
# the units to /usr/lib/systemd/system); DESTDIR stages the whole tree
# under another root, for packaging (tests/install/test-install.sh).
PREFIX  ?= /usr/local
DESTDIR ?=
install: build
	meson configure $(BUILD) -Dprefix=$(PREFIX)
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir "$(abspath $(DESTDIR))")

# The whole suite twice: the normal build, then ASan + UBSan (any report
# fails the test that triggered it).
check: build build-san
	@tests/run.sh $(BUILD),$(BUILD_SAN)

check-quick: build
	@tests/run.sh $(BUILD)

check-san: build-san
	@tests/run.sh $(BUILD_SAN)

# The interop and fault tests with the server under valgrind: any invalid
# read or write, use of uninitialised memory or definite leak fails the
# test (tests/lib/valgrind-server.sh exits 99).  Both sets run, then the
# target fails if either did.
check-valgrind: build
	@rc=0; \
	for t in tests/interop/ tests/faults/; do \
	  SNBD_SERVER_WRAPPER=$(CURDIR)/tests/lib/valgrind-server.sh \
	    tests/run.sh $(BUILD) $$t || rc=1; \
	done; exit $$rc

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)

# snbd side by side with nbdkit, qemu-nbd, nbd-server and the nbdkit null
# ceiling; prints the table and writes bench/RESULTS.md (~20 minutes;
# BENCH_QUICK=1 for a smoke test, other settings in bench/README.md).
bench: build
	@bench/run.sh $(BUILD)

# libFuzzer: builds with clang and -fsanitize=fuzzer-no-link,address,undefined
# into $(BUILD_FUZZ), then runs each harness for FUZZ_SECONDS (all of them,
# or those named in FUZZ_TARGETS); any crash, leak or timeout fails, and
# its input is kept in $(BUILD_FUZZ)/artifacts/ (fuzz/README.md).
BUILD_FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
$(BUILD_FUZZ)/build.ninja:
	CC=clang meson setup $(BUILD_FUZZ) $(MESON_OPTS) -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link

fuzz: deps $(BUILD_FUZZ)/build.ninja
	@ninja -C $(BUILD_FUZZ)
	@fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
