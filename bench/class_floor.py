"""How often the classifier's guesses are right, by probability, on the labelled quality set (issue 15): the
evidence for the floor under which the local provider's summary no longer names a guess (engine.SUMMARY_FLOOR;
bench/summary_floor.py sweeps it).

    OPENBLAS_NUM_THREADS=1 python bench/class_floor.py            # the table
    OPENBLAS_NUM_THREADS=1 python bench/class_floor.py --details  # and every guess, right or wrong

Each image of tests/data/quality/images goes through the real preprocess stage (its thumbnail is what the local
provider sees), then the engine's image analysis (EfficientNet-Lite0, top-k classes with names of one class merged,
as the alt text sees them). A guess is right when its class name (with the everyday noun `_plain_label` adds:
"Egyptian Mau cat") contains one of the truth's subject words (or one
of them contains the class name), or when a subject/product tag of the vocabulary the class name means (MiniLM
cosine >= 0.6, the threshold `_label_agrees` uses) is among the tags an editor requires or accepts. Decorative
images (no subject) are left out. Printed: per probability band, guesses and the share right; and, per floor,
the guesses a summary would name at or above it and their precision.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import DATA, _asset  # noqa: E402
from consumers.enrich.providers.local import engine  # noqa: E402

BANDS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.4, 0.6, 1.01)
FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
TAG_SIM = 0.6
BOX_BANDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.8, 1.01)


def guesses(top_n: int) -> list[dict]:
    """One row per (image, merged class among the first top_n): name, p, right."""
    import json

    from app.settings import Settings
    from consumers.enrich.providers.local import TOP_K, engine
    from consumers.preprocess.stage import PreprocessStage

    truth = json.loads((DATA / "truth.json").read_text())["images"]
    settings = Settings().with_overrides(preprocess={"file_roots": [str(DATA)]})
    pre_stage = PreprocessStage(settings)
    from domain.taxonomy import load_taxonomy

    idx = engine.vocab_index(load_taxonomy().vocabulary(), with_embeddings=True)
    sims = idx.imagenet_sims()
    rows = []
    for name in sorted(truth):
        t = truth[name]
        if t["decorative"] or not t["subject"]:
            continue
        path = DATA / "images" / name
        pre = pre_stage.preprocess_bytes(_asset(name, path), path.read_bytes())
        thumb = (pre.get("thumbnail") or {}).get("data")
        facts = engine.analyse_image(thumb, TOP_K, 1)
        accepted = {x for x in t["tags"] + t["ok"] if x.split(":", 1)[0] in ("subject", "product")}
        _, n_raw, _ = engine._ocr(pre)
        n_words = len(engine.confident_text(pre).split())
        faces = engine._subject_faces(pre, facts)
        named = set()
        if hasattr(engine, "named_classes"):  # (bench/guess_words.py runs this judge on older trees too)
            floor = {"floor": engine.SUMMARY_FLOOR} if hasattr(engine, "SUMMARY_FLOOR") else {}
            gate = engine.named_classes(facts, idx, writing=engine.unread_writing(pre, facts, n_words, faces),
                                        logo=engine.is_logo(facts, n_words, n_raw, faces, idx), **floor)
            named = {c for c, _, _ in engine.over_text(gate, n_raw)[:3]}  # what the summary names
        for d in facts.objects:
            if d.label in engine.SUBJECT_NOUNS and d.area >= engine.DET_MIN_AREA:
                right = any(w in s.lower() for w in engine.SUBJECT_NOUNS[d.label] for s in t["subject"]) or bool(
                    set(engine.COCO_TAGS.get(d.label, ())) & accepted)
                rows.append({"image": name, "class": f"box {d.label}", "p": float(d.score), "right": right,
                             "tags": [], "box": True, "named": False})
        for cname, cls, p in engine._merged_top(facts.top)[:top_n]:
            low = engine._plain_label(cname, cls).lower()  # "Egyptian Mau cat", as the alt text says it
            by_name = any(re.search(r"\b" + re.escape(s.lower()) + r"(?:s|es)?\b", low)
                          or re.search(r"\b" + re.escape(low) + r"\b", s.lower()) for s in t["subject"])
            tags = {idx.entries[i]["tag"] for i in range(len(idx.entries))
                    if idx.facets[i] in ("subject", "product") and sims[cls][i] >= TAG_SIM}
            rows.append({"image": name, "class": cname, "p": float(p), "right": bool(by_name or tags & accepted),
                         "tags": sorted(tags), "box": False, "named": cname in named})
    return rows


def table(all_rows: list[dict]) -> str:
    rows = [r for r in all_rows if not r["box"]]
    out = ["| probability band | guesses | right | share right |", "| --- | --- | --- | --- |"]
    for lo, hi in zip(BANDS, BANDS[1:]):
        band = [r for r in rows if lo <= r["p"] < hi]
        right = sum(r["right"] for r in band)
        share = f"{right / len(band):.2f}" if band else "-"
        out.append(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {len(band)} | {right} | {share} |")
    out += ["", "| floor | guesses named | right | precision | wrong guesses named |", "| --- | --- | --- | --- | --- |"]
    for f in FLOORS:
        kept = [r for r in rows if r["p"] >= f]
        right = sum(r["right"] for r in kept)
        prec = f"{right / len(kept):.2f}" if kept else "-"
        out.append(f"| {f:.2f} | {len(kept)} | {right} | {prec} | {len(kept) - right} |")
    named = [r for r in rows if r["named"]]
    right = sum(r["right"] for r in named)
    out.append(f"| the summary's (named_classes >= SUMMARY_FLOOR {engine.SUMMARY_FLOOR}, page/logo/drawing/text rules) | {len(named)} | {right} | "
               f"{right / max(1, len(named)):.2f} | {len(named) - right} |")
    boxes = [r for r in all_rows if r["box"]]
    out += ["", "| detector box score (area >= DET_MIN_AREA) | boxes | right | share right |", "| --- | --- | --- | --- |"]
    for lo, hi in zip(BOX_BANDS, BOX_BANDS[1:]):
        band = [r for r in boxes if lo <= r["p"] < hi]
        right = sum(r["right"] for r in band)
        out.append(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {len(band)} | {right} | "
                   f"{right / len(band):.2f} |" if band else f"| {lo:.2f}-{min(hi, 1.0):.2f} | 0 | 0 | - |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=3, help="guesses per image (the summary named the first 3)")
    ap.add_argument("--details", action="store_true")
    args = ap.parse_args()
    rows = guesses(args.top)
    print(table(rows))
    if args.details:
        for r in sorted(rows, key=lambda r: -r["p"]):
            print(f"{r['p']:.3f} {'RIGHT' if r['right'] else 'wrong'} {'named' if r['named'] else '     '} "
                  f"{r['image']}: {r['class']} {r['tags']}")


if __name__ == "__main__":
    main()
