"""Which floor for the classifier guesses the local provider's summary lists ("Likely contents: ...")? Issues 15
and 17: weak guesses in the summary are read as contents and matched by keyword search (the user trial's "website
(2%)"), but some of them also lead search to the right image.

    OPENBLAS_NUM_THREADS=1 python bench/summary_floor.py                         # 0.03 0.04 0.05 0.08 0.12 0.18 0.25
    OPENBLAS_NUM_THREADS=1 python bench/summary_floor.py --floors 0.05 0.25

For each floor (engine.SUMMARY_FLOOR set in this process; the alt text, title and caption keep CONFIDENT), one run
of the real pipeline on the labelled set (bench/search.py labelled_images: preprocess, offline local enrich,
validate, the real IndexSink into a fresh index of one embedded osmem store), then on that index:
* bench/search.py's word queries (recall@10 per mode; "fit word" and "held-out word" by the quality bench's split);
* bench/guess_words.py's searches for every classifier guess (merged top 3): how many wrong (guess, image) pairs
  the search finds in its top 10, and how many right ones;
* bench/class_floor.py's judge: of the guesses the summary lists at this floor, how many are right.
The 427f9b3 baseline's figures (summary = the top 3 whatever their probability) come from bench/search.py and
bench/guess_words.py --baseline 427f9b3 (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.class_floor import guesses  # noqa: E402
from bench.guess_words import guess_hits  # noqa: E402
from bench.search import evaluate, labelled_images, labelled_queries  # noqa: E402
from consumers.enrich.providers.local import engine  # noqa: E402

FLOORS = (0.03, 0.04, 0.05, 0.08, 0.12, 0.18, 0.25)
KINDS = ("fit word", "held-out word", "word")
MODES = ("keyword", "semantic", "hybrid")


def measure(floor: float, url: str) -> dict:
    from app.settings import Settings
    from consumers.index.sink import IndexSink
    from domain.store.management import read_alias
    from tests.store_support import as_items

    engine.SUMMARY_FLOOR = floor
    settings = Settings().with_overrides(index={"url": url, "server_mode": "serverless", "number_of_replicas": 0,
                                                "vector_mode": "off",
                                                "index": f"bench-floor-{uuid.uuid4().hex[:6]}"})
    records, terms, _ = labelled_images(settings)
    sink = IndexSink(settings)
    sink.process_batch(as_items(records))
    sink.client.indices.refresh(index=read_alias(settings.index))
    rows, per_query = evaluate(sink.client, settings, [q for q in labelled_queries(terms) if q[0] in KINDS])
    judged = [r for r in guesses(3) if not r["box"]]
    hits = guess_hits(sink.client, settings, judged)
    sink.close()
    named = [r for r in judged if r["named"]]
    listed = sum("Likely contents:" in (r.get("summary") or "") for r in records)
    return {"floor": floor, "recall": {m: {k: rows[m][k]["recall"] for k in KINDS} for m in MODES},
            "guess_hits": hits, "named": len(named), "named_right": sum(r["right"] for r in named),
            "summaries_with_list": listed, "hybrid_word_recall": {q["query"]: q["recall"] for q in per_query
                                                                   if q["mode"] == "hybrid" and q["kind"] == "word"}, "lowest_listed": min((r["p"] for r in named), default=None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--floors", type=float, nargs="*", default=list(FLOORS))
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from streams.embedded_store import OsmemStore

    with OsmemStore() as store:
        out = []
        for f in args.floors:
            out.append(measure(f, store.url))
            print(json.dumps(out[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print("\n| summary floor | listed: guesses / right / precision | hybrid recall fit / held-out / all words | "
          "semantic | keyword | wrong guess finds its image: keyword / semantic / hybrid / hybrid w/o visual | "
          "right guess: keyword |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in out:
        rec = {m: " / ".join(f"{r['recall'][m][k]:.3f}" for k in KINDS) for m in MODES}
        h = r["guess_hits"]
        wrong = " / ".join(str(h[m]["wrong_found"]) for m in h) + f" (of {h['keyword']['wrong_n']})"
        prec = r["named_right"] / r["named"] if r["named"] else 0.0
        print(f"| {r['floor']:.2f} | {r['named']} / {r['named_right']} / {prec:.2f} | {rec['hybrid']} | "
              f"{rec['semantic']} | {rec['keyword']} | {wrong} | {h['keyword']['right_found']} of "
              f"{h['keyword']['right_n']} |")


if __name__ == "__main__":
    main()
