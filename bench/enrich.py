"""Enrich stage benchmark: throughput vs the in-flight limit, the rate limiter, and dedupe quality.

    python bench/enrich.py                  # all three, prints a table
    python bench/enrich.py --write-doc      # ... and rewrites docs/benchmarks-enrich.md
    python bench/enrich.py --reuse          # only provider calls with the old vs the new reuse-order rule

1. Throughput: the real EnrichStage + Claude adapter (anthropic SDK) against a loopback server speaking the
   Anthropic Messages wire format with a fixed latency. Target: >= 0.8 x max_in_flight / latency requests/s.
2. Rate limit: the same with requests_per_min set below that capacity. Target: within 5 % of the limit.
3. Dedupe: a generated image set where 40 % of the items are transformed copies (resize, JPEG recompress,
   slight crop) of other items, hashed with preprocess's own hashing (consumers/preprocess/hashes.py) and run
   through the stage's InMemoryDedupeIndex in a shuffled order. Targets: >= 95 % of copies skipped, <= 1 %
   false merges.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from consumers.enrich.dedupe import InMemoryDedupeIndex, Look  # noqa: E402
from consumers.enrich.stage import EnrichStage  # noqa: E402
from app.settings import Settings  # noqa: E402
from domain.records import quality_rank  # noqa: E402
from streams.stage import RecordContext  # noqa: E402

REC = ROOT / "tests" / "recordings" / "claude"


def _jpeg(img: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _record(i: int, thumb: bytes) -> dict:
    sha = hashlib.sha256(thumb + str(i).encode()).hexdigest()
    return {"asset": {"asset_id": f"b{i}", "event_id": f"e{i}", "event_type": "created", "source_uri": None,
                      "content_type": "image/jpeg", "uploader": None, "uploader_notes": None,
                      "declared_license": None, "product_context": None, "tenant": "default",
                      "event_time": 1763780000000, "version": 1, "human_fields": None, "attributes": {}},
            "image": None, "thumbnail": {"data": thumb, "media_type": "image/jpeg", "width": 64, "height": 64},
            "exif": None, "place": None, "embedded": None,
            "ocr": {"text": f"label {i}", "words": [], "mean_confidence": None, "language": "eng", "skipped": False,
                    "skip_reason": None},
            "hashes": {"sha256": sha, "phash": f"{i:016x}", "dhash": "0" * 16, "phash_bands": []},
            "signals": None, "stamp": {"stage": "preprocess", "version": "b", "worker": "b", "at": 0}}


def _settings(url: str, in_flight: int, rpm: float | None) -> Settings:
    enrich = {"provider": "claude", "anthropic_api_key": "bench-key", "anthropic_base_url": url,
              "max_in_flight": in_flight, "dedupe": "off", "max_attempts": 1, "request_timeout_s": 30.0}
    if rpm:
        enrich["rate_limits"] = {"claude": {"requests_per_min": rpm}}
    return Settings().with_overrides(enrich=enrich)


async def _drive(stage: EnrichStage, records: list[dict], in_flight: int) -> float:
    """Like the runner: up to in_flight records at a time on one loop. Returns wall seconds."""
    sem = asyncio.Semaphore(in_flight)

    async def one(v):
        async with sem:
            await stage.aprocess(v, RecordContext("preprocessed", 0, 0, v["asset"]["asset_id"], {}, None))
    await stage.aprocess(records[0], RecordContext("preprocessed", 0, 0, "warm", {}, None))  # connect, import
    t0 = time.monotonic()
    await asyncio.gather(*(one(v) for v in records[1:]))
    return time.monotonic() - t0


def bench_calls(latency: float, in_flight: int, records: int, rpm: float | None) -> dict:
    """The replay server runs in its own process (python -m consumers.enrich.replay) so it does not compete
    with the stage for this process's GIL."""
    thumb = _jpeg(Image.new("RGB", (64, 64), (180, 40, 40)))
    values = [_record(i, thumb) for i in range(records + 1)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumers.enrich.replay", "--delay", str(latency),
         f"record_tags={REC / 'tagging_ok.json'}", f"record_alt_text={REC / 'alt_text_ok.json'}",
         f"record_rights={REC / 'rights_ok.json'}"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        stage = EnrichStage(_settings(url, in_flight, rpm))

        async def go():
            try:
                return await _drive(stage, values, in_flight)
            finally:
                await stage.aclose()
        warm = 3
        wall = asyncio.run(go())
        with urllib.request.urlopen(f"{url}/_replay/stats", timeout=10) as r:
            stats = json.loads(r.read())
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    arrivals = sorted(stats["arrivals"])[warm:]
    n = len(arrivals)
    window = arrivals[-1] - arrivals[0]
    return {"requests": n, "wall_s": wall, "rps": n / wall, "arrival_rps": (n - 1) / window if window else 0.0,
            "max_in_flight_seen": stats["max_in_flight"], "cost_usd": stage.spent_usd}


# --- dedupe quality -----------------------------------------------------------------------------------------

def _natural(rng: np.random.Generator, size: int = 320) -> Image.Image:
    """A smooth random scene: low-frequency noise per channel plus a few shapes (pHash sees structure)."""
    k = rng.integers(4, 9)
    low = rng.random((k, k, 3))
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.integers(0, size - 40, 2)
        w, h = rng.integers(30, size // 2, 2)
        arr[y0:y0 + h, x0:x0 + w] = arr[y0:y0 + h, x0:x0 + w] * 0.4 + rng.random(3) * 255 * 0.6
    arr += rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _transform(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    w, h = img.size
    kind = rng.choice(["recompress", "resize", "crop", "resize+crop"])
    out = img
    if "crop" in kind:
        f = rng.uniform(0.01, 0.03)
        dx, dy = int(w * f), int(h * f)
        out = out.crop((dx, dy, w - int(w * rng.uniform(0.01, 0.03)), h - dy))
    if "resize" in kind:
        s = rng.uniform(0.4, 0.9)
        out = out.resize((max(32, int(out.width * s)), max(32, int(out.height * s))), Image.Resampling.LANCZOS)
    # every copy is re-encoded (JPEG quality 55-90)
    out = Image.open(io.BytesIO(_jpeg(out, int(rng.integers(55, 90))))).convert("RGB")
    return out, str(kind)


def _dedupe_items(total: int, copy_share: float, seed: int) -> tuple[list[tuple[int, dict, dict]], dict[str, int]]:
    """(group, hashes, size {width, height, byte_size}) of `total` generated items, `copy_share` of them
    transformed copies of another item (its group), and the mix of transforms."""
    from consumers.preprocess.hashes import hashes_record  # preprocess's own hashing

    rng = np.random.default_rng(seed)
    n_copies = int(total * copy_share)
    n_orig = total - n_copies
    items = []
    originals = []

    def item(g: int, img: Image.Image) -> tuple[int, dict, dict]:
        data = _jpeg(img)
        return g, hashes_record(data, img), {"width": img.width, "height": img.height, "byte_size": len(data)}

    for g in range(n_orig):
        img = _natural(rng)
        originals.append(img)
        items.append(item(g, img))
    kinds: dict[str, int] = {}
    for _ in range(n_copies):
        g = int(rng.integers(0, n_orig))
        img, kind = _transform(originals[g], rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        items.append(item(g, img))
    return items, kinds


def bench_dedupe(total: int, copy_share: float, max_distance: int, confirm_distance: int | None,
                 seed: int = 7) -> dict:
    items, kinds = _dedupe_items(total, copy_share, seed)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)

    index = InMemoryDedupeIndex(max_distance=max_distance, max_size=total + 1, confirm_distance=confirm_distance)
    seen_groups: set[int] = set()
    group_of: dict[str, int] = {}
    copies = skipped = false_merges = missed = 0
    t0 = time.monotonic()
    for pos in order:
        g, h, _ = items[pos]
        is_copy = g in seen_groups  # an earlier item of the same group exists: a provider call is avoidable
        m = index.lookup_sync(h["sha256"], h["phash"], h["phash_bands"], dhash_hex=h["dhash"])
        if is_copy:
            copies += 1
        if m is not None:
            if group_of[m.asset_id] == g:
                skipped += int(is_copy)
            else:
                false_merges += 1
            continue
        if is_copy:
            missed += 1
        aid = f"a{pos}"
        group_of[aid] = g
        index.remember_sync(aid, h["sha256"], h["phash"], h["phash_bands"], {"tags": [{"tag": str(g)}]}, [],
                            dhash=h["dhash"])
        seen_groups.add(g)
    elapsed = time.monotonic() - t0
    return {"items": total, "copies": copies, "skipped": skipped, "missed": missed, "false_merges": false_merges,
            "skip_rate": skipped / copies if copies else 1.0, "false_merge_rate": false_merges / total,
            "lookups_per_s": total / elapsed if elapsed else 0.0, "kinds": kinds}


def bench_reuse(total: int, copy_share: float, max_distance: int, confirm_distance: int | None,
                seed: int = 7) -> dict:
    """Provider calls and canonical members enriched with another copy's answer (issue 15 item 4), the old rule
    (reuse any match) vs the new (reuse only toward a copy that does not rank before its match,
    `domain.records.quality_rank`), on the same items in two orders: shuffled, and every group's members arriving
    worst first (web copies before their original), in the same slots."""
    items, _ = _dedupe_items(total, copy_share, seed)
    shuffled = list(range(len(items)))
    random.Random(seed).shuffle(shuffled)
    rank = {pos: quality_rank({**items[pos][2], "asset_id": f"a{pos}"}) for pos in shuffled}
    members: dict[int, list[int]] = {}
    for pos in shuffled:
        members.setdefault(items[pos][0], []).append(pos)
    canonical = {min(ps, key=rank.__getitem__) for ps in members.values()}
    worst_first = list(shuffled)
    for ps in members.values():  # the group's slots, filled worst first
        for slot, pos in zip(sorted(shuffled.index(p) for p in ps), sorted(ps, key=rank.__getitem__, reverse=True)):
            worst_first[slot] = pos

    def run(order: list[int], by_rank: bool) -> dict:
        index = InMemoryDedupeIndex(max_distance=max_distance, max_size=total + 1, confirm_distance=confirm_distance)
        calls = borrowed = 0
        for pos in order:
            _, h, size = items[pos]
            aid = f"a{pos}"
            look = Look(**size) if by_rank else None  # no size: the old rule (any match is reused)
            m = index.lookup_sync(h["sha256"], h["phash"], h["phash_bands"], dhash_hex=h["dhash"],
                                  exclude_asset_id=aid, look=look)
            if m is not None and m.reusable:
                borrowed += int(pos in canonical and m.kind != "exact")
                continue
            calls += 1
            index.remember_sync(aid, h["sha256"], h["phash"], h["phash_bands"], {"tags": [{"tag": aid}]}, [],
                                dhash=h["dhash"], look=Look(**size))
        return {"calls": calls, "borrowed": borrowed}

    return {"items": len(items), "groups": len(members),
            **{f"{name}_{rule}": run(order, rule == "new") for name, order in (("shuffled", shuffled),
                                                                             ("web_first", worst_first))
               for rule in ("old", "new")}}


def print_reuse(r: dict) -> None:
    print(f"reuse toward smaller copies only (issue 15 item 4): {r['items']} items in {r['groups']} groups, "
          "old rule vs new in the same run")
    print(f"{'order':<12} {'calls old':>10} {'calls new':>10} {'new/old':>8} {'canonical borrowed old':>23} "
          f"{'new':>5}")
    for name in ("shuffled", "web_first"):
        old, new = r[f"{name}_old"], r[f"{name}_new"]
        print(f"{name:<12} {old['calls']:>10} {new['calls']:>10} {new['calls'] / old['calls']:>8.3f} "
              f"{old['borrowed']:>23} {new['borrowed']:>5}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.1, help="fixed server latency, seconds")
    ap.add_argument("--in-flight", type=int, default=8, help="max_in_flight (the settings default is 8)")
    ap.add_argument("--scale-in-flight", type=int, default=16, help="an extra, informational run at this limit")
    ap.add_argument("--records", type=int, default=200, help="assets for the throughput run (3 requests each)")
    ap.add_argument("--rpm", type=float, default=2400.0, help="requests/min for the rate-limit run")
    ap.add_argument("--rate-records", type=int, default=100)
    ap.add_argument("--dedupe-items", type=int, default=1000)
    ap.add_argument("--copy-share", type=float, default=0.4)
    ap.add_argument("--max-distance", type=int, default=6)
    ap.add_argument("--confirm-distance", type=int, default=10)
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="only the reuse-order cost: provider calls with the old and the new reuse rule")
    a = ap.parse_args()
    if a.reuse:
        print_reuse(bench_reuse(a.dedupe_items, a.copy_share, a.max_distance, a.confirm_distance))
        return 0

    target_rps = 0.8 * a.in_flight / a.latency
    thr = bench_calls(a.latency, a.in_flight, a.records, None)
    big = bench_calls(a.latency, a.scale_in_flight, a.records, None) if a.scale_in_flight else None
    rl = bench_calls(a.latency, a.in_flight, a.rate_records, a.rpm)
    limit_rps = a.rpm / 60.0
    dd = bench_dedupe(a.dedupe_items, a.copy_share, a.max_distance, a.confirm_distance)
    dp = bench_dedupe(a.dedupe_items, a.copy_share, a.max_distance, None)  # pHash alone, for comparison

    rows = [
        ("throughput (req/s)", f">= {target_rps:.0f}", f"{thr['rps']:.1f}", thr["rps"] >= target_rps),
        ("max concurrent requests at server", f"<= {a.in_flight}", str(thr["max_in_flight_seen"]),
         thr["max_in_flight_seen"] <= a.in_flight),
        *([(f"  (in-flight {a.scale_in_flight}) throughput (req/s)", f"info, ideal {a.scale_in_flight / a.latency:.0f}",
             f"{big['rps']:.1f}", True)] if big else []),
        (f"rate limit {a.rpm:.0f}/min (req/s at server)", f"{limit_rps:.1f} +/- 5%", f"{rl['arrival_rps']:.2f}",
         abs(rl["arrival_rps"] - limit_rps) <= 0.05 * limit_rps),
        ("dedupe: copies skipped", ">= 95%", f"{dd['skip_rate']:.1%} ({dd['skipped']}/{dd['copies']})",
         dd["skip_rate"] >= 0.95),
        ("dedupe: false merges", "<= 1%", f"{dd['false_merge_rate']:.2%} ({dd['false_merges']}/{dd['items']})",
         dd["false_merge_rate"] <= 0.01),
        (f"  (pHash alone, <= {a.max_distance}): skipped", "info", f"{dp['skip_rate']:.1%} ({dp['skipped']}/{dp['copies']})",
         True),
        (f"  (pHash alone, <= {a.max_distance}): false merges", "info",
         f"{dp['false_merge_rate']:.2%} ({dp['false_merges']}/{dp['items']})", True),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'target':>14}  {'measured':>22}  ok")
    for name, target, got, ok in rows:
        print(f"{name:<{width}}  {target:>14}  {got:>22}  {'yes' if ok else 'NO'}")
    print(f"(throughput run: {thr['requests']} requests in {thr['wall_s']:.2f}s, latency {a.latency*1000:.0f} ms, "
          f"in-flight {a.in_flight}; dedupe transforms: {dd['kinds']}; {dd['lookups_per_s']:.0f} lookups/s)")

    if a.write_doc:
        lines = [
            "# Enrich benchmarks", "",
            "Generated by `python bench/enrich.py --write-doc` "
            f"on {platform.machine()} / Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at the end (a shared host), {time.strftime('%Y-%m-%d', time.gmtime())}.",
            "", "| measure | target | measured | ok |", "|---|---|---|---|",
            *[f"| {n.strip()} | {t} | {g} | {('-' if t.startswith('info') else 'yes') if ok else 'NO'} |"
              for n, t, g, ok in rows], "",
            "## Setup", "",
            f"- **Calls**: the real `EnrichStage` (tagging + alt_text + rights per asset) and the real Claude adapter "
            f"(anthropic SDK) against `consumers/enrich/replay.py`, a loopback server answering in the Anthropic "
            f"Messages wire format (recorded bodies from `tests/recordings/claude/`) after a fixed "
            f"{a.latency*1000:.0f} ms. `max_in_flight={a.in_flight}`, records driven {a.in_flight} at a time like "
            f"the runner; {thr['requests']} requests in {thr['wall_s']:.2f} s. Target = 0.8 x in-flight / latency "
            f"= {target_rps:.0f} req/s.",
            f"- **Rate limit**: same, with `rate_limits.claude.requests_per_min={a.rpm:.0f}` "
            f"({limit_rps:.1f}/s, below the {a.in_flight / a.latency:.0f}/s the in-flight limit allows); rate measured "
            f"from request arrivals at the server over {rl['requests']} requests.",
            f"- **Dedupe**: {dd['items']} generated 320x320 scenes, {int(a.copy_share*100)} % of them transformed "
            f"copies (every copy re-encoded at JPEG quality 55-90, plus resize to 40-90 % and/or crop 1-3 % per side; mix {dd['kinds']}), hashed with "
            f"`consumers/preprocess/hashes.py`, looked up in shuffled order in `InMemoryDedupeIndex` "
            f"(pHash <= {a.max_distance}, or pHash <= {a.confirm_distance} with dHash <= {a.max_distance}; the "
            f"'pHash alone' rows use pHash <= {a.max_distance} only; the Elasticsearch index applies the same exact-distance check to "
            f"candidates found by the same bands). A copy counts as skipped when it matched an earlier item of its "
            f"group; a false merge is a match to another group.", "",
            "## Caveats", "",
            "- Synthetic scenes are more varied than a real catalogue. Product shots on plain backgrounds and "
            "near-identical variants (colourways of one product) sit closer in pHash space: measure false merges on "
            "your own library before raising `dedupe_max_distance`, and lower it if variants get merged.",
            f"- The informational run at in-flight {a.scale_in_flight} shows where this worker's own CPU (anthropic "
            "SDK request building and response parsing, prompt rendering, JSON Schema validation: several ms per "
            "request) becomes the limit on this host; run more worker processes rather than raising "
            "`max_in_flight` far beyond that point.",
            "- The server answers in exactly the fixed latency; real provider latency varies per model, request and "
            "hour, so size `max_in_flight` from your provider's limits and observed latency, not from this run.",
            "",
        ]
        (ROOT / "docs" / "benchmarks-enrich.md").write_text("\n".join(lines), encoding="utf-8")
        print("wrote docs/benchmarks-enrich.md")
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
