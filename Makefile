# The commands of the README. Set-up is idempotent: `.venv` is (re)built only
# when it is missing or older than requirements*.txt / pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_ARGS ?=
SUBMISSIONS ?=
GRADE_ARGS ?=
CLUSTER ?=
# State that `make clean` never deletes (all git-ignored): the students' working copy of
# the labs, the nbgrader course (gradebook database, collected submissions), the grades.
WORK ?= work
COURSE ?= course
OUT ?= grades
# JupyterLab refuses to run as root unless told; containers often run as root.
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup sandbox browser work lab test test-notebooks test-grader test-fast lint check grade solutions nbgrader release data data-cifar10 benchmark mutation clean

$(STAMP): requirements.txt requirements-staff.txt pyproject.toml
	@test -x $(BIN)/python && $(BIN)/python -c "import sys" 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[staff]"
	@touch $(STAMP)

setup: $(STAMP)

# The grader's sandbox is bubblewrap (Debian/Ubuntu package `bubblewrap`). Installed here
# when missing and we are root (CI, containers); otherwise say how, since the tests grade
# through it.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (the grader's sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else \
	    echo "bubblewrap is missing: install it (sudo apt install bubblewrap; dnf install bubblewrap)"; \
	    exit 1; \
	  fi; }

# A working copy, so that saving a notebook never writes outputs into the tracked labs/:
# each lab is copied once, and a copy that exists is never overwritten.
work:
	@mkdir -p $(WORK)
	@for nb in labs/*.ipynb; do \
	  test -e "$(WORK)/$$(basename $$nb)" || { cp "$$nb" "$(WORK)/" && echo "new in $(WORK)/: $$(basename $$nb)"; }; \
	done

# Headless Chromium for the browser test (tests/test_browser.py, through Playwright, which
# cannot download its own browser here): Debian's package, installed as for bubblewrap.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (the browser test's browser)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "chromium is missing: install it (sudo apt install chromium; dnf install chromium)"; \
	    exit 1; \
	  fi; }

lab: setup work  ## open the working copy of the labs (work/) in JupyterLab
	$(BIN)/jupyter lab --notebook-dir=$(WORK) $(ROOT_ARG) $(LAB_ARGS)

lint: setup
	$(BIN)/ruff check .

# `make test` runs two halves at once, each printed when it ends: the labs run top to bottom
# (in JupyterLab too, and from the student release), and the grader's tests then the TA
# selfcheck. One torch thread per process: two processes of two threads each on two cores
# wait on each other and run several times slower (labs/labkit/train.py measures it).
TEST_NOTEBOOKS := tests/test_solutions_run.py tests/test_browser.py tests/test_release.py
# One solved lab runs in the grader's half instead, so that the two halves end together
# (measured on a fresh clone: see the README's "make test" paragraph).
MOVED_LAB := tests/test_solutions_run.py::test_solved_lab_runs_top_to_bottom[06_augmentation]
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: setup sandbox browser lint  ## ruff, the whole test suite, and the TA selfcheck
	@echo "make test: two halves in parallel (test-notebooks, test-grader); each prints when it ends"
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-notebooks test-grader

test-notebooks: setup sandbox browser  ## the solved labs top to bottom, in JupyterLab, and from the release
	$(TEST_ENV) $(BIN)/python -m pytest --durations=15 $(TEST_NOTEBOOKS) --deselect "$(MOVED_LAB)"

test-grader: setup sandbox  ## every other test, then the selfcheck (--fast: a mutant stops at its first failing check)
	$(TEST_ENV) $(BIN)/python -m pytest --durations=15 $(addprefix --ignore=,$(TEST_NOTEBOOKS))
	$(TEST_ENV) $(BIN)/python -m pytest --durations=1 "$(MOVED_LAB)"
	$(TEST_ENV) $(BIN)/python -m autograder selfcheck --fast

test-fast: setup sandbox  ## the quick tier: every test not marked slow (no notebook runs), a few minutes
	$(BIN)/python -m pytest -m "not slow"

check: setup sandbox  ## TA selfcheck: reference 100%, stubs 0%, every mutant caught
	$(BIN)/python -m autograder selfcheck --verbose

grade: setup sandbox  ## make grade SUBMISSIONS=<dir> OUT=<dir> GRADE_ARGS="--jobs 2 --force" [CLUSTER=local:4|tcp://host:8786]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<dir> [OUT=<dir>] [GRADE_ARGS=\"--jobs 2 --force --time-limit 600\"]"; exit 2; }
	$(BIN)/python -m autograder grade $(SUBMISSIONS) --out $(OUT) $(if $(CLUSTER),--cluster $(CLUSTER),) $(GRADE_ARGS)

solutions: setup  ## the instructor's copy: every lab with the reference code
	$(BIN)/python -m autograder build-solutions --out build/solutions

nbgrader: setup  ## the nbgrader course in course/ (source/ with solutions and hidden tests; its state is kept)
	$(BIN)/python -m autograder build-nbgrader --out $(COURSE)

release: setup  ## the student release in dist/student: no solutions, no hidden checks
	$(BIN)/python -m autograder build-release --out dist/student

data: setup  ## generate and cache the offline data sets
	$(BIN)/python data/make_shapes.py

data-cifar10: setup  ## download CIFAR-10 into data/cifar10 (needs internet)
	$(BIN)/python data/download_cifar10.py

benchmark: setup  ## print measured figures: data generation, numpy vs torch convolution
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/convolutions.py

# Mutation testing (autograder/mutation_testing.py): mutmut mutates solutions/<topic>.py and
# runs the lab's hidden checks in-process on each mutant, the reference kept pristine.
LABS ?=
MUTATION_ARGS ?=
mutation: setup  ## mutmut over each lab's solution with its hidden checks: make mutation LABS="01 04"
	$(TEST_ENV) $(BIN)/python -m autograder.mutation_testing $(LABS) $(MUTATION_ARGS)

clean:  ## build outputs and caches only: never work/, course/ or grades/
	rm -rf build .pytest_cache .ruff_cache
