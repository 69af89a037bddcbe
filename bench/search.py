"""Search relevance: keyword (BM25 alone, as before issue 17) vs keyword + vocabulary synonyms vs hybrid
(BM25 + synonyms + MiniLM kNN, fused with RRF), recall@5 on a small hand-labelled library.

    OMP_THREAD_LIMIT=1 python bench/search.py            # starts an embedded osmem store
    python bench/search.py --url http://127.0.0.1:9200 --json out.json

The library is 24 assets described the way the pipeline publishes them (editor-style title and alt text, canonical
tags from the bundled vocabulary), written by the real IndexSink (which embeds each document with MiniLM); the
queries mix plain words, vocabulary synonyms and conceptual phrases, each with the assets a person would expect
(hand-labelled below). Text only: it measures the search, not the enrichment (bench/quality.py does that).
Also reported: index-time embedding cost per document and hybrid query latency (this library size only).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings  # noqa: E402
from consumers.index.sink import IndexSink  # noqa: E402
from domain.store.management import read_alias  # noqa: E402
from domain.store.search import _SORT, build_query, hybrid_search, search  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402

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
]

K = 5


def keyword_no_synonyms(client, settings, q: str, size: int) -> list[dict]:
    hits = client.search(index=read_alias(settings.index), query=build_query(q), size=size, sort=_SORT,
                         track_scores=True, source_includes=["asset_id"])["hits"]["hits"]
    return [{"asset_id": h["_id"]} for h in hits]


def latency_at(url: str, args: argparse.Namespace, n: int, queries: int = 30) -> dict[str, float]:
    """p50/p99 ms of keyword and hybrid queries over n synthetic documents (the kNN leg's cost grows with n
    in vector_mode off: exact cosine over every filtered document, up to index.vector_scan_limit)."""
    import numpy as np
    from elasticsearch import helpers

    from domain.store.management import ensure_index, write_alias

    settings = Settings().with_overrides(index={
        "url": url, "server_mode": args.server_mode, "index": f"bench-lat-{uuid.uuid4().hex[:6]}",
        "number_of_replicas": 0, "vector_mode": args.vector_mode, "vector_scan_limit": max(n, 20000)})
    from domain.store.client import make_client

    client = make_client(settings)
    ensure_index(client, settings)
    rng = np.random.default_rng(7)
    from domain.store.vectors import pack, vector_model

    model = vector_model(args.vector_mode)

    def vec_fields(v):
        packed = model["field"] != "text_vector"
        return {model["field"]: pack(v) if packed else [round(float(x), 6) for x in v], "text_vector_model": model}

    words = [aid.replace("-", " ") for aid, *_ in LIBRARY]

    def docs():
        for i in range(n):
            v = rng.standard_normal(384).astype(np.float32)
            v /= np.linalg.norm(v)
            yield {"_index": write_alias(settings), "_id": f"s{i}", "_source": {
                "asset_id": f"s{i}", "title": f"{words[i % len(words)]} photo {i}", "tags": [],
                "status": "auto_applied", **vec_fields(v)}}

    helpers.bulk(client, docs(), chunk_size=1000)
    client.indices.refresh(index=read_alias(settings))
    out: dict[str, float] = {}
    for name, run in (("keyword", search), ("hybrid", hybrid_search)):
        lat = []
        for i in range(queries):
            q = QUERIES[i % len(QUERIES)][1]
            t = time.perf_counter()
            run(client, settings, q, size=10)
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        out[f"{name}_p50_ms"] = round(statistics.median(lat), 1)
        out[f"{name}_p99_ms"] = round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)
    client.indices.delete(index="*" + settings.index.index + "*")
    client.close()
    print(f"{n} synthetic documents: " + ", ".join(f"{k} {v}" for k, v in out.items()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an Elasticsearch/OpenSearch URL (default: start an embedded osmem store)")
    ap.add_argument("--server-mode", default="serverless")
    ap.add_argument("--vector-mode", default="off", choices=["off", "es", "opensearch"])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--latency", type=int, nargs="*", default=[],
                    help="also time keyword and hybrid queries over this many synthetic documents (random unit "
                         "vectors, bulk-loaded directly), e.g. --latency 10000 20000")
    args = ap.parse_args()
    store = None
    url = args.url
    if url is None:
        store = OsmemStore().start()
        url = store.url
    try:
        settings = Settings().with_overrides(index={
            "url": url, "server_mode": args.server_mode, "index": f"bench-search-{uuid.uuid4().hex[:6]}",
            "number_of_replicas": 0, "vector_mode": args.vector_mode})
        sink = IndexSink(settings)
        items = as_items([validated_asset(aid, 1, title=t, alt_text=a, tags=tags, ocr_text="")
                          for aid, t, a, tags in LIBRARY])
        sink.process_batch(items[:1])  # warm: the model loads once per process
        t0 = time.perf_counter()
        sink.process_batch(items)
        index_ms = (time.perf_counter() - t0) * 1000 / len(items)
        sink.client.indices.refresh(index=read_alias(settings.index))
        plain = IndexSink(settings.with_overrides(index={"index": f"{settings.index.index}-novec",
                                                         "embed_documents": False}))
        plain.process_batch(items[:1])
        t0 = time.perf_counter()
        plain.process_batch(items)
        plain_ms = (time.perf_counter() - t0) * 1000 / len(items)
        plain.close()
        client = sink.client
        modes = {
            "keyword (BM25)": lambda q: keyword_no_synonyms(client, settings, q, K),
            "keyword + synonyms": lambda q: search(client, settings, q, size=K),
            "hybrid (RRF)": lambda q: hybrid_search(client, settings, q, size=K),
        }
        rows: dict[str, dict] = {}
        per_query: list[dict] = []
        for name, run in modes.items():
            recalls: dict[str, list[float]] = {}
            lat: list[float] = []
            for kind, q, rel in QUERIES:
                t = time.perf_counter()
                got = [h["asset_id"] for h in run(q)][:K]
                lat.append((time.perf_counter() - t) * 1000)
                r = len(rel & set(got)) / len(rel)
                recalls.setdefault(kind, []).append(r)
                recalls.setdefault("all", []).append(r)
                per_query.append({"mode": name, "kind": kind, "query": q, "recall@5": round(r, 2), "top5": got})
            rows[name] = {k: round(statistics.mean(v), 3) for k, v in recalls.items()}
            rows[name]["p50_ms"] = round(statistics.median(lat), 1)
        sink.close()
        print(f"{len(LIBRARY)} documents, {len(QUERIES)} queries; sink wall time per document (one batch): "
              f"{index_ms:.1f} ms with the text vector, {plain_ms:.1f} ms without (index.embed_documents=false)")
        kinds = ["word", "synonym", "concept", "all"]
        print(f"{'mode':<22}" + "".join(f"{'R@5 ' + k:>14}" for k in kinds) + f"{'p50 ms':>9}")
        for name, row in rows.items():
            print(f"{name:<22}" + "".join(f"{row[k]:>14.2f}" for k in kinds) + f"{row['p50_ms']:>9.1f}")
        for pq in per_query:
            if pq["mode"] == "hybrid (RRF)":
                print(f"  hybrid  {pq['query']!r:<30} R@5={pq['recall@5']:.2f}  {pq['top5']}")
        latency = {n: latency_at(url, args, n) for n in args.latency}
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "queries": per_query, "latency": latency,
                                                   "index_ms_per_doc": index_ms,
                                                   "index_ms_per_doc_without_vector": plain_ms}, indent=1))
    finally:
        if store is not None:
            store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
