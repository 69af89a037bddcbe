"""assetstream streaming core: settings, Avro serde, the stage runner, metrics, embedded services."""
import os
import sys
from pathlib import Path

__version__ = "0.1.0"
PIPELINE_VERSION = "2026.11.1"
"""Bumped when stage logic changes what a record means; part of the idempotency key."""

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """avro/ or prompts/: ASSETSTREAM_<NAME>_DIR if set (e.g. your own prompt versions), else the source
    tree (development, editable installs), else <prefix>/share/assetstream/<name> (pip install .)."""
    override = os.environ.get(f"ASSETSTREAM_{name.upper()}_DIR")
    if override:
        return Path(override)
    in_tree = REPO_ROOT / name
    if in_tree.is_dir():
        return in_tree
    return Path(sys.prefix) / "share" / "assetstream" / name


AVRO_DIR = data_dir("avro")
PROMPTS_DIR = data_dir("prompts")
