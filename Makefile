# The commands people type.  The real build is Meson + Ninja in $(BUILD).
BUILD      ?= build
BUILD_SAN  ?= build-san
MESON_OPTS ?=
ifeq ($(CI),true)
MESON_OPTS += -Dwerror=true
endif

.PHONY: all deps build build-san run check check-quick check-san clean bench fuzz

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

# The whole suite twice: the normal build, then ASan + UBSan (any report
# fails the test that triggered it).
check: build build-san
	@tests/run.sh $(BUILD),$(BUILD_SAN)

check-quick: build
	@tests/run.sh $(BUILD)

check-san: build-san
	@tests/run.sh $(BUILD_SAN)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
