"""Calm vs loaded on the labelled set (issue 21): the same images must get the same metadata on a busy machine, or
the difference must be entirely in assets visibly marked degraded (and so sent to review).

    OPENBLAS_NUM_THREADS=1 python bench/degradation.py                  # calm, 4 burners, 4 burners on one CPU
    python bench/degradation.py --burners 6 --pin --ocr-timeout 0.5      # one loaded run, harsher
    python bench/degradation.py --json out.json

Every run is bench/quality.py's pipeline, in-process and in the same order (PreprocessStage.preprocess_bytes with
real tesseract, Haar cascades and open_nsfw -> EnrichStage with the local provider -> ValidateStage), each record
on its last attempt (no retry path here: a part that times out or fails is marked degraded, as on a record's last
attempt in the fleet). The calm run is the baseline measured in the same invocation. Loaded runs add N processes
that burn CPU beside this one; `--pin` puts this process, its tesseract children and the burners on one CPU
(a worker throttled to one core by its pod limit on a busy node).

Printed per loaded run: the quality figures next to the calm run's (bench/quality.py's table), and per asset
whether its metadata is identical to the calm run's, marked degraded, or silently different (the count that must
be 0), then the figures of the assets not marked degraded in both runs, which must equal the calm run's.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality import DATA, _burn, _load_code, run_pipeline, score, table  # noqa: E402

METADATA = ("ocr_text", "faces", "duplicate_of", "tags", "model_tags", "alt_text", "title", "decorative", "status",
            "confidence")
"""What an asset's metadata is here (bench/quality.py's per-image outputs without timings and the degraded list)."""


def loaded_run(names: list[str], burners: int, pin: bool, preprocess: dict | None) -> dict:
    """run_pipeline with `burners` CPU-burning processes beside it; `pin`: all on one CPU."""
    before = os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {min(before)})  # burners and tesseract children inherit it
    stop = mp.get_context("fork").Event()
    procs = [mp.get_context("fork").Process(target=_burn, args=(stop,), daemon=True) for _ in range(burners)]
    try:
        for p in procs:
            p.start()
        return run_pipeline(names, preprocess=preprocess)
    finally:
        stop.set()
        for p in procs:
            p.join(5)
        os.sched_setaffinity(0, before)


def compare(calm: dict, loaded: dict) -> dict:
    """Per asset: identical to the calm run, marked degraded (in the loaded run), or silently different."""
    same, marked, silent = [], [], []
    for name, c in calm["images"].items():
        lo = loaded["images"][name]
        if all(lo[k] == c[k] for k in METADATA) and lo["degraded"] == c["degraded"]:
            same.append(name)
        elif lo["degraded"]:
            marked.append(name)
        else:
            silent.append(name)
    return {"identical": same, "marked_degraded": marked, "silently_different": silent}


def subset(run: dict, names: list[str]) -> dict:
    return {**run, "images": {n: run["images"][n] for n in names}, "child_cpu_s": 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, action="append", help="CPU burners of a loaded run (repeatable; "
                    "default: one run with 4, one with 4 pinned to one CPU)")
    ap.add_argument("--pin", action="store_true", help="with --burners: put everything on one CPU")
    ap.add_argument("--ocr-timeout", type=float, default=None, metavar="S",
                    help="tesseract's base time limit in every run (default: the configured 30 s)")
    ap.add_argument("--seed", type=int, default=7, help="shuffle of the processing order")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images of the shuffled order")
    ap.add_argument("--json", help="write every run's scores and per-asset comparison here")
    args = ap.parse_args()
    _load_code(Path(__file__).resolve().parent.parent)
    truth = json.loads((DATA / "truth.json").read_text())["images"]
    names = sorted(truth)
    random.Random(args.seed).shuffle(names)
    if args.limit:
        names = names[: args.limit]
    runs = [(n, args.pin) for n in args.burners] if args.burners else [(4, False), (4, True)]
    pre = {"ocr_timeout_s": args.ocr_timeout} if args.ocr_timeout else None

    calm_run = run_pipeline(names, preprocess=pre)
    calm = score(calm_run, truth)
    load = os.getloadavg()
    print(f"{len(names)} images, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
          + (f", tesseract base limit {args.ocr_timeout} s" if pre else ""))
    out = {"calm": calm, "loaded": []}
    for burners, pin in runs:
        lo_run = loaded_run(names, burners, pin, pre)
        lo = score(lo_run, truth)
        cmp = compare(calm_run, lo_run)
        label = f"{burners} CPU burners" + (" on one CPU with this process" if pin else " beside this process")
        print(f"\n### {label}\n")
        print(table(lo, calm).replace("| baseline |", "| calm run |").replace("| this tree |", "| loaded |"))
        print(f"\nassets: {len(cmp['identical'])} identical to the calm run, {len(cmp['marked_degraded'])} marked "
              f"degraded (sent to review), {len(cmp['silently_different'])} silently different"
              + (f" ({', '.join(cmp['silently_different'])})" if cmp["silently_different"] else ""))
        parts: dict[str, int] = {}
        for n in cmp["marked_degraded"]:
            for p in lo_run["images"][n]["degraded"]:
                parts[p] = parts.get(p, 0) + 1
        if parts:
            print("degraded parts: " + ", ".join(f"{p} {k}" for p, k in sorted(parts.items())))
        complete = [n for n in names if not lo_run["images"][n]["degraded"] and not calm_run["images"][n]["degraded"]]
        if len(complete) < len(names):
            a, b = score(subset(lo_run, complete), truth), score(subset(calm_run, complete), truth)
            keys = ("tag_p5", "tag_recall", "colour_share_top5", "alt_names_subject", "ocr_word_acc", "face_recall")
            print(f"figures of the {len(complete)} assets not marked degraded, loaded / calm: "
                  + ", ".join(f"{k} {a[k]:.2f} / {b[k]:.2f}" for k in keys))
        out["loaded"].append({"burners": burners, "pin": pin, "scores": lo, **cmp})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    if any(r["silently_different"] for r in out["loaded"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
