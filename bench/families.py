"""Index sink throughput with duplicate-family propagation on vs off, on the same records in one run.

    python bench/families.py                   # starts its own osmem-server
    python bench/families.py --docs 6000 --batch 500 --rounds 3

Records: families of `--family` near-duplicates (an approved original, auto-applied copies of lower quality
linking to it), shuffled with a fixed seed so members of one family arrive in different batches (re-pointing and
propagation to stored members both happen). Each round writes the same batches through two IndexSinks into fresh
indices, interleaved batch by batch (alternating which goes first): `index.family_propagation` off (the baseline:
families are still assigned) and on. Text and image vectors are off in both (their cost is the same either way
and would hide the difference). After each round the bench checks that every copy got its original's alt text.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings  # noqa: E402
from consumers.index.sink import IndexSink  # noqa: E402
from domain.store.management import read_alias  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402


def records(n: int, family: int) -> list[dict]:
    out = []
    for i in range(n):
        fam, member = divmod(i, family)
        aid = f"fam{fam:05d}-{member}"
        v = validated_asset(aid, 1, title=f"Harbour photo {fam}", alt_text=f"boats in harbour {fam}, copy {member}",
                            tags=[("subject", "water")] + ([("subject", "boat")] if member == 0 else []),
                            status="approved" if member == 0 else "auto_applied")
        v["enriched"]["pre"]["image"].update(width=4000 // (member + 1), height=3000 // (member + 1),
                                             byte_size=5_000_000 // (member + 1))
        v["enriched"]["duplicate_of"] = f"fam{fam:05d}-0" if member else None
        out.append(v)
    random.Random(17).shuffle(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="an existing store (default: start osmem-server)")
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--family", type=int, default=3, help="members per family")
    ap.add_argument("--batch", type=int, default=250, help="records per process_batch call")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(OsmemStore()).url
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    items = as_items(records(args.docs, args.family))
    off_rates, on_rates = [], []
    for rnd in range(args.rounds):
        base = f"benchfam-{uuid.uuid4().hex[:6]}"
        sinks = {}
        for mode, on in (("off", False), ("on", True)):
            sinks[mode] = IndexSink(Settings().with_overrides(index={
                "url": url, "server_mode": "serverless", "index": f"{base}-{mode}", "number_of_replicas": 0,
                "embed_documents": False, "embed_images": False, "family_propagation": on}))
        took = {"off": 0.0, "on": 0.0}
        for k, start in enumerate(range(0, len(items), args.batch)):
            batch = items[start:start + args.batch]
            for mode in (("off", "on") if k % 2 == 0 else ("on", "off")):
                t0 = time.perf_counter()
                results = sinks[mode].process_batch(batch)
                took[mode] += time.perf_counter() - t0
                assert all(r is None for r in results), [r for r in results if r is not None][:3]
                sinks[mode].client.indices.refresh(index=read_alias(sinks[mode].cfg))  # both: same cost
        on = sinks["on"]
        copies = on.client.search(index=read_alias(on.cfg), size=10_000, query={"term": {"status": "auto_applied"}},
                                  source_includes=["asset_id", "alt_text", "field_sources"])["hits"]["hits"]
        wrong = [h["_id"] for h in copies
                 if not (h["_source"].get("alt_text") or "").endswith(", copy 0")
                 or h["_source"]["field_sources"].get("alt_text") != "propagated"]
        assert copies and not wrong, wrong[:5]
        off_rates.append(args.docs / took["off"])
        on_rates.append(args.docs / took["on"])
        print(f"round {rnd + 1}: propagation off {off_rates[-1]:6.0f} docs/s   on {on_rates[-1]:6.0f} docs/s   "
              f"ratio on/off {on_rates[-1] / off_rates[-1]:.2f}   ({len(copies)} copies given the original's "
              f"alt text)", flush=True)
        on.client.indices.delete(index=f"{base}-*")
        for sink in sinks.values():
            sink.close()
    ratio = statistics.median(a / b for a, b in zip(on_rates, off_rates))
    print(f"median over {args.rounds} rounds, {args.docs} docs in families of {args.family}, batch {args.batch}: "
          f"off {statistics.median(off_rates):.0f} docs/s, on {statistics.median(on_rates):.0f} docs/s, "
          f"median per-round ratio on/off {ratio:.2f}")


if __name__ == "__main__":
    main()
