# sparsect developer entry points. `make test` and `make run` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: install test lint run bench clean docker-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, so pip takes the CPU build named by TORCH instead of a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,astra]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile docker/*.Containerfile

test: lint
	$(BIN)/python -m pytest

run: install
	$(BIN)/sparsect app --port $(PORT)

bench: install
	$(BIN)/python benchmarks/projector.py

# Build the Dockerfile on a debootstrapped Debian + CPU torch base (no registry) and run a batch job inside
# it (docker/smoke.sh; needs root, debootstrap and podman). CI runs it after `make test` with SMOKE_FRESH=1
# (no caches, as on a new machine): see .ci/run.
docker-smoke:
	bash docker/smoke.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
