"""Search relevance and latency (issue 17): keyword (BM25 + vocabulary synonyms, the baseline: search before
text vectors) vs semantic (MiniLM kNN alone) vs hybrid (both, fused by RRF), measured in one run.

    python bench/search.py --latency 10000 100000 --latency-queries 200 --scan-queries 20   # embedded osmem
    python bench/search.py --url http://127.0.0.1:9200 --json out.json
    python bench/search.py --skip-images                                  # the text library only (fast)
    python bench/search.py --text-variants      # also: what the text vector reads (embedding_text variants)

1. The labelled image set (tests/data/quality: 47 real images, truth.json): every image goes through the real
   stages in-process (preprocess with tesseract, enrich with the offline local provider, validate), then the
   real IndexSink (text and image vectors). Queries: every subject word and phrase of the truth ("cat",
   "coffee", "space suit", ...); the relevant assets are the images whose truth lists it. recall@10,
   precision@10 and nDCG@10 (binary relevance) per mode, and the ratio to keyword.
1b. The literal match rank (trial 12): for LITERAL_QUERIES, the rank of the first asset whose own text holds every
   query word, per mode, after the trial's alt-text edit (EDITS) is written to the labelled index.
2. A hand-written text library (24 assets described the way the pipeline publishes them; plain words,
   vocabulary synonyms, conceptual phrases, each with the assets a person would expect): the same figures.
2b. `--text-variants`: each index copied (the same documents, every tag kept) with text vectors made from a
   variant of embedding_text (text_variants: without the medium tags, without synonyms, ...), searched semantic
   and hybrid; ratios to today's text in the same run, and every query a variant changed.
3. `--latency N...`: p50/p99 of keyword, semantic and hybrid queries over N synthetic documents (random unit
   vectors, bulk-loaded) on the embedded store (vector_mode off: exact cosine in the search process).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

# as in the Dockerfile: one BLAS thread (a query embeds a handful of tokens; OpenBLAS's threads spinning on a
# shared machine cost 30x); set before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings  # noqa: E402
from consumers.index.sink import IndexSink  # noqa: E402
from domain.store.api import SearchRequest, run_search  # noqa: E402
from domain.store.management import read_alias  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "quality"
K = 10
MODES = ("keyword", "semantic", "hybrid")
WHOLE_LEG = {"visual_leg_max_hits": None, "visual_leg_weak_below": None}
"""The visual leg's whole window in the fusion, however weak its class match (no cap, no weak share)."""
SUBSETS = ("fit word", "held-out word")
"""Query kinds that are subsets of "word" (the quality bench's split by duplicate family: a held-out word's relevant
images are all held out, a fit word's are not); counted in their own rows only, not again in "all"."""

LIBRARY: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("birthday", "Kids blowing out birthday candles", "children around a cake with balloons",
     [("subject", "people"), ("subject", "dessert"), ("setting", "indoor")]),
    ("wedding", "Bride and groom on the dance floor", "a couple dancing at their wedding reception",
     [("subject", "people"), ("activity", "dancing"), ("mood", "romantic")]),
    ("fireworks", "Fireworks over the harbour on New Year's Eve", "bursts of colour above the water at night",
     [("setting", "night"), ("subject", "sky"), ("subject", "water")]),
    ("runner-shoe", "Trail runner 2 side view", "grey mesh athletic shoe with orange laces",
     [("product", "sneaker"), ("color", "gray"), ("style", "studio")]),
    ("boots", "Leather ankle boots", "brown leather boots on a wooden floor", [("product", "boot"), ("color", "brown")]),
    ("sandals", "Summer sandals on sand", "tan strappy sandals at the beach", [("product", "sandal"), ("subject", "beach")]),
    ("sofa", "Blue three-seat sofa", "a blue sofa with cushions in a bright living room",
     [("product", "sofa"), ("color", "blue"), ("setting", "home")]),
    ("armchair", "Reading nook", "an armchair under a floor lamp next to a bookshelf",
     [("product", "chair"), ("product", "lamp"), ("mood", "cozy")]),
    ("tax-form", "Tax return paperwork", "a printed form and a pen on an office desk",
     [("content", "document"), ("setting", "office")]),
    ("chart", "Quarterly revenue chart", "bar chart of sales by region", [("content", "chart")]),
    ("laptop", "Laptop on a desk", "an open laptop next to a coffee cup", [("product", "laptop"), ("product", "cup")]),
    ("mountain-lake", "Mountain lake at dawn", "still water below snowy peaks",
     [("subject", "landscape"), ("setting", "mountain-setting"), ("mood", "calm")]),
    ("surf", "Surfer riding a wave", "a surfer on a big wave at sunset", [("activity", "surfing"), ("subject", "water")]),
    ("cyclist", "Commuter on a city bike", "a cyclist in traffic on a rainy street",
     [("activity", "cycling"), ("setting", "urban"), ("subject", "bicycle")]),
    ("dog-park", "Golden retriever fetching a ball", "a dog running on grass in the park",
     [("subject", "dog"), ("setting", "outdoor")]),
    ("cat-window", "Cat on a windowsill", "a tabby cat looking out of the window", [("subject", "cat"), ("setting", "indoor")]),
    ("pasta", "Fresh tagliatelle with basil", "a plate of pasta with tomato sauce", [("subject", "dish"), ("subject", "food")]),
    ("market", "Farmers market stall", "crates of apples and vegetables at a market stand",
     [("subject", "fruit"), ("subject", "vegetable"), ("activity", "shopping")]),
    ("red-mug", "Red ceramic mug", "a red mug on a white background", [("product", "cup"), ("color", "red"), ("style", "studio")]),
    ("watch", "Steel wristwatch", "a silver watch with a black dial", [("product", "watch"), ("mood", "luxurious")]),
    ("office-team", "Team meeting", "four colleagues discussing around a table in a meeting room",
     [("subject", "people"), ("setting", "office"), ("activity", "working")]),
    ("yoga", "Morning yoga on the beach", "a woman stretching on a mat by the sea",
     [("activity", "exercising"), ("subject", "beach"), ("mood", "calm")]),
    ("concert", "Crowd at an open-air concert", "hands in the air in front of a lit stage",
     [("subject", "people"), ("setting", "night"), ("mood", "energetic")]),
    ("snow-ski", "Skier on a fresh powder slope", "a skier carving through deep snow",
     [("activity", "skiing"), ("subject", "snow"), ("setting", "mountain-setting")]),
]

QUERIES: list[tuple[str, str, set[str]]] = [
    # (kind, query, relevant asset ids)
    ("word", "sofa", {"sofa"}),
    ("word", "dog", {"dog-park"}),
    ("synonym", "trainers", {"runner-shoe"}),
    ("synonym", "couch", {"sofa"}),
    ("synonym", "puppy", {"dog-park"}),
    ("synonym", "party", {"birthday", "wedding", "concert"}),
    ("concept", "joyful celebration", {"birthday", "wedding", "fireworks", "concert"}),
    ("concept", "footwear for running", {"runner-shoe"}),
    ("concept", "paperwork and finances", {"tax-form", "chart"}),
    ("concept", "working from home setup", {"laptop"}),
    ("concept", "healthy outdoor exercise", {"yoga", "surf", "cyclist", "snow-ski"}),
    ("concept", "winter sports", {"snow-ski"}),
    ("concept", "pets at home", {"cat-window", "dog-park"}),
    ("concept", "italian dinner", {"pasta"}),
    ("concept", "fresh produce", {"market"}),
    ("concept", "business meeting", {"office-team"}),
    ("concept", "relaxing by the ocean", {"yoga", "surf", "sandals"}),
    ("concept", "luxury accessories", {"watch"}),
    # two words that each match some asset alone; the asset a person means has both (issue 17's "orange spacesuit")
    ("two-word", "red mug", {"red-mug"}),
    ("two-word", "blue sofa", {"sofa"}),
    ("two-word", "leather boots", {"boots"}),
    ("two-word", "orange laces", {"runner-shoe"}),
    ("two-word", "beach yoga", {"yoga"}),
    ("two-word", "city bike", {"cyclist"}),
    ("two-word", "office desk", {"tax-form"}),
    ("two-word", "snowy mountain", {"mountain-lake"}),
]


def metrics_at_k(got: list[str], relevant: set[str], k: int = K) -> dict[str, float]:
    """recall@k, precision@k and nDCG@k (binary relevance) of one ranked list."""
    top = got[:k]
    hits = [1.0 if d in relevant else 0.0 for d in top]
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return {"recall": sum(hits) / len(relevant), "precision": sum(hits) / k, "ndcg": dcg / idcg if idcg else 0.0}


def variants(settings, thresholds: list[float] = (),
             floors: list[float] = ()) -> list[tuple[str, str, list[tuple[object, object]]]]:
    """(label, search mode, runs): each run is (settings, context) and a variant's figures are over all its runs.
    hybrid = with the visual leg (index.visual_leg, the default); hyb-novis = the same without it; hyb-ctrl = the
    visual leg with random class prototypes (every class name's embedding moved to another class, so the same
    count of classes per query point to random prototypes; three permutations): an honesty check that the leg's
    gain comes from the classes it names. sem-nofloor / hyb-nofloor = semantic / hybrid without the relevance
    floor (index.semantic_min_similarity None: the k nearest, however far), the baseline of the floor;
    hyb-visall = hybrid with the visual leg's whole window in the fusion (WHOLE_LEG);
    hyb-before = neither the floor nor the cap: hybrid as it was before them; hyb-main = hybrid with every visual
    leg contributing visual_leg_max_hits images, however weakly the query names its classes
    (index.visual_leg_weak_below None: the default until session 17, the baseline of the weak share);
    hyb-weak = the weak share on (0.6, branch fuse's pick; the default since session 17, so = hybrid);
    kw-nocover / hyb-nocover = keyword / hybrid without the keyword coverage clauses (index.keyword_coverage None:
    BM25 alone, the ranking before issue 17's fix), the baseline of keyword_coverage; hyb-nolit = hybrid without
    the literal leg (index.literal_leg False: hybrid before trial 12's "lemon" fix), the baseline of the leg."""
    novis = settings.with_overrides(index={"visual_leg": False})
    nocover = settings.with_overrides(index={"keyword_coverage": None})
    nofloor = settings.with_overrides(index={"semantic_min_similarity": None})
    out = [("keyword", "keyword", [(settings, None)]), ("kw-nocover", "keyword", [(nocover, None)]),
           ("hyb-nocover", "hybrid", [(nocover, None)]), ("semantic", "semantic", [(settings, None)]),
           ("sem-nofloor", "semantic", [(nofloor, None)]),
           ("hyb-novis", "hybrid", [(novis, None)]), ("hybrid", "hybrid", [(settings, None)]),
           ("hyb-nolit", "hybrid", [(settings.with_overrides(index={"literal_leg": False}), None)]),
           ("hyb-nofloor", "hybrid", [(nofloor, None)]),
           ("hyb-visall", "hybrid", [(settings.with_overrides(index=WHOLE_LEG), None)]),
           ("hyb-before", "hybrid", [(settings.with_overrides(index={**WHOLE_LEG, "semantic_min_similarity": None}),
                                        None)]),
           ("hyb-ctrl", "hybrid", [(settings, seed) for seed in (0, 1, 2)]),
           ("hyb-main", "hybrid", [(settings.with_overrides(index={"visual_leg_weak_below": None}), None)]),
           ("hyb-weak", "hybrid", [(settings.with_overrides(index={"visual_leg_weak_below": 0.6}), None)])]
    out += [(f"hyb@{t:g}", "hybrid", [(settings.with_overrides(index={"visual_leg_threshold": t}), None)])
            for t in thresholds]
    for f in floors:
        floored = settings.with_overrides(index={"semantic_min_similarity": f})
        out += [(f"sem>={f:g}", "semantic", [(floored, None)]), (f"hyb>={f:g}", "hybrid", [(floored, None)])]
    return out


@contextlib.contextmanager
def random_prototypes(seed: int | None):
    """For the control: the class names' embeddings permuted (seed), so a query that names k classes gets k
    random classes' prototypes (image rows and class-score columns alike); nothing when seed is None."""
    if seed is None:
        yield
        return
    import numpy as np

    from domain.vision import prototypes

    real = prototypes.shared_prototypes()
    control = copy.copy(real)
    control.name_vectors = real.name_vectors[np.random.default_rng(seed).permutation(len(real.name_vectors))]
    prototypes._shared = control
    try:
        yield
    finally:
        prototypes._shared = real


def evaluate(client, settings, queries: list[tuple[str, str, set[str]]],
             thresholds: list[float] = (), floors: list[float] = ()) -> tuple[dict, list[dict]]:
    """Per variant and query kind: mean recall@10, precision@10, nDCG@10, and the per-query lists."""
    rows: dict[str, dict] = {}
    per_query: list[dict] = []
    for label, mode, runs in variants(settings, thresholds, floors):
        acc: dict[str, dict[str, list[float]]] = {}
        lat: list[float] = []
        for st, seed in runs:
            with random_prototypes(seed):
                for kind, q, rel in queries:
                    t = time.perf_counter()
                    answer = run_search(client, st, SearchRequest(query=q, mode=mode, size=K, facets=False))
                    lat.append((time.perf_counter() - t) * 1000)
                    got = [h["asset_id"] for h in answer["hits"]]
                    m = metrics_at_k(got, rel)
                    for key in (kind, "all") if kind not in SUBSETS else (kind,):
                        for name, v in m.items():
                            acc.setdefault(key, {}).setdefault(name, []).append(v)
                    if seed is None:
                        per_query.append({"mode": label, "kind": kind, "query": q,
                                          **{k: round(v, 3) for k, v in m.items()}, "top": got,
                                          "top_score": answer["hits"][0]["score"] if answer["hits"] else None,
                                          "relevant": sorted(rel), "visual_leg": answer.get("visual_leg")})
        rows[label] = {kind: {name: round(statistics.mean(v), 3) for name, v in d.items()} for kind, d in acc.items()}
        rows[label]["p50_ms"] = round(statistics.median(lat), 1)
    return rows, per_query


NONSENSE = ["zxqvbnm", "blorftangle", "qwpzrk vlemt", "asdfghjkl", "florbix wuzzle", "xyzzy", "mrrglpth",
            "snarfblat"]
"""Made-up words no asset means: every hit a vector leg adds is padding."""
CLASS_WORDS = ["zebrawood", "tarantula", "accordion", "snowmobile", "harmonica", "flamingo"]
"""Words close to an ImageNet class name (the visual leg takes part) that no asset of the sets shows (checked
against the labelled set's truth in main): hits past the keyword matches are padding from the vector legs."""


def nonsense_hits(client, settings, floors: list[float] = (), queries: list[str] = NONSENSE) -> dict[str, dict[str, float]]:
    """Mean hits and mean `total` per mode (with and without the floor, and at each of `floors`) over the
    queries (NONSENSE or CLASS_WORDS)."""
    nofloor = settings.with_overrides(index={"semantic_min_similarity": None})
    runs = [("keyword", "keyword", settings), ("semantic", "semantic", settings), ("sem-nofloor", "semantic", nofloor),
            ("hybrid", "hybrid", settings), ("hyb-nofloor", "hybrid", nofloor),
            ("hyb-visall", "hybrid", settings.with_overrides(index=WHOLE_LEG)),
            ("hyb-before", "hybrid", settings.with_overrides(index={**WHOLE_LEG, "semantic_min_similarity": None}))]
    for f in floors:
        floored = settings.with_overrides(index={"semantic_min_similarity": f})
        runs += [(f"sem>={f:g}", "semantic", floored), (f"hyb>={f:g}", "hybrid", floored)]
    out: dict[str, dict[str, float]] = {}
    for label, mode, st in runs:
        answers = [run_search(client, st, SearchRequest(query=q, mode=mode, size=20, facets=True)) for q in queries]
        out[label] = {"hits": statistics.mean(len(a["hits"]) for a in answers),
                      "total": statistics.mean(a["total"] for a in answers)}
    return out


def print_nonsense(title: str, figures: dict[str, dict[str, float]], queries: list[str] = NONSENSE) -> None:
    print(f"\n{title}: {len(queries)} queries ({', '.join(queries)}), page size 20: mean hits / total")
    print("  " + ", ".join(f"{m} {f['hits']:.1f} / {f['total']:.1f}" for m, f in figures.items()))


def cosine_gap(client, settings, queries: list[tuple[str, str, set[str]]]) -> dict[str, list[float]]:
    """The MiniLM cosine of every (query, document) pair, split by relevance (the query embedded as semantic
    search embeds it), and each nonsense query's best cosine: the data the floor's default is chosen from."""
    from domain.store.search import _expand, default_taxonomy, embed_query, vector_leg, vector_query_text

    st = settings.with_overrides(index={"semantic_min_similarity": None})
    tax = default_taxonomy(st)
    out: dict[str, list[float]] = {"relevant": [], "irrelevant": [], "best irrelevant": [], "worst relevant": [],
                                   "nonsense best": []}
    for kind, q, rel in [*queries, *(("nonsense", q, set()) for q in NONSENSE)]:
        if kind in SUBSETS:
            continue
        synonyms, named = _expand(q, tax)
        near = vector_leg(client, st, embed_query(vector_query_text(q, synonyms if named else (), tax)), [], 10_000)
        scores = {h["_id"]: float(h["_score"]) for h in near}
        if kind == "nonsense":
            out["nonsense best"].append(max(scores.values()))
            continue
        good = [v for d, v in scores.items() if d in rel]
        bad = [v for d, v in scores.items() if d not in rel]
        out["relevant"] += good
        out["irrelevant"] += bad
        if good:
            out["worst relevant"].append(min(good))
        if bad:
            out["best irrelevant"].append(max(bad))
    return out


def print_cosines(title: str, gap: dict[str, list[float]]) -> None:
    import numpy as np

    print(f"\n{title}: MiniLM cosine of query and document (percentiles 5/25/50/75/95, n)")
    for name, v in gap.items():
        if v:
            p = np.percentile(v, [5, 25, 50, 75, 95])
            print(f"  {name:<16}" + " ".join(f"{x:6.3f}" for x in p) + f"  n={len(v)}")


def _ratios(r: dict, b: dict) -> list[str]:
    return [f"{r[n] / b[n]:.2f}" if b[n] else ("inf" if r[n] else "-") for n in ("recall", "precision", "ndcg")]


def print_rows(title: str, rows: dict, kinds: list[str], n_docs: int, n_queries: int) -> None:
    print(f"\n{title}: {n_docs} documents, {n_queries} queries (@{K}; x = variant / keyword, v = variant / hybrid "
          "without the visual leg (hyb-novis), same run)")
    print(f"{'variant':<11}{'kind':<14}{'recall':>8}{'prec':>8}{'nDCG':>8}   {'x recall':>9}{'x prec':>8}"
          f"{'x nDCG':>8}   {'v recall':>9}{'v prec':>8}{'v nDCG':>8}")
    for label in rows:
        for kind in kinds:
            r = rows[label][kind]
            x, v = _ratios(r, rows["keyword"][kind]), _ratios(r, rows["hyb-novis"][kind])
            print(f"{label:<11}{kind:<14}{r['recall']:>8.3f}{r['precision']:>8.3f}{r['ndcg']:>8.3f}   "
                  f"{x[0]:>9}{x[1]:>8}{x[2]:>8}   {v[0]:>9}{v[1]:>8}{v[2]:>8}")
    print("query p50 ms: " + ", ".join(f"{m} {rows[m]['p50_ms']}" for m in rows))


def changed(per_query: list[dict], base: str, variant: str, metrics: tuple[str, ...]):
    """(variant's per-query row, base's) for every query (subsets left out) where a metric differs."""
    before = {(pq["kind"], pq["query"]): pq for pq in per_query if pq["mode"] == base}
    for pq in per_query:
        b = before.get((pq["kind"], pq["query"]))
        if pq["mode"] == variant and b is not None and pq["kind"] not in SUBSETS and \
                any(b[m] != pq[m] for m in metrics):
            yield pq, b


def print_visual_details(per_query: list[dict], base: str = "hyb-novis", title: str = "visual leg",
                         variant: str = "hybrid") -> None:
    """Every query whose recall@10 or precision@10 `variant` changed against variant `base`, with the classes the
    visual leg used (held-out words: under their word, marked)."""
    held_out = {pq["query"] for pq in per_query if pq["kind"] == "held-out word"}
    print(f"\n{title}, per query ({base} -> {variant}; only the queries it changed; * = held-out word):")
    for pq, b in changed(per_query, base, variant, ("recall", "precision")):
        leg = pq.get("visual_leg") or {}
        classes = ", ".join(c["name"] for c in leg.get("classes", [])) or "-"
        mark = "*" if pq["query"] in held_out else " "
        print(f"  {pq['kind']:<7}{pq['query']!r:<19}{mark} R@10 {b['recall']:.2f} -> {pq['recall']:.2f}  "
              f"P@10 {b['precision']:.2f} -> {pq['precision']:.2f}  classes: {classes}")


def print_coverage_details(per_query: list[dict]) -> None:
    """Every query whose recall@10 or nDCG@10 the keyword coverage clauses changed, keyword and hybrid; and the
    highest BM25 score without them (what one word's coverage boost, index.keyword_coverage, has to exceed for
    more words matched to always rank first)."""
    bm25 = [pq["top_score"] for pq in per_query if pq["mode"] == "kw-nocover" and pq.get("top_score") is not None]
    if bm25:
        print(f"\nkeyword without coverage: highest hit score {max(bm25):.2f}, median top score "
              f"{statistics.median(bm25):.2f} over {len(bm25)} queries (index.keyword_coverage per word: "
              f"{Settings().index.keyword_coverage})")
    for base, variant in (("kw-nocover", "keyword"), ("hyb-nocover", "hybrid")):
        print(f"\nkeyword coverage, per query ({base} -> {variant}; only the queries it changed):")
        for pq, b in changed(per_query, base, variant, ("recall", "ndcg")):
            print(f"  {pq['kind']:<9}{pq['query']!r:<24} R@10 {b['recall']:.2f} -> {pq['recall']:.2f}  "
                  f"nDCG {b['ndcg']:.2f} -> {pq['ndcg']:.2f}  top3 {b['top'][:3]} -> {pq['top'][:3]}")


LITERAL_QUERIES = ["lemon", "green eyes", "moon", "apple pie", "chicken", "camera", "rose", "coins", "clock"]
"""Trial 12's queries where hybrid ranked the asset whose own text holds the words below weak-signal matches
(item 3; "green eyes" after the trial's edit of the cat's alt text, EDITS)."""
EDITS = {"chelsea.jpg": "A tabby cat with green eyes looking at the camera"}
"""The trial's alt-text edit (`assetstream feedback chelsea-… --approve --field 'alt_text=edited:…'`)."""


def literal_ranks(client, sink, records: list[dict], queries: list[str] = LITERAL_QUERIES) -> dict[str, dict]:
    """For each query, the documents whose own text holds every word as written (the literal leg's documents,
    domain.store.search.literal_leg, without filters) and the rank (1 = first, None = not in the first
    50) of the best of them in keyword, semantic, hybrid without the literal leg and hybrid; after the EDITS are
    written (a new version of those records, alt text marked edited, through the same sink)."""
    from domain.store.search import literal_leg

    edited = []
    for r in records:
        alt = EDITS.get(r["enriched"]["pre"]["asset"]["asset_id"])
        if alt is not None:
            e = copy.deepcopy(r)
            e["enriched"]["pre"]["asset"]["version"] += 1
            e["alt_text"], e["field_sources"] = alt, {**(e.get("field_sources") or {}), "alt_text": "edited"}
            edited.append(e)
    sink.process_batch(as_items(edited))
    settings = sink.settings
    sink.client.indices.refresh(index=read_alias(settings.index))
    from domain.store import vector_cache

    vector_cache._entries.clear()  # the edit's new text vector now, not after the cache's next check (~1 s)
    runs = [("keyword", "keyword", settings), ("semantic", "semantic", settings),
            ("hyb-nolit", "hybrid", settings.with_overrides(index={"literal_leg": False})),
            ("hybrid", "hybrid", settings)]
    out: dict[str, dict] = {}
    for q in queries:
        holding = {h["_source"]["asset_id"] for h in literal_leg(client, settings.index, q, [], 50)}
        row: dict = {"holding": sorted(holding)}
        for label, mode, st in runs:
            got = [h["asset_id"] for h in run_search(client, st, SearchRequest(query=q, mode=mode, size=50,
                                                                               facets=False))["hits"]]
            row[label] = next((i + 1 for i, d in enumerate(got) if d in holding), None) if holding else None
        out[q] = row
    return out


def print_literal_ranks(ranks: dict[str, dict]) -> None:
    labels = ("keyword", "semantic", "hyb-nolit", "hybrid")
    print("\nliteral match rank (trial 12): rank of the first asset whose own text holds every query word "
          "(- = none in the first 50; 'holds' = how many assets hold them)")
    print(f"  {'query':<13}{'holds':>6}" + "".join(f"{x:>11}" for x in labels))
    for q, row in ranks.items():
        print(f"  {q:<13}{len(row['holding']):>6}" + "".join(f"{row[x] or '-':>11}" for x in labels))


def print_literal_details(per_query: list[dict]) -> None:
    """Every query whose recall@10, precision@10 or nDCG@10 the literal leg changed (hyb-nolit -> hybrid)."""
    print("\nthe literal leg, per query (hyb-nolit -> hybrid; only the queries it changed):")
    for pq, b in changed(per_query, "hyb-nolit", "hybrid", ("recall", "precision", "ndcg")):
        print(f"  {pq['kind']:<9}{pq['query']!r:<24} R@10 {b['recall']:.2f} -> {pq['recall']:.2f}  "
              f"P@10 {b['precision']:.2f} -> {pq['precision']:.2f}  nDCG {b['ndcg']:.2f} -> {pq['ndcg']:.2f}  "
              f"top3 {b['top'][:3]} -> {pq['top'][:3]}")


MEDIUM_TAGS = ("content:photo", "content:graphic")
"""The medium tag (the local provider's content:photo / content:graphic, on most images)."""


def without_tags(body: dict, leave_out, synonyms_of, synonyms: bool = True) -> dict:
    """A copy of a document as the text vector would read it without the tags `leave_out(tag)` names (their
    labels, and the synonyms only they have: synonyms_of tells whose) and, when `synonyms` is False, without
    any tag synonyms. Only the text vector reads the copy: the stored document keeps every tag."""
    tags, labels = body.get("tags") or [], body.get("tag_labels") or []
    kept = [(t, lab) for t, lab in zip(tags, labels) if not leave_out(t)]
    others = {s for t, _lab in kept for s in synonyms_of(t)}
    theirs = {s for t in tags if leave_out(t) for s in synonyms_of(t)} - others
    words = [w for w in body.get("tag_synonyms") or [] if w not in theirs] if synonyms else []
    return {**body, "tags": [t for t, _lab in kept], "tag_labels": [lab for _t, lab in kept], "tag_synonyms": words}


def text_variants(synonyms_of) -> dict[str, object]:
    """Variants of the text vector's input (domain/store/vectors.py embedding_text), name -> text_of(body):
    today's; without the medium tags' labels and synonyms; with the medium tags' labels but not their synonyms;
    without any tag synonyms; without the medium tags nor any synonyms; without the medium and the style tags
    (how an image is made or framed, not what it shows)."""
    from domain.store.vectors import embedding_text

    def medium(t):
        return t in MEDIUM_TAGS

    def nothing(_t):
        return False

    def form(t):
        return medium(t) or t.startswith("style:")

    return {"today": embedding_text,
            "no-medium": lambda b: embedding_text(without_tags(b, medium, synonyms_of)),
            "med-label": lambda b: embedding_text({**without_tags(b, medium, synonyms_of),
                                                   "tag_labels": b.get("tag_labels")}),
            "no-synonym": lambda b: embedding_text(without_tags(b, nothing, synonyms_of, synonyms=False)),
            "no-med+syn": lambda b: embedding_text(without_tags(b, medium, synonyms_of, synonyms=False)),
            "no-med+sty": lambda b: embedding_text(without_tags(b, form, synonyms_of))}


def reembedded_copy(client, settings, name: str, text_of):
    """A copy of settings' index (the same documents, read back) whose text vectors are made from text_of(body):
    the settings of the copy."""
    from elasticsearch import helpers

    from domain.store.management import ensure_index, write_alias
    from domain.store.vectors import add_text_vectors, vector_model
    from domain.textembed import shared_embedder

    st = settings.with_overrides(index={"index": f"{settings.index.index}-{name}"})
    ensure_index(client, st)
    hits = list(helpers.scan(client, index=read_alias(settings.index), query={"query": {"match_all": {}}}))
    bodies = [h["_source"] for h in hits]
    add_text_vectors(bodies, shared_embedder(), vector_model(st.index.vector_mode), text_of)  # every tag stays
    helpers.bulk(client, [{"_index": write_alias(st.index), "_id": h["_id"], "_source": b}
                          for h, b in zip(hits, bodies)])
    client.indices.refresh(index=read_alias(st.index))
    return st


def compare_texts(client, settings, queries, synonyms_of, kinds: list[str], title: str) -> dict:
    """Every text variant's copy of the index, searched semantic and hybrid (the defaults) with the same queries
    in one run; printed side by side with the ratio to today's text (same run)."""
    rows: dict[str, dict] = {}
    recalls: dict[str, dict[tuple[str, str], float]] = {}
    for name, text_of in text_variants(synonyms_of).items():
        st = reembedded_copy(client, settings, name, text_of)
        for mode in ("semantic", "hybrid"):
            acc: dict[str, dict[str, list[float]]] = {}
            for kind, q, rel in queries:
                answer = run_search(client, st, SearchRequest(query=q, mode=mode, size=K, facets=False))
                m = metrics_at_k([h["asset_id"] for h in answer["hits"]], rel)
                recalls.setdefault(f"{mode[:3]} {name}", {})[(kind, q)] = m["recall"]
                for key in (kind, "all") if kind not in SUBSETS else (kind,):
                    for metric, v in m.items():
                        acc.setdefault(key, {}).setdefault(metric, []).append(v)
            rows[f"{mode[:3]} {name}"] = {k: {metric: round(statistics.mean(v), 3) for metric, v in d.items()}
                                          for k, d in acc.items()}
    print(f"\n{title}, text vector input variants (embedding_text; r = variant / today's text, same mode, same run)")
    print(f"{'variant':<17}{'kind':<14}{'recall':>8}{'prec':>8}{'nDCG':>8}   {'r recall':>9}{'r prec':>8}{'r nDCG':>8}")
    for label, r in rows.items():
        base = rows[label.split()[0] + " today"]
        for kind in kinds:
            x = _ratios(r[kind], base[kind])
            print(f"{label:<17}{kind:<14}{r[kind]['recall']:>8.3f}{r[kind]['precision']:>8.3f}{r[kind]['ndcg']:>8.3f}"
                  f"   {x[0]:>9}{x[1]:>8}{x[2]:>8}")
    print("recall@10 per query, where a variant changed it (today -> variant; word kinds fit/held-out/phrase...):")
    for label, per in recalls.items():
        base = recalls[label.split()[0] + " today"]
        changed = [f"{kind[:4]} {q!r} {base[(kind, q)]:.2f}->{r:.2f}" for (kind, q), r in per.items()
                   if kind not in ("word", "all") and r != base[(kind, q)]]
        if changed:
            print(f"  {label}: " + "; ".join(changed))
    return rows


def labelled_images(settings) -> tuple[list[dict], dict[str, set[str]], dict]:
    """The labelled set through the real stages: (validated records, subject term -> images, seconds)."""
    from consumers.enrich.dedupe import InMemoryDedupeIndex
    from consumers.enrich.stage import EnrichStage
    from consumers.preprocess.stage import PreprocessStage
    from consumers.validate.stage import ValidateStage
    from streams.stage import RecordContext

    truth = json.loads((DATA / "truth.json").read_text())["images"]
    st = settings.with_overrides(enrich={"provider": "local", "dedupe": "memory"},
                                 preprocess={"file_roots": [str(DATA)]})
    pre_stage, enr_stage, val_stage = PreprocessStage(st), EnrichStage(st), ValidateStage(st)
    enr_stage.dedupe = InMemoryDedupeIndex(st.enrich.dedupe_max_distance, st.enrich.dedupe_lru_size,
                                           st.enrich.dedupe_confirm_distance)
    loop = asyncio.new_event_loop()
    records = []
    t0 = time.perf_counter()
    for i, name in enumerate(sorted(truth)):
        path = DATA / "images" / name
        event = {"asset_id": name, "event_id": f"e-{name}", "event_type": "created", "source_uri": path.as_uri(),
                 "content_type": None, "uploader": "bench", "uploader_notes": None, "declared_license": "CC0 1.0",
                 "product_context": None, "tenant": "default", "event_time": 1763780000000 + i, "version": 1,
                 "human_fields": None, "attributes": {}}
        pre = pre_stage.preprocess_bytes(event, path.read_bytes())
        ctx = RecordContext("preprocessed", 0, i, name, {}, None, attempt=st.runner.retry_max_attempts)
        records.append(val_stage.validate(loop.run_until_complete(enr_stage.aprocess(pre, ctx)).value))
    seconds = time.perf_counter() - t0
    loop.run_until_complete(enr_stage.aclose())
    loop.close()
    terms: dict[str, set[str]] = {}
    for name, t in truth.items():
        for term in t["subject"]:
            terms.setdefault(term.lower(), set()).add(name)
    return records, terms, {"pipeline_s_per_image": round(seconds / len(truth), 2)}


def labelled_queries(terms: dict[str, set[str]]) -> list[tuple[str, str, set[str]]]:
    """(kind, query, relevant images) of the labelled set: every subject word and phrase, then each word again
    as "held-out word" (the quality bench's split, by duplicate family: its relevant images are all held out)
    or "fit word" (the others)."""
    from bench.quality import split_of

    truth = json.loads((DATA / "truth.json").read_text())["images"]
    queries = [("phrase" if " " in term else "word", term, rel) for term, rel in sorted(terms.items())]
    queries += two_word_queries(truth)
    held = {term for kind, term, rel in queries if kind == "word"
            and all(split_of(name, truth) == "held-out" for name in rel)}
    return queries + [("held-out word" if term in held else "fit word", term, rel)
                      for kind, term, rel in queries if kind == "word"]


def two_word_queries(truth: dict) -> list[tuple[str, str, set[str]]]:
    """("two-word", "<colour> <subject word>", relevant images): for every image, its first one-word subject term
    with each colour its truth accepts (tags and ok); relevant = every image whose truth has both that subject
    term and that colour. "orange logo", "white horse", ...: each word alone matches other images."""
    def colours(t):
        return {x.split(":", 1)[1] for x in t["tags"] + t["ok"] if x.startswith("color:")}

    out: dict[str, set[str]] = {}
    for t in truth.values():
        words = [w for w in t["subject"] if " " not in w]
        for c in sorted(colours(t)) if words else ():
            out.setdefault(f"{c} {words[0]}", {n for n, u in truth.items()
                                               if words[0] in u["subject"] and c in colours(u)})
    return [("two-word", q, rel) for q, rel in out.items()]


def synthetic_docs(index: str, args: argparse.Namespace, n: int):
    """n bulk actions: a title from the library's words, a random unit text vector, and (--image-vectors) a
    random unit image vector written by this image model; indexed_at spread over the last hour."""
    import numpy as np

    from domain.store.vectors import image_vector_model, pack, vector_model

    rng = np.random.default_rng(7)
    model = vector_model(args.vector_mode)
    image_model = image_vector_model(args.vector_mode)
    words = [aid.replace("-", " ") for aid, *_ in LIBRARY]
    hour_ago = time.time() - 3600  # indexed over the last hour (the sink's indexed_at), not all at once
    for i in range(n):
        v = rng.standard_normal(384).astype(np.float32)
        v /= np.linalg.norm(v)
        vec = {model["field"]: pack(v)} if model["field"] != "text_vector" else \
            {model["field"]: [round(float(x), 6) for x in v]}
        if args.image_vectors:  # the visual leg's (and image similarity's) cost: every document has one
            w = rng.standard_normal(1280).astype(np.float32)
            w /= np.linalg.norm(w)
            vec.update({image_model["field"]: pack(w, "<f2")} if image_model["field"] != "image_vector" else
                       {image_model["field"]: [round(float(x), 6) for x in w]})
            vec["image_vector_model"] = image_model
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(hour_ago + 3000 * i / n))
        yield {"_index": index, "_id": f"s{i}", "_source": {
            "asset_id": f"s{i}", "title": f"{words[i % len(words)]} photo {i}", "tags": [],
            "status": "auto_applied", "family_id": f"s{i}", "indexed_at": stamp, **vec, "text_vector_model": model}}


def visual_first_queries(client, settings, env: dict | None) -> dict[str, float]:
    """The first hybrid query with the visual leg (it loads the class scores, or the saved file), a one-shot hybrid
    CLI process with the files saved (when `env` runs the CLI against this store), and how many library queries
    get the leg."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    run_search(client, settings, SearchRequest(query="cat", mode="hybrid", size=10, facets=False))
    out["first_visual_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if env is not None:
        timings = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "app.cli", "search", "cat", "--json"], env=env, check=True,
                           capture_output=True, cwd=ROOT)
            timings.append(time.perf_counter() - t0)
        out["cli_hybrid_visual_from_file_s"] = round(statistics.median(timings), 2)
    out["visual_leg_queries"] = sum(bool(run_search(client, settings, SearchRequest(
        query=q, mode="hybrid", size=10, facets=False))["visual_leg"]["used"]) for _, q, _ in QUERIES)
    return out


def floor_latency(client, settings, queries: int) -> dict[str, float]:
    """The relevance floor's cost: each query with and without it (index.semantic_min_similarity None), one
    after the other (alternating which goes first), so a busy machine weighs on both alike."""
    nofloor = settings.with_overrides(index={"semantic_min_similarity": None})
    out: dict[str, float] = {}
    for mode in ("semantic", "hybrid"):
        lats: dict[str, list[float]] = {"floor_": [], "nofloor_": []}
        for i in range(queries):
            q = QUERIES[i % len(QUERIES)][1]
            pair = (("floor_", settings), ("nofloor_", nofloor))
            for prefix, st in pair if i % 2 else pair[::-1]:
                t = time.perf_counter()
                run_search(client, st, SearchRequest(query=q, mode=mode, size=10, facets=False))
                lats[prefix].append((time.perf_counter() - t) * 1000)
        for prefix, lat in lats.items():
            lat.sort()
            out[f"{prefix}{mode}_p50_ms"] = round(statistics.median(lat), 1)
            out[f"{prefix}{mode}_p99_ms"] = round(lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], 1)
        out[f"floor_{mode}_p50_ratio"] = round(out[f"floor_{mode}_p50_ms"] / out[f"nofloor_{mode}_p50_ms"], 2)
    return out


def bulk_loaded(settings: Settings, actions) -> tuple[object, float]:
    """A client of a new index (its aliases) filled with `actions(write_alias)` by helpers.bulk and refreshed, and
    the seconds that took."""
    from elasticsearch import helpers

    from domain.store.client import make_client
    from domain.store.management import ensure_index, write_alias

    client = make_client(settings)
    ensure_index(client, settings)
    t0 = time.perf_counter()
    helpers.bulk(client, actions(write_alias(settings)), chunk_size=1000)
    client.indices.refresh(index=read_alias(settings))
    return client, time.perf_counter() - t0


def latency_at(url: str, args: argparse.Namespace, n: int, queries: int) -> dict[str, float]:
    """p50/p99 ms of keyword, semantic and hybrid queries over n synthetic documents (the vector leg's cost
    grows with n in vector_mode off: exact cosine over every filtered document, up to index.vector_scan_limit,
    set to n here so every document is ranked)."""
    settings = Settings().with_overrides(index={
        "url": url, "server_mode": args.server_mode, "index": f"bench-lat-{uuid.uuid4().hex[:6]}",
        "number_of_replicas": 0, "vector_mode": args.vector_mode, "vector_scan_limit": max(n, 20000),
        "request_timeout_s": 120, "vector_cache": not args.no_cache, "image_cache_max_docs": max(n, 100_000),
        "image_scan_limit": max(n, 5000), "vector_cache_dir": os.path.join(args.cache_dir, "vectors")})
    client, load_s = bulk_loaded(settings, lambda index: synthetic_docs(index, args, n))
    out: dict[str, float] = {"load_s": round(load_s, 1), "queries": queries}
    from domain.store import vector_cache

    t0 = time.perf_counter()
    run_search(client, settings, SearchRequest(query="warm", mode="semantic", size=10, facets=False))
    out["first_semantic_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)  # loads the vector cache
    env: dict | None = None  # the environment a one-shot CLI process runs with, when the cache is saved
    if settings.index.vector_cache and settings.index.vector_cache_dir:
        # a fresh process, as `assetstream search` is: no cache in memory; baseline = the full load (no saved
        # file), then the same first query with the file the load saved (memory-mapped + what was indexed since)
        for label, saved in (("first_query_full_load_ms", False), ("first_query_from_file_ms", True)):
            timings = []
            for _ in range(3):
                vector_cache._entries.clear()
                if not saved:
                    for path in vector_cache._paths(settings.index, read_alias(settings), "text") or ():
                        if os.path.exists(path):
                            os.remove(path)
                t0 = time.perf_counter()
                run_search(client, settings, SearchRequest(query=QUERIES[1][1], mode="semantic", size=10,
                                                           facets=False))
                timings.append((time.perf_counter() - t0) * 1000)
            out[label] = round(statistics.median(timings), 1)
        out["first_query_speedup"] = round(out["first_query_full_load_ms"] / out["first_query_from_file_ms"], 1)
        # the user's view: a whole one-shot `assetstream search --mode semantic` process (start, imports, MiniLM,
        # the cache, the query), wall time, without and with the saved file
        env = {**os.environ, "ASSETSTREAM_INDEX__URL": url, "ASSETSTREAM_INDEX__INDEX": settings.index.index,
               "ASSETSTREAM_INDEX__SERVER_MODE": args.server_mode,
               "ASSETSTREAM_INDEX__VECTOR_CACHE_DIR": settings.index.vector_cache_dir,
               "ASSETSTREAM_INDEX__REQUEST_TIMEOUT_S": "120", "ASSETSTREAM_INDEX__VECTOR_CACHE_MAX_DOCS": str(n),
               "ASSETSTREAM_INDEX__IMAGE_CACHE_MAX_DOCS": str(max(n, 100_000))}
        for label, saved in (("cli_full_load_s", False), ("cli_from_file_s", True)):
            timings = []
            for _ in range(3):
                if not saved:
                    for path in vector_cache._paths(settings.index, read_alias(settings), "text") or ():
                        if os.path.exists(path):
                            os.remove(path)
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "app.cli", "search", QUERIES[1][1], "--mode", "semantic",
                                "--json"], env=env, check=True, capture_output=True, cwd=ROOT)
                timings.append(time.perf_counter() - t0)
            out[label] = round(statistics.median(timings), 2)
    if args.image_vectors:
        out.update(visual_first_queries(client, settings, env))
    runs = [("", settings, MODES, queries)]
    if args.image_vectors:  # the same queries, the same documents, hybrid without the visual leg: its cost
        runs.append(("novis_", settings.with_overrides(index={"visual_leg": False}), ("hybrid",), queries))
    if args.scan_queries:  # the baseline, same documents, same run: every query reads every vector
        runs.append(("scan_", settings.with_overrides(index={"vector_cache": False}), ("semantic", "hybrid"),
                     args.scan_queries))
    for prefix, st, modes, count in runs:
        for mode in modes:
            lat = []
            for i in range(count):
                q = QUERIES[i % len(QUERIES)][1]
                t = time.perf_counter()
                run_search(client, st, SearchRequest(query=q, mode=mode, size=10, facets=False))
                lat.append((time.perf_counter() - t) * 1000)
            lat.sort()
            out[f"{prefix}{mode}_p50_ms"] = round(statistics.median(lat), 1)
            out[f"{prefix}{mode}_p99_ms"] = round(lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], 1)
    for mode in ("semantic", "hybrid") if args.scan_queries else ():
        out[f"{mode}_p50_speedup"] = round(out[f"scan_{mode}_p50_ms"] / out[f"{mode}_p50_ms"], 1)
    if args.image_vectors:
        for q in ("p50", "p99"):
            out[f"visual_leg_{q}_cost_ratio"] = round(out[f"hybrid_{q}_ms"] / out[f"novis_hybrid_{q}_ms"], 2)
    out.update(floor_latency(client, settings, queries))
    vector_cache._entries.clear()
    for kind in ("text", "image", "classes"):
        for path in vector_cache._paths(settings.index, read_alias(settings), kind) or ():
            if os.path.exists(path):
                os.remove(path)
    client.indices.delete(index="*" + settings.index.index + "*")
    client.close()
    print(f"{n} synthetic documents (bulk-loaded in {load_s:.0f} s), {queries} queries per mode, vector cache "
          f"{'on' if settings.index.vector_cache else 'off'}: " + ", ".join(f"{k} {v}" for k, v in out.items()
                                                                          if k.endswith(("_ms", "_s", "_speedup",
                                                                                         "_ratio", "_queries"))))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an Elasticsearch/OpenSearch URL (default: start an embedded osmem store)")
    ap.add_argument("--server-mode", default="serverless")
    ap.add_argument("--vector-mode", default="off", choices=["off", "es", "opensearch"])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--skip-images", action="store_true", help="leave out the labelled image set (slow: the "
                    "whole pipeline runs on 47 images)")
    ap.add_argument("--latency", type=int, nargs="*", default=[],
                    help="also time the modes over this many synthetic documents, e.g. --latency 10000 100000")
    ap.add_argument("--latency-queries", type=int, default=30, help="queries per mode and size")
    ap.add_argument("--scan-queries", type=int, default=0, help="also time semantic and hybrid with the cache "
                    "off (the baseline: every query reads every vector) over this many queries, same documents")
    ap.add_argument("--image-vectors", action=argparse.BooleanOptionalAction, default=True,
                    help="latency: give every synthetic document an image vector (random, unit) so hybrid pays the "
                    "visual leg, and time hybrid without it too (novis_*)")
    ap.add_argument("--no-cache", action="store_true", help="latency with index.vector_cache off (every query "
                    "reads every vector: the way before the cache)")
    ap.add_argument("--cache-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "assetstream-bench"),
                    help="where the latency part saves the vector cache (index.vector_cache_dir)")
    ap.add_argument("--text-variants", action="store_true", help="also compare variants of the text vector's "
                    "input (text_variants: without the medium tags, without synonyms, ...) on copies of each index")
    ap.add_argument("--details", action="store_true", help="print every hybrid miss of the labelled set")
    ap.add_argument("--visual-thresholds", type=float, nargs="*", default=[], help="also hybrid with the visual "
                    "leg at these index.visual_leg_threshold values (rows hyb@T), e.g. 0.45 0.55")
    ap.add_argument("--floors", type=float, nargs="*", default=[], help="also semantic and hybrid with "
                    "index.semantic_min_similarity at these values (rows sem>=F, hyb>=F), e.g. 0.1 0.15 0.2")
    args = ap.parse_args()
    store = None
    url = args.url
    if url is None:
        store = OsmemStore().start()
        url = store.url
    result: dict = {}
    try:
        base = Settings().with_overrides(index={"url": url, "server_mode": args.server_mode, "number_of_replicas": 0,
                                                "vector_mode": args.vector_mode})
        if not args.skip_images:
            settings = base.with_overrides(index={"index": f"bench-images-{uuid.uuid4().hex[:6]}"})
            records, terms, timing = labelled_images(settings)
            for name, flags in (("text_only", {"embed_images": False}), ("neither", {"embed_documents": False,
                                                                                  "embed_images": False})):
                other = IndexSink(settings.with_overrides(index={"index": f"{settings.index.index}-{name}", **flags}))
                other.process_batch(as_items(records[:2]))  # warm
                t0 = time.perf_counter()
                other.process_batch(as_items(records))
                timing[f"sink_ms_per_doc_{name}"] = round((time.perf_counter() - t0) * 1000 / len(records), 1)
                other.close()
            sink = IndexSink(settings)
            sink.process_batch(as_items(records[:2]))  # warm: the image encoder loads once per process
            t0 = time.perf_counter()
            sink.process_batch(as_items(records))
            timing["sink_ms_per_doc"] = round((time.perf_counter() - t0) * 1000 / len(records), 1)
            sink.client.indices.refresh(index=read_alias(settings.index))
            queries = labelled_queries(terms)
            rows, per_query = evaluate(sink.client, settings, queries, args.visual_thresholds, args.floors)
            gap, nonsense = cosine_gap(sink.client, settings, queries), nonsense_hits(sink.client, settings,
                                                                                      args.floors)
            absent = [w for w in CLASS_WORDS if w not in terms]
            classwords = nonsense_hits(sink.client, settings, args.floors, absent)
            texts = compare_texts(sink.client, settings, queries, sink._synonyms, ["word", "fit word", "held-out word",
                                                                                   "phrase", "all"],
                                  "labelled image set") if args.text_variants else None
            literal = literal_ranks(sink.client, sink, records)  # last: it writes the trial's edit (EDITS)
            sink.close()
            print(f"pipeline {timing['pipeline_s_per_image']} s per image; index sink per document (one batch of "
                  f"{len(records)}): {timing['sink_ms_per_doc']} ms with text + image vectors, "
                  f"{timing['sink_ms_per_doc_text_only']} ms text only, {timing['sink_ms_per_doc_neither']} ms neither")
            print_rows("labelled image set (tests/data/quality)", rows, ["word", "fit word", "held-out word",
                                                                         "phrase", "two-word", "all"],
                       len(records), len(queries))
            for pq in per_query:
                if args.details and pq["mode"] == "hybrid" and pq["recall"] < 1.0 and pq["kind"] not in SUBSETS:
                    print(f"  hybrid misses {pq['query']!r:<18} R@10={pq['recall']:.2f} relevant {pq['relevant']} "
                          f"top {pq['top'][:5]}")
            print_visual_details(per_query)
            print_coverage_details(per_query)
            print_visual_details(per_query, "hyb-main", "the weak visual leg's share (index.visual_leg_weak_below)",
                                 variant="hyb-weak")
            print_cosines("labelled image set", gap)
            print_nonsense("labelled image set", nonsense)
            print_nonsense("labelled image set, class words no image shows", classwords, absent)
            print_literal_ranks(literal)
            print_literal_details(per_query)
            result["images"] = {"rows": rows, "queries": per_query, "cosines": gap, "nonsense": nonsense,
                                "class_words": classwords, "text_variants": texts, "literal_ranks": literal,
                                **timing}
        settings = base.with_overrides(index={"index": f"bench-text-{uuid.uuid4().hex[:6]}"})
        sink = IndexSink(settings)
        sink.process_batch(as_items([validated_asset(aid, 1, title=t, alt_text=a, tags=tags, ocr_text="")
                                     for aid, t, a, tags in LIBRARY]))
        sink.client.indices.refresh(index=read_alias(settings.index))
        rows, per_query = evaluate(sink.client, settings, QUERIES, args.visual_thresholds, args.floors)
        gap, nonsense = cosine_gap(sink.client, settings, QUERIES), nonsense_hits(sink.client, settings, args.floors)
        text_rows = compare_texts(sink.client, settings, QUERIES, sink._synonyms, ["word", "synonym", "concept", "all"],
                                  "text library") if args.text_variants else None
        sink.close()
        print_rows("text library (hand-labelled)", rows, ["word", "synonym", "concept", "two-word", "all"],
                   len(LIBRARY), len(QUERIES))
        print_coverage_details(per_query)
        print_literal_details(per_query)
        print_cosines("text library", gap)
        print_nonsense("text library", nonsense)
        result["text"] = {"rows": rows, "queries": per_query, "cosines": gap, "nonsense": nonsense,
                          "text_variants": text_rows}
        result["latency"] = {n: latency_at(url, args, n, args.latency_queries) for n in args.latency}
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        if store is not None:
            store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
