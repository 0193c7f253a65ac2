# make test    set everything up and run the whole test suite (what CI runs)
# make verify  set everything up and run the checklist verification against the embedded service
# make bench   run the benchmarks against their anchors and print the ratios
# make mutate  mutation benchmark: how many sampled mutants of the six guard modules the scenarios ALONE kill
#              (installs mutmut 3 into .venv; not part of make test; 12-40 min on 2 shared cores, by load)
# make load    the hostile HTTP corpus against `fragrance-ai serve` on loopback (bounded: 3 rounds, 300 s), then
#              10,000 briefs x 2 rounds at concurrency 50 with 20% random 503s per model (bounded: 3000 s)
# make tools   install promtool, toxiproxy-server and redis-server into .tools/bin (make test does it; fragrance-ai install-tools),
#              and Debian's chromium for the HTML report's browser test

PYTHON ?= python3

# Every test that starts Python (verify runs, pytester, the wheel's venv) would compile the whole
# package again without bytecode caches; an environment that turns them off (PYTHONDONTWRITEBYTECODE)
# costs the suite minutes. __pycache__ is ignored by git and left out of the wheel.
unexport PYTHONDONTWRITEBYTECODE
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test tools verify snippets bench load lint clean mutate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# In CI (CI=true) a tool that cannot be installed is an error; on a user's machine without Go or apt,
# the tests that need it skip and say how to install it.
tools: $(STAMP)
	$(BIN)/fragrance-ai install-tools promtool --dir .tools/bin || { test "$$CI" != true && echo "promtool not installed: its tests will skip"; }
	$(BIN)/fragrance-ai install-tools toxiproxy-server --dir .tools/bin || { test "$$CI" != true && echo "toxiproxy-server not installed: its tests will skip"; }
	$(BIN)/fragrance-ai install-tools redis-server --dir .tools/bin || { test "$$CI" != true && echo "redis-server not installed: its tests will skip"; }
	command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; } || { test "$$CI" != true && echo "chromium not installed: the HTML report's browser test will skip (apt-get install -y chromium)"; }

# two pytest-xdist workers: half the suite waits on subprocesses, sockets and real-time faults
# (make test TEST_WORKERS=0 runs it in one process; TEST_WORKERS=auto uses every core)
TEST_WORKERS ?= 2

# --durations: the slowest tests are printed at the end, so a slower suite shows where the time went
test: $(STAMP) tools lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

verify: $(STAMP) tools
	$(BIN)/fragrance-ai verify

snippets: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/checklist_snippets.sh

bench: $(STAMP)
	bash scripts/install_hey.sh .tools/bin
	$(BIN)/python benchmarks/run.py

# MUTATE_ARGS: e.g. "--per-module 40 --seed 18 --max-children 2" (the defaults)
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet 'mutmut>=3.8,<4'
	$(BIN)/python scripts/mutate.py $(MUTATE_ARGS)

load: $(STAMP)
	$(BIN)/python scripts/http_load.py --rounds 3 --budget 300
	$(BIN)/python scripts/brief_load.py --briefs 10000 --concurrency 50 --fault-rate 0.2 --rounds 2 --budget 3000

lint: $(STAMP)
	$(BIN)/mypy
	$(BIN)/ruff check fragrance_ai pytest_guards tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache *.egg-info mutants
