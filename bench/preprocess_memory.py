#!/usr/bin/env python3
"""Preprocess memory benchmark: peak and steady RSS of the real preprocess stage at runner.concurrency threads,
with and without a glibc arena cap, every variant in its own process, side by side in one run.

    python bench/preprocess_memory.py [--images 200] [--variants c16,c16-arena2,c4] [--megapixels 12] [--rgba]

A variant is `c<threads>` with an optional `-arena<N>` (MALLOC_ARENA_MAX=N for that process) and an optional
`@<git ref>`: that variant runs the stage's code as of the ref (`git archive` into a temporary directory), so a
change is measured before and after side by side, e.g. `--variants c16-arena2@HEAD,c16-arena2` (the working tree
without a ref). The parent makes
the image set once (photo-like and text images, JPEG/PNG/WebP, 0.04-12 MP, median ~1 MP like trial 22's backfill;
with `--rgba`, transparent PNGs of --megapixels each, 79 MP by default, like trial 24's design exports and scans);
each variant then runs PreprocessStage.process on every image through file:// URIs (fetch, decode, thumbnail,
EXIF, OCR, hashes, signals: the code a worker runs), from a pool of that many threads, while a sampler thread
reads /proc/self/status every 50 ms. Reported per variant: peak RSS (VmHWM), steady RSS (mean over the second half
of the run), RSS after the run (what the worker keeps when idle), wall time, and each one's ratio to the first
variant. No broker: the consumer's memory is small next to the stage's and does not change with these settings.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("PREPROCESS_BENCH_SOURCE") or str(ROOT))  # a variant's @ref: that code
os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # as the worker's environment sets it


def make_images(out: Path, n: int, seed: int = 22, megapixels: float | None = None) -> dict:
    """n images in `out` (all of `megapixels`, 4:3, when given); returns a summary (formats, megapixels)."""
    from PIL import ImageDraw, ImageFont

    from bench.preprocess import photo

    rnd = random.Random(seed)
    mps, fmts = [], {}
    for i in range(n):
        if megapixels:
            w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
            w, h = w, w * 3 // 4
        elif i % 25 == 0:  # ~4 % 12 MP camera files
            w, h = 4000, 3000
        else:  # long edge lognormal around ~1200 px, 200..3000
            edge = int(min(3000, max(200, rnd.lognormvariate(7.1, 0.5))))
            w, h = (edge, int(edge * 0.75)) if rnd.random() < 0.7 else (int(edge * 0.75), edge)
        img = photo(1000 + i, (w, h))
        if i % 4 == 3:  # ~25 % text images
            d = ImageDraw.Draw(img)
            f = ImageFont.load_default(size=max(14, h // 20))
            d.rectangle([w // 20, h // 10, w - w // 20, h // 10 + h // 3], fill=(250, 248, 240))
            for k in range(3):
                d.text((w // 15, h // 10 + k * (h // 12)), f"Clearance sale line {k} item {i}", font=f, fill=(10, 10, 30))
        fmt = ("JPEG", "JPEG", "JPEG", "PNG", "WEBP")[i % 5]
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
        img.save(out / f"img{i:04d}.{ext}", fmt, **({"quality": 88} if fmt != "PNG" else {}))
        mps.append(w * h / 1e6)
        fmts[fmt] = fmts.get(fmt, 0) + 1
    return {"n": n, "formats": fmts, "mp_median": statistics.median(mps), "mp_max": max(mps),
            "bytes": sum(p.stat().st_size for p in out.iterdir())}


def make_rgba_images(out: Path, n: int, megapixels: float) -> dict:
    """n square RGBA PNGs of `megapixels`: a transparent ground, a half-transparent band and opaque shapes in a
    different colour per image (flat colours: a few hundred KB each, as trial 24's)."""
    from PIL import Image, ImageDraw

    side = int((megapixels * 1e6) ** 0.5)
    for i in range(n):
        img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        c = ((60 * i + 40) % 256, (90 * i + 160) % 256, (150 * i + 80) % 256)
        d.rectangle((0, side // 3, side, side // 2), fill=(*c, 128))
        d.ellipse((side // 8, side // 8, side // 2, side // 2), fill=(*c, 255))
        d.rectangle((side // 2, side // 2, side - side // 8, side - side // 8), fill=(250 - c[0], 30, c[2], 255))
        img.save(out / f"rgba{i:03d}.png", "PNG", compress_level=6)
    return {"n": n, "formats": {"PNG (RGBA)": n}, "mp_median": side * side / 1e6, "mp_max": side * side / 1e6,
            "bytes": sum(p.stat().st_size for p in out.iterdir())}


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def run_variant(images: Path, threads: int) -> dict:
    """In the child: the stage over every image from `threads` threads; RSS figures in MB."""
    from app.settings import Settings
    from consumers.preprocess.stage import PreprocessStage

    s = Settings()
    s.preprocess.file_roots = [str(images)]
    stage = PreprocessStage(s)
    paths = sorted(images.iterdir())
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.monotonic(), _rss_kb("VmRSS:")))
            time.sleep(0.05)

    def one(p: Path):
        ev = {"asset_id": p.name, "event_id": f"e-{p.name}", "event_type": "created", "source_uri": p.as_uri(),
              "content_type": None, "uploader": None, "uploader_notes": None, "declared_license": None,
              "product_context": None, "tenant": "default", "event_time": 1763780000000, "version": 1,
              "human_fields": None, "attributes": {}}
        try:
            stage.process(ev)
            return True
        except Exception as e:  # noqa: BLE001 - a bench: count, do not stop
            return type(e).__name__

    idle = _rss_kb("VmRSS:")
    t0 = time.monotonic()
    threading.Thread(target=sample, daemon=True).start()
    with cf.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, paths))
    wall = time.monotonic() - t0
    done.set()
    time.sleep(1.0)
    after = _rss_kb("VmRSS:")
    half = [r for t, r in samples if t >= t0 + wall / 2] or [after]
    return {"idle_mb": idle / 1024, "peak_mb": _rss_kb("VmHWM:") / 1024, "steady_mb": statistics.mean(half) / 1024,
            "after_mb": after / 1024, "wall_s": wall, "ok": sum(r is True for r in results),
            "errors": sorted({r for r in results if r is not True})}


def parse_variant(v: str) -> tuple[int, str | None, str | None]:
    v, _, ref = v.partition("@")
    threads, _, arena = v.partition("-arena")
    return int(threads.lstrip("c")), arena or None, ref or None


def checkout(ref: str, into: Path) -> Path:
    """The repository's tree at `ref` in `into` (git archive: no worktree, no change to the repository)."""
    into.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--variants", default="c16,c16-arena2,c4")
    ap.add_argument("--megapixels", type=float, help="every image this size (default: the mixed set; 79 with --rgba)")
    ap.add_argument("--rgba", action="store_true", help="transparent PNGs of --megapixels instead of the mixed set")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # "DIR THREADS": run one variant, print JSON
    a = ap.parse_args()
    if a.child:
        d, t = a.child.split()
        print(json.dumps(run_variant(Path(d), int(t))))
        return
    with tempfile.TemporaryDirectory(prefix="assetstream-bench-mem-") as tmp:
        t = time.monotonic()
        images = Path(tmp) / "images"
        images.mkdir()
        info = (make_rgba_images(images, a.images, a.megapixels or 79) if a.rgba
                else make_images(images, a.images, megapixels=a.megapixels))
        print(f"{info['n']} images {info['formats']}, {info['bytes'] / 1e6:.0f} MB, median {info['mp_median']:.1f} MP, "
              f"max {info['mp_max']:.0f} MP (made in {time.monotonic() - t:.0f} s)", flush=True)
        rows = []
        for v in a.variants.split(","):
            threads, arena, ref = parse_variant(v)
            env = {k: val for k, val in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "PREPROCESS_BENCH_SOURCE")}
            if arena:
                env["MALLOC_ARENA_MAX"] = arena
            if ref:
                env["PREPROCESS_BENCH_SOURCE"] = str(checkout(ref, Path(tmp) / "src" / ref.replace("/", "_")))
            proc = subprocess.run([sys.executable, __file__, "--child", f"{images} {threads}"], env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"variant {v} failed:\n{proc.stderr[-3000:]}")
            out = proc.stdout
            r = json.loads(out.strip().splitlines()[-1])
            rows.append((v, r))
            print(f"  {v}: done in {r['wall_s']:.0f} s", flush=True)
    base = rows[0][1]
    print(f"\n{'variant':24s} {'idle MB':>8s} {'peak MB':>8s} {'steady MB':>10s} {'after MB':>9s} {'wall s':>7s} "
          f"{'peak ÷':>7s} {'steady ÷':>9s} {'ok':>4s}")
    for v, r in rows:
        print(f"{v:24s} {r['idle_mb']:8.0f} {r['peak_mb']:8.0f} {r['steady_mb']:10.0f} {r['after_mb']:9.0f} "
              f"{r['wall_s']:7.0f} {r['peak_mb'] / base['peak_mb']:6.2f}x {r['steady_mb'] / base['steady_mb']:8.2f}x "
              f"{r['ok']:4d}" + (f"  errors: {r['errors']}" if r["errors"] else ""))
    print(f"(÷ = ratio to {rows[0][0]}; peak = VmHWM, steady = mean RSS over the second half, after = 1 s after the "
          f"last image)")


if __name__ == "__main__":
    main()
