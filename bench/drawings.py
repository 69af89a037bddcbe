"""Alt texts and titles of real drawings (issue 15 item 1): does the local provider name what a drawing shows?

    OPENBLAS_NUM_THREADS=1 python bench/drawings.py                    # this tree vs the base commit (1feaeda)
    python bench/drawings.py --baseline none --details                 # this tree only, one row per image
    python bench/drawings.py --split fit --details                     # only the images rules may be fitted on

The images are tests/data/clipart (make_set.py: 89 Open Clip Art Library drawings from Debian's openclipart-png,
public domain, chosen by a fixed rule from folders whose names say one everyday subject; truth.json gives each
one's subject words and its split). None of them was used to design the drawing rules, unlike tests/data/quality's
Pillow renders. Each goes through the real stages in-process as in bench/quality.py (run_pipeline: preprocess ->
enrich with the local provider -> validate); the baseline is the same script on `git archive <ref>`, same images,
same run.

Per split ("fit": rules may be tuned on it; "held-out": only checked), for the alt text and for the title:
  names the subject   it contains one of the subject words (bench/quality.py _names_subject: word, optional s/es)
  wrong subject       it names a thing that is not the subject: its subject came from a model (detector,
                      classifier, class evidence), not from the pixels' kind ("a simple graphic"), a logo look,
                      the text read, or nothing. Worse than generic: it tells a blind reader something false.
  generic             "A simple graphic in red on a white background", "A logo", "A sign with text ...", or
                      decorative (no alt text at all: counted too, in brackets)
The title is counted by the same rule (it is the alt text's subject or the text's first line).
  auto-applied        drawings validate auto-applied (its calibrated fields all >= auto_apply_threshold), and of
                      them those whose alt text names the subject / a WRONG subject: is the calibration, fitted on
                      tests/data/quality, honest on drawings it never saw? (issue 15: >= 95 % of auto-applied fields
                      right; these drawings have no tag truth, so only the alt text is scored)
"""
from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this tree's bench/quality.py, also in a baseline child

import quality  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "clipart"
BASE_REF = "1feaeda"
GENERIC_SOURCES = {"none", "logo", "ocr", "ink", "pixels", None}
"""subject_evidence of an alt text that names no thing (what the pixels look like, a logo, the text read)"""


def run(names: list[str]) -> dict:
    """bench/quality.py's run_pipeline on the drawings, each image's record with what named its subject."""
    out = quality.run_pipeline(names, data=DATA)
    for name, r in out["images"].items():
        enr = out["_enriched"][name]
        r["summary"] = (enr.get("enrichment") or {}).get("summary") or ""
        r.update(quality.model_facts(enr, classes=4, boxes=3))  # for --details
    return out


def verdict(text: str, subject: list[str], evidence: str | None, decorative: bool) -> str:
    """'subject', 'wrong' or 'generic' (see the module docstring)."""
    if decorative or not (text or "").strip():
        return "generic"
    if quality._names_subject(text, subject):
        return "subject"
    return "generic" if evidence in GENERIC_SOURCES else "wrong"


def score(images: dict, truth: dict, split: str | None) -> dict:
    names = [n for n in images if split is None or truth[n]["split"] == split]
    counts = {"images": len(names), "decorative": 0, "logo": 0, "auto": 0, "auto_subject": 0, "auto_wrong": 0}
    for field in ("alt", "title"):
        for v in ("subject", "wrong", "generic"):
            counts[f"{field}_{v}"] = 0
    for n in names:
        r, words = images[n], truth[n]["subject"]
        counts["decorative"] += r["decorative"]
        counts["logo"] += r.get("subject_evidence") == "logo"
        counts["alt_" + verdict(r["alt_text"], words, r.get("subject_evidence"), r["decorative"])] += 1
        counts["title_" + verdict(r["title"], words, r.get("subject_evidence"), r["decorative"])] += 1
        if r.get("status") == "auto_applied":
            counts["auto"] += 1
            v = verdict(r["alt_text"], words, r.get("subject_evidence"), r["decorative"])
            counts["auto_" + v] = counts.get("auto_" + v, 0) + 1
    return counts


def table(cur: dict, base: dict | None, truth: dict) -> str:
    cols = ["this tree"] + (["baseline"] if base else [])
    lines = ["| split | measure | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for split in ("held-out", "fit", None):
        scores = [score(r["images"], truth, split) for r in ([cur, base] if base else [cur])]
        if not scores[0]["images"]:
            continue

        def cell(s, key):
            if key.startswith("auto_"):  # a share of the auto-applied drawings
                return f"{s[key]}/{s['auto']}" + (f" ({s[key] / s['auto']:.0%})" if s["auto"] else "")
            return f"{s[key]}/{s['images']} ({s[key] / s['images']:.0%})"
        for label, key in (("alt names the subject", "alt_subject"), ("alt names a WRONG subject", "alt_wrong"),
                           ("alt generic", "alt_generic"), ("  of them decorative (no alt text)", "decorative"),
                           ("  of them \"a logo\"", "logo"), ("title names the subject", "title_subject"),
                           ("title names a WRONG subject", "title_wrong"), ("title generic", "title_generic"),
                           ("auto-applied", "auto"), ("  of them alt names the subject", "auto_subject"),
                           ("  of them alt names a WRONG subject", "auto_wrong")):
            lines.append(f"| {split or 'all'} | {label} | " + " | ".join(cell(s, key) for s in scores) + " |")
    return "\n".join(lines)


def details(cur: dict, base: dict | None, truth: dict, names: list[str]) -> str:
    out = []
    for name in sorted(names, key=lambda n: (truth[n]["split"], truth[n]["subject_name"])):
        r, t = cur["images"][name], truth[name]
        v = verdict(r["alt_text"], t["subject"], r.get("subject_evidence"), r["decorative"])
        out.append(f"\n{name} [{t['split']}] {t['subject_name']} ({t['source']}): {v.upper()} "
                   f"[{r.get('subject_evidence')}] {r.get('status')}\n  alt: {r['alt_text']!r}\n  title: {r['title']!r}\n"
                   f"  classes: {r.get('classes')} objects: {r.get('objects')} graphic: {r.get('graphic')}\n"
                   f"  tags: {r['tags'][:6]}")
        if base:
            b = base["images"][name]
            bv = verdict(b["alt_text"], t["subject"], b.get("subject_evidence"), b["decorative"])
            out.append(f"  BASE {bv.upper()} alt: {b['alt_text']!r} title: {b['title']!r}")
    return "\n".join(out)


def main() -> None:
    ap = quality.arguments(__doc__, BASE_REF)
    ap.add_argument("--split", choices=("fit", "held-out"), help="only this split's images")
    ap.add_argument("--json", help="write both runs' per-image outputs here")
    args = ap.parse_args()
    truth = json.loads((DATA / "truth.json").read_text())["images"]
    if args.order:
        names = args.order.split(",")
    else:
        names = sorted(n for n in truth if args.split is None or truth[n]["split"] == args.split)
        random.Random(args.seed).shuffle(names)
    if args.raw_json:  # baseline child
        quality._load_code(Path(args.code))
        out = run(names)
        Path(args.raw_json).write_text(json.dumps({k: v for k, v in out.items() if not k.startswith("_")}))
        return
    base = quality._baseline(args.baseline, names, Path(__file__).resolve()) if args.baseline != "none" else None
    quality._load_code(Path(args.code))
    cur = run(names)
    load = os.getloadavg()
    print(f"{len(names)} drawings (tests/data/clipart), baseline {args.baseline}; load average {load[0]:.1f}")
    print(table(cur, base, truth))
    if args.details:
        print(details(cur, base, truth, names))
    if args.json:
        Path(args.json).write_text(json.dumps({"current": cur["images"], "baseline": base and base["images"]},
                                              indent=1))


if __name__ == "__main__":
    main()
