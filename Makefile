# Two commands do all set-up on a fresh machine: `make demo` and `make test`. The install includes the `data` extra
# (PySceneDetect, headless OpenCV, webrtcvad: about 160 MB, for `humo data run` and its tests) and MediaPipe 0.10.21
# with the `pose` extra (--no-deps: its metadata pins numpy<2; for `humo pose extract` and the faces stage). The `data`
# extra includes pyarrow (HuMoSet's metadata is Parquet). Ray Data is left to `make test-ray` (about 500 MB).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-ray lint install clean bench toy-model ablate pose-extra

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps mediapipe==0.10.21
	$(PIP) install -q -c constraints.txt -e '.[dev,data,pose]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/humo demo

lint: $(STAMP)
	$(VENV)/bin/ruff check humo tests
	$(VENV)/bin/ruff format --check humo tests

test: lint
	$(VENV)/bin/pytest -q -n 2 --dist loadfile -m "not ray"

# `humo data run --executor ray` and its test (tests/test_data_ray.py, marker `ray`): the `ray` extra (Ray Data,
# about 500 MB) is installed here only, so `make test` stays without it and deselects that test (counted, not skipped).
test-ray: $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[data,pose,ray]'
	$(VENV)/bin/pytest -q -m ray

# `humo pose extract` and the data pipeline's faces stage need MediaPipe 0.10.21 (its cp311 wheel ships the pose and
# face models); its own requirements (numpy<2, jax) are left out, the `pose` extra lists what its solutions import.
# `make install` (so `make test`) installs it too; this target stays for a venv made before that.
pose-extra: $(STAMP)
	$(PIP) install -q --no-deps mediapipe==0.10.21
	$(PIP) install -q -c constraints.txt -e '.[pose]'

bench: $(STAMP)
	$(VENV)/bin/humo bench dit

# The bundled proving-ground model from nothing (about 90 min on 2 CPU cores), then the ablation study (hours).
toy-model: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/train_toy_model.sh

ablate: $(STAMP)
	$(VENV)/bin/humo ablate --recipe runs/toy-recipe --out runs/ablate

clean:
	rm -rf $(VENV) outputs .pytest_cache
