"""A plain, non-editable install works: a wheel built from the repo, installed into a fresh virtualenv and run
from another directory, finds its contracts, prompts and taxonomy (package data) and nothing from the checkout.

The venv uses --system-site-packages so the heavy dependencies are not reinstalled; assetstream itself comes
from the wheel (asserted), and neither the repo nor PYTHONPATH is on the path."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("streams", "domain", "consumers", "app", "avro", "prompts")
"""The packages, and the top-level contracts and prompts they link to (streams/contracts -> ../avro,
domain/prompts -> ../prompts): the build follows the links, as it does from a checkout."""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Build the wheel from a copy of the source (the checkout stays clean) and install it into a fresh venv."""
    base = tmp_path_factory.mktemp("pkg")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for d in SOURCE_DIRS:
        shutil.copytree(REPO / d, src / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("assetstream-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return {"python": py, "bin": venv / "bin", "venv": venv, "cwd": elsewhere, "wheel": wheel}


def run(installed: dict[str, Path], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_") and k != "PYTHONPATH"}
    env["PATH"] = f"{installed['bin']}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(list(argv), cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_ships_contracts_prompts_and_taxonomy(installed):
    from zipfile import ZipFile

    names = set(ZipFile(installed["wheel"]).namelist())
    assert "streams/contracts/io.assetstream.AssetEvent.avsc" in names
    assert "domain/prompts/tagging/v1.md" in names and "domain/prompts/tagging/v1.schema.json" in names
    assert "domain/taxonomy/v1.json" in names
    assert "consumers/validate/calibration.json" in names  # validate's fitted confidence calibration
    assert not any(n.startswith(("avro/", "prompts/")) for n in names)


def test_installed_cli_runs_from_another_directory(installed):
    version = run(installed, "assetstream", "--version")
    assert version.returncode == 0, version.stderr
    from streams import __version__

    assert version.stdout.split()[:2] == ["assetstream", __version__]
    # trial 26 F1: the line names the code itself, the same digest as the checkout it was built from (the same
    # files), and the mapping version; no git commit outside a checkout
    from app.build import code_digest
    from domain.store.mapping_version import MAPPING_VERSION

    assert f", mapping {MAPPING_VERSION}, code {code_digest()})" in version.stdout, version.stdout
    assert ", git " not in version.stdout

    shown = run(installed, "assetstream", "config", "show")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["topics"]


def test_installed_package_loads_its_data_not_the_checkout(installed):
    """Schemas (serde round trip through the in-process registry), prompts and taxonomy, all from site-packages."""
    script = """
import json, streams, domain
from app.producer import build_event
from consumers.enrich.prompts import load_prompt
from domain.taxonomy import load_taxonomy
from streams.avro import Serde
serde = Serde({"url": "mock://packaging"}, {"raw": "raw"})
event = build_event("sku-1", "https://cdn.example.com/a.jpg", uploader_notes="hello")
back = serde.deserialize("raw", serde.serialize("raw", event))
same = all(back[k] == event[k] for k in ("asset_id", "event_id", "source_uri", "uploader_notes", "tenant"))
print(json.dumps({"same": same, "streams": streams.__file__, "avro": str(streams.AVRO_DIR),
                  "prompts": str(domain.PROMPTS_DIR), "prompt": load_prompt("tagging").version,
                  "taxonomy": load_taxonomy().version}))
"""
    result = run(installed, str(installed["python"]), "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["same"] is True
    site = str(installed["venv"])
    for key in ("streams", "avro", "prompts"):
        assert seen[key].startswith(site) and not seen[key].startswith(str(REPO)), seen
    assert seen["prompt"] == "v1" and seen["taxonomy"]


def test_two_builds_whose_code_differs_print_different_version_lines(tmp_path):
    """Trial 26 F1: a2d245b and a release 75 commits later (mapping version 5 -> 6) both printed `assetstream 0.1.0
    (pipeline 2026.11.1, contracts 6e804ee9)`, and the rollout check ("done when every pod shows the new line")
    could not work. The line names the mapping version and a digest of the code, and a checkout's git commit."""
    from domain.store.mapping_version import MAPPING_VERSION

    def version(root: Path) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSTREAM_")}
        done = subprocess.run([sys.executable, "-m", "app.cli", "--version"], capture_output=True, text=True,
                              env={**env, "PYTHONPATH": str(root)}, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    build = tmp_path / "build"
    for d in SOURCE_DIRS:
        shutil.copytree(REPO / d, build / d, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    before = version(build)
    assert f", mapping {MAPPING_VERSION}, code " in before and ", git " not in before  # a copy, not a checkout
    ranking = build / "domain" / "store" / "search.py"
    ranking.write_text(ranking.read_text("utf-8") + "\n# another release\n", "utf-8")
    after = version(build)
    assert after != before and after.split(", code ")[0] == before.split(", code ")[0]

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    assert f", git {commit}" in version(REPO)  # run from the checkout: its commit too
