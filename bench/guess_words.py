"""Does searching for a classifier guess find the image it was guessed for? (issue 15/17 user trial: the summary
listed "website (2%)" and a search for "website" found photos that are not websites.)

    OPENBLAS_NUM_THREADS=1 python bench/guess_words.py --baseline a46cdee     # this tree and REF, one invocation

The labelled set (tests/data/quality) goes through the real stages and the real IndexSink into an embedded osmem
store (bench/search.py's labelled_images), then every guess of the classifier's merged top 3 on every image with a
subject (bench/class_floor.py: right or wrong by the truth) is searched by its name in keyword, semantic and hybrid
mode, and in hybrid mode without the visual leg (index.visual_leg off: the image vectors' match to the ImageNet
classes the query names, which is the image itself looking like the guess, not text). Printed per mode: the share of (guess, image) pairs where the image is in the top 10, for wrong guesses (a
false hit: "barbell" finds the astronaut) and for right ones ("tabby cat" finds the cat). The baseline is the same
script run in a subprocess on `git archive REF` (its own pipeline, the same models and judge).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
ROOT = Path(__file__).resolve().parents[1]
MODES = ("keyword", "semantic", "hybrid", "hybrid without the visual leg")
K = 10


def measure() -> dict:
    from app.settings import Settings
    from bench.class_floor import guesses
    from bench.search import labelled_images
    from consumers.index.sink import IndexSink
    from domain.store.management import read_alias
    from streams.embedded_store import OsmemStore
    from tests.store_support import as_items

    rows = [r for r in guesses(3) if not r["box"]]
    with OsmemStore() as store:
        settings = Settings().with_overrides(index={"url": store.url, "server_mode": "serverless",
                                                    "number_of_replicas": 0, "vector_mode": "off",
                                                    "index": f"bench-guess-{uuid.uuid4().hex[:6]}"})
        records, _, _ = labelled_images(settings)
        sink = IndexSink(settings)
        sink.process_batch(as_items(records))
        sink.client.indices.refresh(index=read_alias(settings.index))
        out = guess_hits(sink.client, settings, rows)
        sink.close()
    return out


def guess_hits(client, settings, rows: list[dict]) -> dict:
    """Per mode: (guess, image) pairs of `rows` (bench/class_floor.py guesses) whose image a search for the guess's
    name finds in the top K, wrong and right guesses apart."""
    from domain.store.api import SearchRequest, run_search

    out: dict = {}
    for mode in MODES:
        found = {True: [0, 0], False: [0, 0]}
        st = settings.with_overrides(index={"visual_leg": False}) if mode.endswith("visual leg") else settings
        for r in rows:
            hits = run_search(client, st, SearchRequest(query=r["class"], mode=mode.split()[0], size=K,
                                                        facets=False))["hits"]
            found[r["right"]][0] += r["image"] in {h["asset_id"] for h in hits}
            found[r["right"]][1] += 1
        out[mode] = {"wrong_found": found[False][0], "wrong_n": found[False][1],
                     "right_found": found[True][0], "right_n": found[True][1]}
    return out


def _baseline(ref: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="guess-words-"))
    try:
        archive = tmp / "src.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
        code = tmp / "code"
        code.mkdir()
        with tarfile.open(archive) as tf:
            tf.extractall(code, filter="data")
        for name in ("guess_words.py", "class_floor.py"):  # the measure and the judge are this tree's
            shutil.copy(ROOT / "bench" / name, code / "bench" / name)
        out = tmp / "out.json"
        env = {**os.environ, "PYTHONPATH": str(code)}
        subprocess.run([sys.executable, str(code / "bench" / "guess_words.py"), "--raw-json", str(out)],
                       check=True, cwd=code, env=env)
        return json.loads(out.read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cell(d: dict, kind: str) -> str:
    n = d[f"{kind}_n"]
    return f"{d[f'{kind}_found'] / n:.2f} ({d[f'{kind}_found']}/{n})" if n else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="none", help="git ref to compare with, or 'none'")
    ap.add_argument("--raw-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.raw_json:
        Path(args.raw_json).write_text(json.dumps(measure()))
        return
    base = _baseline(args.baseline) if args.baseline != "none" else None
    cur = measure()
    print(f"| mode | wrong guess finds its image: this tree | {args.baseline} | right guess finds its image: "
          f"this tree | {args.baseline} |")
    print("| --- | --- | --- | --- | --- |")
    for mode in MODES:
        b = base[mode] if base else None
        print(f"| {mode} | {_cell(cur[mode], 'wrong')} | {_cell(b, 'wrong') if b else '-'} | "
              f"{_cell(cur[mode], 'right')} | {_cell(b, 'right') if b else '-'} |")


if __name__ == "__main__":
    main()
