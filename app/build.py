"""Which build is running: the line `assetstream --version` prints.

    assetstream 0.1.0 (pipeline 2026.11.1, contracts e5d85046, mapping 6, code 3f9a0c12, git dda1f38)

The package and pipeline versions are bumped by hand, so two releases can share them (trial 26: 75 commits apart,
the same line in every pod). The line therefore also says:

- `contracts`: 8 hex digits over the Avro contracts (streams.schemas.contracts_digest);
- `mapping`: the index mapping version this code writes (an index of another one wants `assetstream index migrate`);
- `code`: 8 hex digits of a SHA-256 over every Python file of the four packages (path and bytes), read from where
  they are imported: it differs between any two builds whose code differs, the same in a checkout, a wheel and the
  image built from it (no git needed);
- `git`: the commit, only when run from a git checkout (`+` when tracked files differ from it).
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import streams
from streams import PIPELINE_VERSION, REPO_ROOT, __version__

PACKAGES = ("streams", "domain", "consumers", "app")


def code_digest() -> str:
    """8 hex digits over the relative path and bytes of every `*.py` file of PACKAGES, in path order."""
    root = Path(streams.__file__).resolve().parent.parent  # site-packages, or the checkout
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:8]


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checkout's short commit (`+` when a tracked file differs from it), or None outside a git checkout."""
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0 or not sha.stdout.strip():
        return None
    return sha.stdout.strip() + ("+" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def version_line() -> str:
    from domain.store.mapping_version import MAPPING_VERSION
    from streams.schemas import contracts_digest

    commit = git_commit()
    return (f"assetstream {__version__} (pipeline {PIPELINE_VERSION}, contracts {contracts_digest()}, "
            f"mapping {MAPPING_VERSION}, code {code_digest()}" + (f", git {commit}" if commit else "") + ")")
