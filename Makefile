# Two commands do all set-up on a fresh machine: `make demo` and `make test`. The install includes the `data` extra
# (PySceneDetect, headless OpenCV, webrtcvad: about 160 MB, for `humo data run` and its tests) and MediaPipe 0.10.21
# with the `pose` extra (--no-deps: its metadata pins numpy<2; for `humo pose extract` and the faces stage), the
# `identity` extra (dlib and its face-embedding model files, about 140 MB; references across shots, `humo eval --real`)
# and the `ray` extra (Ray Data, about 500 MB, for `humo data run --executor ray` and its test). The `data` extra
# includes pyarrow (HuMoSet's metadata is Parquet).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean bench toy-model ablate pose-extra espeak

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q --no-deps mediapipe==0.10.21
	$(PIP) install -q -c constraints.txt -e '.[dev,data,pose,identity,ray]'
	touch $(STAMP)

install: $(STAMP) espeak

# espeak-ng speaks the real synthetic speech of the lip-sync evaluators' tests (tests/test_real_sync.py). Installed
# with apt-get where there is one and we are root; otherwise a note, and those tests fail saying how to install it.
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null 2>&1 || { \
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng >/dev/null; }; }; } || \
		echo "note: espeak-ng is not installed (apt-get install espeak-ng); tests/test_real_sync.py needs it"

demo: $(STAMP)
	$(VENV)/bin/humo demo

lint: $(STAMP)
	$(VENV)/bin/ruff check humo tests
	$(VENV)/bin/ruff format --check humo tests

test: lint espeak
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

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
