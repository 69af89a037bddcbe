"""Write-back throughput and the no-op share of a reprocess, through the real WritebackSink (its batches, state
index, rate limiter and targets) against real targets on loopback:

    python bench/writeback.py [--assets 200] [--wp-assets 40] [--files 40]

  - webhook: the loopback DAM API of the tests (tests/writeback_support.py), read_current on (GET + PATCH per
    asset) and off (PATCH only);
  - wordpress: a real local WordPress (tests/wordpress_support.py: MariaDB, php -S with 2 workers), media items
    updated through the REST API with an application password;
  - files: XMP + IPTC into copies with ExifTool (three exiftool runs per asset: read, write, verify).

Each target first takes the approved library (writes/s), then the very same records again (a reprocess: the no-op
share, expected 100 %, and how fast nothing is sent). The fingerprints live in a real search store (osmem-server).
No rate limit is set, so the figures are what the targets and this machine take.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from consumers.writeback.sink import WritebackSink  # noqa: E402
from streams.embedded_store import OsmemStore  # noqa: E402
from streams.metrics import WRITEBACK_ITEMS  # noqa: E402
from tests.store_support import as_items, validated_asset  # noqa: E402
from tests.wordpress_support import LocalWordPress  # noqa: E402
from tests.writeback_support import FakeDam  # noqa: E402

BATCH = 100


def settings(store_url: str, target: dict) -> Settings:
    return Settings().with_overrides(
        index={"url": store_url, "server_mode": "serverless", "number_of_replicas": 0},
        writeback={"state_index": f"bench-wb-{uuid.uuid4().hex[:8]}", "targets": [target]})


def counts(name: str) -> dict[str, float]:
    return {r: WRITEBACK_ITEMS.labels(name, r)._value.get() for r in ("written", "noop", "conflict", "rejected")}


def run(sink: WritebackSink, values: list[dict], name: str) -> tuple[float, dict[str, float]]:
    before = counts(name)
    started = time.perf_counter()
    for i in range(0, len(values), BATCH):
        for outcome in sink.process_batch(as_items(values[i:i + BATCH])):
            if isinstance(outcome, BaseException):
                raise outcome
    took = time.perf_counter() - started
    after = counts(name)
    return took, {k: after[k] - before[k] for k in after}


def scenario(label: str, store_url: str, target: dict, values: list[dict]) -> None:
    sink = WritebackSink(settings(store_url, target))
    try:
        took, first = run(sink, values, target["name"])
        again, second = run(sink, values, target["name"])
    finally:
        sink.close()
    n = len(values)
    print(f"| {label} | {n} | {first['written']:.0f} | {n / took:.1f} | {second['noop'] / n:.0%} | "
          f"{n / again:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=200)
    ap.add_argument("--wp-assets", type=int, default=40)
    ap.add_argument("--files", type=int, default=40)
    args = ap.parse_args()
    print("| target | assets | written | writes/s | no-op share on the reprocess | reprocess records/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    with OsmemStore() as store, FakeDam() as dam:
        library = [validated_asset(f"bench-{i}", status="approved", caption=f"caption {i}")
                   for i in range(args.assets)]
        fields = {"alt_text": "altText", "caption": "caption", "tags": "keywords"}
        scenario("webhook, read first (GET + PATCH)", store.url,
                 {"name": "bench-dam", "url": dam.url, "fields": fields, "hmac_secret": "s"}, library)
        scenario("webhook, PATCH only", store.url,
                 {"name": "bench-dam-blind", "url": dam.url, "fields": fields, "hmac_secret": "s",
                  "read_current": False}, library)

        tmp = Path(tempfile.mkdtemp(prefix="bench-wb-"))
        try:
            sample = ROOT / "samples" / "product_red_mug.jpg"
            images = []
            for i in range(max(args.wp_assets, args.files)):
                images.append(tmp / f"img-{i}.jpg")
                shutil.copy(sample, images[-1])
            wp = LocalWordPress(images[:args.wp_assets]).start()
            try:
                wp_values = []
                for i, media in enumerate(wp.media):
                    v = validated_asset(f"wp-{i}", status="approved", caption=f"caption {i}")
                    v["enriched"]["pre"]["asset"]["attributes"] = {"wordpress_media_id": str(media["id"])}
                    wp_values.append(v)
                scenario("wordpress (REST, php -S, 2 workers)", store.url,
                         {"name": "bench-wp", "type": "wordpress", "url": wp.url, "username": "admin",
                          "application_password": wp.app_password}, wp_values)
            finally:
                wp.stop()
            file_values = []
            for i, path in enumerate(images[:args.files]):
                v = validated_asset(f"file-{i}", status="approved", caption=f"caption {i}")
                v["enriched"]["pre"]["asset"]["source_uri"] = path.as_uri()
                file_values.append(v)
            scenario("files (ExifTool XMP + IPTC, verified)", store.url,
                     {"name": "bench-files", "type": "files", "out_dir": str(tmp / "out"),
                      "source_roots": [str(tmp)]}, file_values)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
