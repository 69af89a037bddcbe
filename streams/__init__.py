"""assetstream streaming core: settings, Avro serde, the stage runner, metrics, embedded services."""
import os
from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"
PIPELINE_VERSION = "2026.11.1"
"""Bumped when stage logic changes what a record means; part of the idempotency key."""

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The source checkout in development; in a non-editable install, site-packages (read no data from it)."""


def package_data_dir(package: str, folder: str, env: str) -> Path:
    """A data folder shipped inside `package` (read with importlib.resources), or the directory named by the
    environment variable `env` if set (e.g. your own prompt versions). Works the same from a source checkout,
    an editable install and an installed wheel, whatever the current directory."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    found = files(package) / folder
    if not isinstance(found, Path) or not found.is_dir():  # a zipped install cannot be read as a directory
        raise RuntimeError(f"{package}/{folder} is not an unpacked directory ({found!r}); install assetstream "
                           f"from a wheel or a checkout, or set {env}")
    return found


AVRO_DIR = package_data_dir("streams", "contracts", "ASSETSTREAM_AVRO_DIR")
"""The Avro contracts (avro/*.avsc); ASSETSTREAM_AVRO_DIR overrides."""
