"""assetstream streaming core: settings, Avro serde, the stage runner, metrics, embedded services."""
from pathlib import Path

__version__ = "0.1.0"
PIPELINE_VERSION = "2026.11.1"
"""Bumped when stage logic changes what a record means; part of the idempotency key."""

REPO_ROOT = Path(__file__).resolve().parent.parent
AVRO_DIR = REPO_ROOT / "avro"
PROMPTS_DIR = REPO_ROOT / "prompts"
