# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test redis bench-smoke clean

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

test: install redis
	$(PY) -m pytest $(PYTEST_ARGS)

bench-smoke: install
	$(PY) benchmarks/gpu_generators.py --smoke

clean:
	rm -rf .realrag .pytest_cache
