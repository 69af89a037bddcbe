"""Model cost of a realistic library through the real enrich stage: the result cache vs none, side by side.

    python bench/cost.py [--assets 50] [--copies 0.4] [--updates 0.1]

The real EnrichStage and Claude adapter (anthropic SDK) against a loopback server speaking the Anthropic Messages
wire format (recorded responses with their real usage), the result cache in a real search store (osmem-server).
Each scenario runs the same events twice, once with `enrich.result_cache=store` and once with it `off` (every
event pays for every task: the naive count), and prints model requests and dollars for both:

  1. backfill: the library, `--copies` of it again as byte-identical copies under other ids
  2. the same library reprocessed unchanged
  3. metadata-only updates (`--updates` of the assets; a field no prompt shows changes)
  4. one prompt changed (alt_text v2): every asset reprocessed
  5. one model changed (tagging on another model): every asset reprocessed

Targets (issue 18): unchanged library 0 requests; one prompt changed exactly assets x 1; metadata-only updates 0.
Dedupe is off in both runs so the cache alone is measured.

Then the same backfill (scenario 1, result cache on, each mode with its own fresh cache) per provider: synchronous
calls vs the batch API (`enrich.batch=backfill`, events marked `ingest=backfill`; Claude Message Batches and Gemini
batch mode, the server answering in each API's wire format), printing requests, batches and dollars side by side
(Gemini with context caching off: no cache recording is replayed).
Target (issue 18): batch <= 55 % of the synchronous cost.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import io
import random
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from app.settings import Settings  # noqa: E402
from consumers.enrich.replay import (AnthropicBatches, GeminiBatches, ReplayServer, anthropic_route,  # noqa: E402
                                     gemini_route, load_recording)
from consumers.enrich.stage import EnrichStage  # noqa: E402
from domain import PROMPTS_DIR  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from streams.stage import RecordContext  # noqa: E402

REC = ROOT / "tests" / "recordings" / "claude"
TASKS = ("tagging", "alt_text", "rights")


def _image(i: int) -> bytes:
    rnd = random.Random(i)
    img = Image.new("RGB", (256, 192), tuple(rnd.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rnd.randrange(200), rnd.randrange(150)
        d.rectangle((x, y, x + rnd.randrange(20, 60), y + rnd.randrange(20, 40)),
                    fill=tuple(rnd.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _record(asset_id: str, i: int, thumb: bytes, version: int = 1, event_type: str = "created") -> dict:
    return {"asset": {"asset_id": asset_id, "event_id": uuid.uuid4().hex, "event_type": event_type,
                      "source_uri": f"s3://dam/{asset_id}.jpg", "content_type": "image/jpeg", "uploader": "ingest",
                      "uploader_notes": None, "declared_license": "CC BY 4.0",
                      "product_context": {"sku": f"SKU-{i}", "category": "mugs", "name": f"Mug {i}", "brand": "Acme"},
                      "tenant": "default", "event_time": 1763780000000 + version, "version": version,
                      "human_fields": None, "attributes": {}},
            "image": {"width": 256, "height": 192, "format": "JPEG", "mode": "RGB", "byte_size": len(thumb),
                      "content_sha256": f"{i:064x}", "orientation": None, "has_alpha": False},
            "thumbnail": {"data": thumb, "media_type": "image/jpeg", "width": 256, "height": 192},
            "exif": None, "place": None, "embedded": None,
            "ocr": {"text": f"MUG {i}", "words": [], "mean_confidence": 90.0, "language": "eng", "skipped": False,
                    "skip_reason": None},
            "hashes": {"sha256": f"{i:064x}", "phash": f"{i:016x}", "dhash": "0" * 16, "phash_bands": []},
            "signals": None, "stamp": {"stage": "preprocess", "version": "b", "worker": "b", "at": 0}}


def _reprocess(v: dict, **asset) -> dict:
    out = copy.deepcopy(v)
    out["asset"].update({"event_id": uuid.uuid4().hex, "event_type": "reprocess",
                         "version": out["asset"]["version"] + 1, **asset})
    return out


async def _run(settings: Settings, records: list[dict], concurrency: int = 1) -> float:
    """The records through one stage, `concurrency` at once (the runner's io executor); the dollars spent."""
    stage = EnrichStage(settings)
    slots = asyncio.Semaphore(concurrency)

    async def one(v: dict) -> float:
        async with slots:
            out = await stage.aprocess(v, RecordContext("preprocessed", 0, 0, v["asset"]["asset_id"], {}, None))
            return out.value["cost_usd"]
    try:
        return sum(await asyncio.gather(*(one(v) for v in records)))
    finally:
        await stage.aclose()


BATCH_REPLAY = {
    # provider: (route, replay of its batch API, per-task recordings, batch recordings, request path suffixes)
    "claude": ("anthropic", AnthropicBatches, {"record_tags": "tagging_ok.json", "record_alt_text": "alt_text_ok.json",
                                               "record_rights": "rights_ok.json"},
               {"batch_create": ["batch_create.json"], "batch_retrieve": ["batch_in_progress.json", "batch_ended.json"],
                "batch_results": ["batch_results.json"]}, ("/v1/messages", "/v1/messages/batches")),
    "gemini": ("gemini", GeminiBatches, {f"{t} output": f"{t}_ok.json" for t in TASKS},
               {"batch_create": ["batch_create.json"], "batch_retrieve": ["batch_running.json", "batch_succeeded.json"]},
               (":generateContent", ":batchGenerateContent")),
}


def _batch_vs_sync(store_url: str, library: list[dict], prompts: Path,
                   provider: str) -> list[tuple[str, int, int, float]]:
    """The same backfill synchronously and through the provider's batch API: (mode, model requests, batches, USD)."""
    route, replay, tasks, batch_recs, (sync_path, batch_path) = BATCH_REPLAY[provider]
    backfill = [{**v, "asset": {**v["asset"], "attributes": {"ingest": "backfill"}}} for v in library]
    rows = []
    for mode in ("synchronous", "batch API"):
        with ReplayServer(route=anthropic_route if route == "anthropic" else gemini_route) as srv:
            for key, name in tasks.items():
                srv.script(key, load_recording(ROOT / "tests" / "recordings" / provider / name))
            for key, names in batch_recs.items():
                srv.script(key, *[load_recording(ROOT / "tests" / "recordings" / provider / n) for n in names])
            batches = replay(srv)
            batch = {"batch": "backfill", "batch_max_requests": 300, "batch_max_wait_s": 0.5,
                     "batch_poll_interval_s": 0.05} if mode != "synchronous" else {}
            s = Settings().with_overrides(
                index={"url": store_url, "server_mode": "serverless", "number_of_replicas": 0,
                       "index": f"bench-cost-{uuid.uuid4().hex[:6]}"},
                enrich={"provider": provider, f"{'anthropic' if provider == 'claude' else 'gemini'}_api_key": "bench-key",
                        f"{'anthropic' if provider == 'claude' else 'gemini'}_base_url": srv.url,
                        "prompt_caching": provider == "claude", "dedupe": "off", "result_cache": "store",
                        "max_attempts": 1, "request_timeout_s": 30.0, "prompts_dir": str(prompts),
                        "prompt_versions": {"alt_text": "v1"}, **batch})
            usd = asyncio.run(_run(s, backfill, concurrency=len(backfill) if batch else 1))
            requests = batches.entries + sum(1 for r in srv.requests if r.path.endswith(sync_path))
            n_batches = sum(1 for r in srv.requests if r.path.endswith(batch_path))
            rows.append((f"{provider} {mode}", requests, n_batches, usd))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=50)
    ap.add_argument("--copies", type=float, default=0.4, help="byte-identical copies, as a share of the library")
    ap.add_argument("--updates", type=float, default=0.1, help="metadata-only updates, as a share of the library")
    args = ap.parse_args()

    prompts = Path(tempfile.mkdtemp(prefix="assetstream-prompts-"))
    shutil.copytree(PROMPTS_DIR, prompts, dirs_exist_ok=True)
    v1 = (prompts / "alt_text" / "v1.md").read_text()
    (prompts / "alt_text" / "v2.md").write_text(
        v1.replace("version: v1", "version: v2").replace("<!-- system -->\n", "<!-- system -->\nUse plain words.\n"))
    shutil.copy(prompts / "alt_text" / "v1.schema.json", prompts / "alt_text" / "v2.schema.json")

    originals = [_record(f"a{i}", i, _image(i)) for i in range(args.assets)]
    n_copies = int(round(args.assets * args.copies))
    copies = [{**copy.deepcopy(originals[i % args.assets]), "asset": {
        **originals[i % args.assets]["asset"], "asset_id": f"copy{i}", "event_id": uuid.uuid4().hex}}
        for i in range(n_copies)]
    library = originals + copies
    updates = [_reprocess(v, event_type="updated", uploader="dam-sync") for v in
               originals[:int(round(args.assets * args.updates))]]
    v1 = {"prompt_versions": {"alt_text": "v1"}}  # v2 is in the prompts folder from the start: pin v1 until it ships
    scenarios = [
        ("1. backfill (library + copies)", library, v1),
        ("2. reprocess, nothing changed", [_reprocess(v) for v in library], v1),
        ("3. metadata-only updates", updates, v1),
        ("4. one prompt changed (alt_text v2)", [_reprocess(v) for v in library],
         {"prompt_versions": {"alt_text": "v2"}}),
        ("5. one model changed (tagging)", [_reprocess(v) for v in library],
         {"prompt_versions": {"alt_text": "v2"}, "models": {"tagging": "claude:claude-sonnet-4-6"}}),
    ]
    with OsmemStore() as store, ReplayServer() as srv:
        for tool, name in (("record_tags", "tagging_ok.json"), ("record_alt_text", "alt_text_ok.json"),
                           ("record_rights", "rights_ok.json")):
            srv.script(tool, load_recording(REC / name))
        index = f"bench-cost-{uuid.uuid4().hex[:6]}"
        rows = []
        for title, events, enrich in scenarios:
            row = [title, len(events)]
            for mode in ("store", "off"):
                s = Settings().with_overrides(
                    index={"url": store.url, "server_mode": "serverless", "number_of_replicas": 0, "index": index},
                    enrich={"provider": "claude", "anthropic_api_key": "bench-key", "anthropic_base_url": srv.url,
                            "dedupe": "off", "result_cache": mode, "max_attempts": 1, "request_timeout_s": 30.0,
                            "prompts_dir": str(prompts), **enrich})
                before = srv.count()
                usd = asyncio.run(_run(s, events))
                row += [srv.count() - before, usd]
            rows.append(row)
        batch_rows = {p: _batch_vs_sync(store.url, library, prompts, p) for p in BATCH_REPLAY}
    shutil.rmtree(prompts, ignore_errors=True)

    print(f"{args.assets} assets, {n_copies} byte-identical copies, {len(updates)} metadata-only updates; "
          f"Claude adapter against recorded responses; dedupe off")
    print(f"{'scenario':40} {'events':>6} | {'cache: requests':>15} {'USD':>9} | {'naive: requests':>15} {'USD':>9} |"
          f" {'ratio':>6}")
    for title, n, req, usd, naive_req, naive_usd in rows:
        ratio = f"{req / naive_req:.2f}" if naive_req else "-"
        print(f"{title:40} {n:6d} | {req:15d} {usd:9.4f} | {naive_req:15d} {naive_usd:9.4f} | {ratio:>6}")
    total = [sum(r[i] for r in rows) for i in (2, 3, 4, 5)]
    print(f"{'total':40} {sum(r[1] for r in rows):6d} | {total[0]:15d} {total[1]:9.4f} | {total[2]:15d} "
          f"{total[3]:9.4f} | {total[0] / total[2]:6.2f}")
    print(f"\nbackfill of the same {len(library)} events (result cache on), synchronous vs the batch API")
    print(f"{'mode':20} {'model requests':>14} {'batches':>7} {'USD':>9} | {'ratio':>6}")
    for rows_of_provider in batch_rows.values():
        base = rows_of_provider[0][3]
        for mode, req, n_batches, usd in rows_of_provider:
            print(f"{mode:20} {req:14d} {n_batches:7d} {usd:9.4f} | {usd / base:6.2f}")


if __name__ == "__main__":
    main()
