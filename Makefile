# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean bench toy-model ablate

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/humo demo

lint: $(STAMP)
	$(VENV)/bin/ruff check humo tests
	$(VENV)/bin/ruff format --check humo tests

test: lint
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/humo bench dit

# The bundled proving-ground model from nothing (about 90 min on 2 CPU cores), then the ablation study (hours).
toy-model: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/train_toy_model.sh

ablate: $(STAMP)
	$(VENV)/bin/humo ablate --recipe runs/toy-recipe --out runs/ablate

clean:
	rm -rf $(VENV) outputs .pytest_cache
