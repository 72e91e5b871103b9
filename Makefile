# Two entry points: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed
DATA ?= $(or $(WILDVOX_DATA),../shared/corpora/wildmix)

.PHONY: demo train-demo test lint typecheck pytest browser venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt $(TORCH)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check  # the lock satisfies pyproject.toml's dependencies
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wildvox demo --data $(DATA)

train-demo: $(STAMP)
	$(VENV)/bin/wildvox train-demo --data $(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy src

pytest: $(STAMP) browser
	$(PY) -m pytest -q

# Debian's chromium + chromedriver for tests/test_web_page.py (Playwright's browser download
# cannot work here). A no-op when both are installed; when apt-get is unavailable, not root,
# or fails, it says so and the page test skips with that reason.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver) || echo "browser: apt-get install chromium failed:" \
			"tests/test_web_page.py will skip"; \
	else echo "browser: chromium/chromedriver missing and apt-get unavailable (or not root):" \
		"tests/test_web_page.py will skip"; fi

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) bench/features.py --data $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The Resemblyzer peer (bench/peers/) in its own venv: it pulls librosa/numba and setuptools<81.
PEER_VENV := .venv-peer
.PHONY: peer-env
peer-env: $(PEER_VENV)/.installed

$(PEER_VENV)/.installed: bench/peers/requirements-resemblyzer.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peers/requirements-resemblyzer.txt
	$(PEER_VENV)/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0+cpu'), torch.__version__"
	touch $@

# Teacher embeddings for knowledge distillation (recipes/shipped_distill_aug.yaml, recipes/ablation/distill.yaml):
# Resemblyzer d-vectors of every file of wildmix's and wildextra's dev_list.txt, ids
# <corpus>/<speaker>/<session>/<file>. About 17k files; run once.
TEACHER := runs/teacher/resemblyzer.npz
EXTRA ?= $(DATA)/../wildextra

.PHONY: teacher
teacher: $(TEACHER)

$(TEACHER): $(PEER_VENV)/.installed
	mkdir -p runs/teacher
	awk -v root="$(abspath $(DATA))" '{print "wildmix/" $$2 " " root "/wav/" $$2}' \
		$(DATA)/dev_list.txt > runs/teacher/dev_files.txt
	if [ -f $(EXTRA)/dev_list.txt ]; then \
		awk -v root="$(abspath $(EXTRA))" '{print "wildextra/" $$2 " " root "/wav/" $$2}' \
			$(EXTRA)/dev_list.txt >> runs/teacher/dev_files.txt; fi
	OMP_NUM_THREADS=1 $(PEER_VENV)/bin/python bench/peers/resemblyzer_embed.py --threads 1 \
		--no-warmup --list runs/teacher/dev_files.txt --out $(TEACHER)
