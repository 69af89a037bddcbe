"""How hybrid search fuses its visual leg (issue 17, branch `fuse`): ways to let a confident visual leg count,
each parameter chosen on the labelled set's FIT words only, checked on held-out words, phrases and the text
library.

    python bench/fusion.py                      # embedded osmem store, about a minute
    python bench/fusion.py --json fusion.json

Every query runs once through the real hybrid search (real pipeline on tests/data/quality, real IndexSink, the
embedded store) with the fusion main had (index.visual_leg_weak_below None: every visual leg contributes its
visual_leg_max_hits = 10 best images, equal weights, rank constant 60); the answer's report keeps each leg's
ranking (keyword, text kNN, tag, visual) and the classes the visual leg used. The fusions below are then computed
from those same rankings, so every row is over identical legs:

  weight w          the visual leg's RRF contribution times w (Elasticsearch 9.2+'s weighted rrf retriever,
                    OpenSearch 3.1+'s score-ranker weights)
  gate>=t w         weight w only when the query's closest class name is at least t, else 1
  weak<t w          weight w when the closest class name is below t, else 1
  rank k            the visual leg with its own rank constant k (the others keep 60)
  first n @t        hits as fused, then the leg's n best images moved to the top when the closest class >= t
  share<t n         the leg contributes only its n best images when the closest class is below t (what
                    index.visual_leg_weak_below / visual_leg_weak_hits do; expressible as the knn retriever's k)

Per family, the pick is the parameter with the best fit-word recall@10 (ties: nDCG@10, then the first listed);
its held-out, phrase and text-library figures are the check (a change is kept only if none of them drops).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings  # noqa: E402
from bench.search import LIBRARY, QUERIES, labelled_images, labelled_queries, metrics_at_k  # noqa: E402
from consumers.index.sink import IndexSink  # noqa: E402
from domain.store.management import read_alias  # noqa: E402
from domain.store.search import hybrid_search  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402

KINDS = ("fit word", "held-out word", "phrase")
LEG_NAMES = ("keyword", "text", "tag", "visual", "literal")


def capture(client, settings, queries) -> list[dict]:
    """Each query's leg rankings (document ids, best first), the visual leg's closest class cosine, and what
    hybrid search answered (the check that the offline fusion reproduces it)."""
    out = []
    for kind, q, rel in queries:
        report: dict = {}
        hits = hybrid_search(client, settings, q, size=10, report=report)
        leg = report.get("visual_leg") or {}
        out.append({"kind": kind, "query": q, "relevant": sorted(rel), "legs": report["legs"],
                    "best_class": leg["classes"][0]["similarity"] if leg.get("used") else None,
                    "answer": [h["asset_id"] for h in hits]})
    return out


@dataclass(frozen=True)
class Fusion:
    """One way to fuse the legs: the visual leg's weight, rank constant, hits kept and first hits moved to the
    top, applied when `when` holds for the query's closest class cosine b ("always", "strong": b >= t, "weak":
    b < t); otherwise equal RRF (weight 1, k 60, every hit)."""

    name: str
    weight: float = 1.0
    rank_k: int = 60
    keep: int | None = None
    first: int = 0
    when: str = "always"
    t: float = 0.0

    def applies(self, best: float | None) -> bool:
        return best is not None and (self.when == "always" or (best >= self.t) == (self.when == "strong"))


def fuse(q: dict, f: Fusion) -> list[str]:
    """Weighted RRF over the query's legs (ties by first appearance, as domain.store.search.rrf)."""
    on = f.applies(q["best_class"])
    scores: dict[str, float] = {}
    for name in LEG_NAMES:
        ranking = q["legs"].get(name, [])  # "literal": not in captures made before the literal leg
        w, k = (f.weight, f.rank_k) if name == "visual" and on else (1.0, 60)
        if name == "visual" and on and f.keep is not None:
            ranking = ranking[:f.keep]
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    got = [d for d, _ in sorted(scores.items(), key=lambda kv: -kv[1])]
    if on and f.first:
        top = q["legs"]["visual"][:f.first]
        got = top + [d for d in got if d not in top]
    return got


MAIN = Fusion("main")


def figures(queries: list[dict], f: Fusion) -> dict[str, dict]:
    acc: dict[str, list[dict]] = {}
    for q in queries:
        m = metrics_at_k(fuse(q, f), set(q["relevant"]))
        for key in (q["kind"], "all"):
            acc.setdefault(key, []).append(m)
    return {k: {n: round(statistics.mean(x[n] for x in v), 3) for n in ("recall", "ndcg")} for k, v in acc.items()}


def families() -> dict[str, list[Fusion]]:
    gates, weak = (0.55, 0.6, 0.65, 0.7), (0.55, 0.6, 0.65, 0.7, 0.8)
    return {
        "main (equal RRF)": [MAIN],
        "weight": [Fusion(f"w={w:g}", weight=w) for w in (0.25, 0.5, 0.75, 1.5, 2, 3, 4)],
        "gated weight": [Fusion(f"gate>={t:g} w={w:g}", weight=w, when="strong", t=t)
                         for t in gates for w in (2, 3, 5, 100)],
        "weak weight": [Fusion(f"weak<{t:g} w={w:g}", weight=w, when="weak", t=t)
                        for t in gates for w in (0, 0.25, 0.5, 0.75)],
        "rank constant": [Fusion(f"rank k={k}", rank_k=k) for k in (1, 5, 10, 20, 30, 120, 240)],
        "first hits": [Fusion(f"first {n} @{t:g}", first=n, when="strong", t=t)
                       for t in (0.5, *gates, 0.8) for n in (1, 2)],
        "weak share": [Fusion(f"share<{t:g} n={n}", keep=n, when="weak", t=t) for t in weak for n in (1, 2, 3, 5)],
    }


def _row(name: str, img: dict, txt: dict) -> str:
    return f"  {name:<20}" + "".join(f"{img[k]['recall']:>9.3f}{img[k]['ndcg']:>7.3f}" for k in KINDS) + \
        f"{txt['all']['recall']:>9.3f}{txt['all']['ndcg']:>7.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the captured legs and the figures here")
    ap.add_argument("--all-rows", action="store_true", help="print every parameter, not only each family's pick")
    args = ap.parse_args()
    store = OsmemStore().start()
    try:
        base = Settings().with_overrides(index={"url": store.url, "server_mode": "serverless",
                                                "number_of_replicas": 0, "vector_mode": "off",
                                                "visual_leg_weak_below": None})  # main's fusion: the legs whole
        settings = base.with_overrides(index={"index": f"bench-fusion-{uuid.uuid4().hex[:6]}"})
        records, terms, _ = labelled_images(settings)
        sink = IndexSink(settings)
        sink.process_batch(as_items(records))
        sink.client.indices.refresh(index=read_alias(settings.index))
        images = capture(sink.client, settings, [q for q in labelled_queries(terms) if q[0] != "word"])
        sink.close()
        text_settings = base.with_overrides(index={"index": f"bench-fusion-text-{uuid.uuid4().hex[:6]}"})
        sink = IndexSink(text_settings)
        sink.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=a, tags=tags, ocr_text="")
                                     for aid, t, a, tags in LIBRARY]))
        sink.client.indices.refresh(index=read_alias(text_settings.index))
        text = capture(sink.client, text_settings, QUERIES)
        sink.close()
    finally:
        store.stop()
    same = sum(fuse(q, MAIN)[:10] == q["answer"][:10] for q in images + text)
    print(f"offline fusion reproduces hybrid search's top 10 for {same} of {len(images) + len(text)} queries; "
          f"visual leg in {sum(q['best_class'] is not None for q in images)} of {len(images)} labelled-set "
          f"queries, {sum(q['best_class'] is not None for q in text)} of {len(text)} text-library queries")
    counts = {k: sum(q["kind"] == k for q in images) for k in KINDS}
    label = {"fit word": "fit words", "held-out word": "held-out", "phrase": "phrases"}
    print(f"\n{'':<22}" + "".join(f"{f'{label[k]} ({counts[k]})':>16}" for k in KINDS) +
          f"{f'text ({len(text)})':>16}")
    print(f"{'':<22}" + "   R@10   nDCG" * 4)
    result: dict = {"images": images, "text": text, "families": {}}
    for family, params in families().items():
        rows = [(f.name, figures(images, f), figures(text, f)) for f in params]
        pick = max(rows, key=lambda r: (r[1]["fit word"]["recall"], r[1]["fit word"]["ndcg"]))
        print(f"{family} (pick on fit words: {pick[0]})")
        for name, img, txt in rows if args.all_rows else [pick]:
            print(_row(name, img, txt))
        result["families"][family] = {"pick": pick[0], "rows": {n: {"images": i, "text": t} for n, i, t in rows}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
