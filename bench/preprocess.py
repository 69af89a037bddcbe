#!/usr/bin/env python3
"""Preprocess benchmark: one process, one thread (images/s per core), every baseline measured in the same run.

    python bench/preprocess.py [--images 8] [--rounds 10] [--ocr-images 8]

Part 1, 12-megapixel JPEGs (4000x3000, made here): this stage's decode + EXIF + thumbnail + hashes
   vs naive Pillow (full decode -> orient -> resize -> thumbnail -> hash the full image)
   vs the floor (JPEG draft decode alone, nothing else).  Goals: >= 2.0x naive, >= 0.8x floor.
Part 2, OCR on a mixed set (half with text): gate + tesseract vs a plain pytesseract.image_to_data call on
   every image, with word recall for both.  Goal: cost <= 0.5x plain at equal recall.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import imagehash  # noqa: E402
import pytesseract  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, TiffImagePlugin  # noqa: E402

from consumers.preprocess import hashes, metadata, ocr  # noqa: E402
from domain.vision import decode as dec  # noqa: E402
from domain.vision.thumbnail import WORK_EDGE, encode_thumbnail, thumbnail_base  # noqa: E402

EDGE = 768


def photo(seed: int, size=(4000, 3000)) -> Image.Image:
    """Photo-like content with detail everywhere (so JPEG size/decode cost is realistic: ~3-5 MB)."""
    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", (w // 4, h // 4), (rnd.randint(60, 140), rnd.randint(120, 200), 230))
    d = ImageDraw.Draw(img)
    for _ in range(120):
        x, y, s = rnd.randint(0, w // 4), rnd.randint(0, h // 4), rnd.randint(10, 200)
        d.ellipse([x, y, x + s, y + s * rnd.uniform(0.4, 1.6)], fill=tuple(rnd.randint(0, 255) for _ in range(3)))
    img = img.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BICUBIC)
    grain = Image.frombytes("L", size, rnd.randbytes(w * h)).convert("RGB")
    return Image.blend(img, grain, 0.08)


def exif_block() -> Image.Exif:
    R = TiffImagePlugin.IFDRational
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = "Sony", "ILCE-7M4"
    sub = ex.get_ifd(0x8769)
    sub[0x829A], sub[0x829D], sub[0x8827], sub[0x9003] = R(1, 125), R(8, 1), 100, "2024:03:02 11:00:00"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (R(52, 1), R(22, 1), R(0, 1)), "E", (R(4, 1), R(54, 1), R(0, 1))
    return ex


def timed_interleaved(paths: dict, items, rounds) -> dict[str, float]:
    """images/s per path: each image goes through every path in turn, so load from other processes on a
    shared machine hits all paths alike; the best of `rounds` per (path, image) is kept, then summed."""
    best = {name: [float("inf")] * len(items) for name in paths}
    order = list(paths)
    for r in range(rounds):
        for i, it in enumerate(items):
            # rotate which path goes first, so none always runs right after the big naive decode (cold caches,
            # freshly returned memory) or always right before it
            for name in order[(r + i) % len(order):] + order[:(r + i) % len(order)]:
                fn = paths[name]
                t = time.perf_counter()
                fn(it)
                best[name][i] = min(best[name][i], time.perf_counter() - t)
    return {name: len(items) / sum(ts) for name, ts in best.items()}


def floor_path(data: bytes):
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    s = WORK_EDGE / max(w, h)
    im.draft("RGB", (int(w * s + 0.999), int(h * s + 0.999)))
    im.load()


def naive_path(data: bytes):
    im = Image.open(io.BytesIO(data))
    im.load()
    exif = im.getexif()
    im = ImageOps.exif_transpose(im)
    thumb = im.copy()
    thumb.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    imagehash.phash(im), imagehash.dhash(im)
    hashes.sha256_hex(data)
    return exif


def stage_path(data: bytes):
    sha = hashes.sha256_hex(data)
    d = dec.decode(data, max_pixels=80_000_000, min_edge=WORK_EDGE)
    base = thumbnail_base(d.image, EDGE)
    encode_thumbnail(base, max_bytes=256 * 1024)
    metadata.parse_exif(d.exif)
    hashes.hashes_record(data, base, sha)  # as PreprocessStage.preprocess_bytes does


def text_set(n: int):
    """(image, ground-truth words); half carry text on a photo-like background, half carry none."""
    items = []
    phrases = ["Grand opening this weekend", "Fresh bread baked daily", "Limited edition sneakers",
               "Museum of modern art", "Clearance sale up to seventy percent", "Harbour view apartments",
               "Organic coffee roasters", "City marathon registration open"]
    for i in range(n):
        img = photo(100 + i, (1600, 1200))
        words: set[str] = set()
        if i % 2 == 0:
            d = ImageDraw.Draw(img)
            size = [56, 72, 90, 64][(i // 2) % 4]
            f = ImageFont.load_default(size=size)
            lines = [phrases[i % len(phrases)], phrases[(i + 3) % len(phrases)]]
            top = 150 + 40 * (i % 3)
            d.rectangle([80, top - 30, 1540, top + int(size * 2.9)], fill=(250, 248, 240))
            for k, line in enumerate(lines):
                d.text((110, top + k * int(size * 1.4)), line, font=f, fill=(15, 15, 30))
                words |= {w.lower() for w in line.split()}
        items.append((img, words))
    return items


def found(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--ocr-images", type=int, default=8)
    a = ap.parse_args()

    print(f"making {a.images} 4000x3000 JPEGs ...", flush=True)
    jpegs = []
    for i in range(a.images):
        buf = io.BytesIO()
        photo(i).save(buf, "JPEG", quality=90, exif=exif_block())
        jpegs.append(buf.getvalue())
    mb = statistics.mean(len(j) for j in jpegs) / 1e6
    stage_path(jpegs[0]), naive_path(jpegs[0]), floor_path(jpegs[0])  # warm up
    r = timed_interleaved({"floor": floor_path, "naive": naive_path, "stage": stage_path}, jpegs, a.rounds)
    floor, naive, ours = r["floor"], r["naive"], r["stage"]
    print(f"\n12 MP JPEG (avg {mb:.1f} MB), 1 thread, best of {a.rounds} rounds x {a.images} images")
    print(f"{'path':46s} {'images/s':>9s} {'ms/image':>9s} {'stage ÷ it':>11s}")
    for name, ips in (("floor: JPEG draft decode alone", floor),
                      ("naive: full decode, resize, hash", naive),
                      ("stage: draft decode+EXIF+thumbnail+hashes", ours)):
        print(f"{name:46s} {ips:9.2f} {1000 / ips:9.1f} {ours / ips:10.2f}x")
    print(f"goal: >= 2.0x naive -> {ours / naive:.2f}x {'OK' if ours / naive >= 2.0 else 'MISSED'}; "
          f">= 0.8x floor -> {ours / floor:.2f}x {'OK' if ours / floor >= 0.8 else 'MISSED'}")

    print(f"\nmaking {a.ocr_images} 1600x1200 OCR images (half with text) ...", flush=True)
    if a.ocr_images <= 0:
        return
    items = text_set(a.ocr_images)
    n_truth = sum(len(w) for _, w in items)
    plain_hits = gated_hits = 0  # ground-truth words found, counted per image
    plain_s = gated_s = 0.0
    ran = 0
    for i, (img, truth) in enumerate(items):  # interleaved per image, alternating which path goes first
        def plain(img=img):
            return found(" ".join(pytesseract.image_to_data(img, output_type=pytesseract.Output.DICT)["text"]))

        def gated(img=img):
            if ocr.text_likelihood(img)[0]:
                return found(ocr.run_ocr(img)["text"]), 1
            return set(), 0

        for which in (("plain", "gated") if i % 2 == 0 else ("gated", "plain")):
            t = time.perf_counter()
            if which == "plain":
                plain_hits += len(plain() & truth)
                plain_s += time.perf_counter() - t
            else:
                words, did = gated()
                gated_hits += len(words & truth)
                ran += did
                gated_s += time.perf_counter() - t
    gate_t = time.perf_counter()
    for img, _ in items:
        ocr.text_likelihood(img)
    gate_ms = (time.perf_counter() - gate_t) / len(items) * 1000
    r_plain = plain_hits / n_truth
    r_gated = gated_hits / n_truth
    n_text = sum(1 for _, w in items if w)
    print(f"\nOCR, mixed set: {len(items)} images, {n_text} with text, 1 thread")
    print(f"{'path':46s} {'s/image':>9s} {'recall':>7s} {'cost ÷ plain':>13s}")
    print(f"{'plain pytesseract.image_to_data on every image':46s} {plain_s / len(items):9.3f} {r_plain:7.2f} {1.0:12.2f}x")
    print(f"{f'gate ({gate_ms:.1f} ms) + tesseract on {ran} images':46s} {gated_s / len(items):9.3f} {r_gated:7.2f} "
          f"{gated_s / plain_s:12.2f}x")
    print(f"goal: cost <= 0.5x plain at equal recall -> {gated_s / plain_s:.2f}x, recall {r_gated:.2f} vs {r_plain:.2f} "
          f"{'OK' if gated_s / plain_s <= 0.5 and r_gated >= r_plain - 1e-9 else 'MISSED'}")


if __name__ == "__main__":
    main()
