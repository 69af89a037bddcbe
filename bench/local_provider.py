"""Throughput of the offline local provider on 768 px JPEG thumbnails, next to its own baselines.

    python bench/local_provider.py [--images 24] [--seconds 4] [--json out.json]

Rows (all in one run, same images, models already warm):
  forward only          EfficientNet-Lite0 onnxruntime forward pass on a ready 1x3x224x224 tensor
  decode+forward        JPEG decode + resize/normalise + forward (what any classifier-based path must pay)
  tagging               LocalProvider tagging (the above + MiniLM label mapping + colours/OCR/faces + schema check)
  alt_text              LocalProvider alt_text
  tagging+alt_text      both tasks per asset (the enrich stage's image work per record; rights is image-free;
                        the second task reuses the first one's cached image facts, as in production)
  ... x2 concurrent     the same through asyncio.gather on the event loop (2 cores)
Images/s is per image; the first (cold) call, including the vocabulary embedding, is reported separately.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.enrich.providers.base import ProviderRequest  # noqa: E402
from consumers.enrich.providers.local import LocalProvider  # noqa: E402
from consumers.enrich.providers.local import engine  # noqa: E402
from consumers.enrich.providers.local.classifier import decode_image, preprocess  # noqa: E402


def thumbnails(n: int) -> list[bytes]:
    import cv2
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        h, w = (768, 512) if i % 3 == 0 else (432, 768)
        kind = i % 4
        if kind == 0:  # smooth photo-like field with blobs
            a = np.zeros((h, w, 3), np.float32)
            for _ in range(6):
                c = rng.integers(0, 255, 3)
                cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(40, 300)
                cv2.circle(a, (int(cx), int(cy)), int(r), c.tolist(), -1)
            a = cv2.GaussianBlur(a, (0, 0), 9) + rng.normal(0, 6, a.shape)
        elif kind == 1:  # text poster
            a = np.full((h, w, 3), 240, np.float32)
            for k in range(4):
                cv2.putText(a, f"SALE {rng.integers(10, 90)}% OFF", (20, 90 + 90 * k), cv2.FONT_HERSHEY_SIMPLEX,
                            1.8, (20, 20, 20), 4)
        elif kind == 2:  # gradient
            a = np.dstack([np.tile(np.linspace(30, 220, w), (h, 1))] * 3) * np.array([1.0, 0.8, 0.6])
        else:  # noise texture
            a = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
        buf = io.BytesIO()
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def vocabulary() -> list[dict]:
    p = Path(__file__).resolve().parents[1] / "consumers/validate/taxonomy"
    files = sorted(p.glob("v*.json"))
    if files:
        return [t for t in json.loads(files[-1].read_text())["tags"] if not t.get("deprecated")]
    return [{"tag": f"color:{c}", "label": c, "synonyms": []} for c in ("red", "blue", "white", "black")] + [
        {"tag": "content:text", "label": "text", "synonyms": ["typography"]}]


def pre_for(i: int) -> dict:
    pre = {"asset": {"product_context": {}}, "signals": {"face_count": 0, "colors": []},
           "ocr": {"text": "", "words": []}}
    if i % 4 == 1:
        pre["ocr"] = {"text": "SALE 40% OFF", "words": [{"text": w, "confidence": 90.0} for w in ("SALE", "40%", "OFF")]}
    return pre


def schemas(vocab: list[dict]) -> dict[str, dict]:
    root = Path(__file__).resolve().parents[1] / "domain" / "prompts"
    out = {}
    for task in ("tagging", "alt_text"):
        files = sorted((root / task).glob("v*.schema.json"))
        out[task] = json.loads(files[-1].read_text()) if files else {"type": "object"}
        out[task].pop("$schema", None)
    try:
        out["tagging"]["properties"]["tags"]["items"]["properties"]["tag"]["enum"] = sorted(t["tag"] for t in vocab)
    except KeyError:
        pass
    return out


def rate(fn, items, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        for x in items:
            fn(x)
            n += 1
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()

    imgs = thumbnails(args.images)
    vocab = vocabulary()
    sch = schemas(vocab)
    provider = LocalProvider()

    def req(task: str, i: int) -> ProviderRequest:
        return ProviderRequest(task=task, model="local", system="", user_text="", output_schema=sch[task],
                               image=imgs[i], context={"vocabulary": vocab, "preprocessed": pre_for(i)})

    t0 = time.perf_counter()
    provider.warm_up()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    provider.generate_sync(req("tagging", 0))
    cold_s = time.perf_counter() - t0

    clf = engine.classifier(provider.threads)
    tensors = [preprocess(decode_image(b)) for b in imgs]
    idx = list(range(len(imgs)))
    rows = []
    rows.append(("forward only (baseline)", rate(lambda i: clf.logits(tensors[i]), idx, args.seconds)))
    rows.append(("decode+preprocess+forward", rate(lambda i: clf.logits(preprocess(decode_image(imgs[i]))), idx,
                                                   args.seconds)))
    # the provider caches image facts per image (tagging and alt_text of one asset share a forward pass):
    # clear that cache before every asset so repeated bench images are never free
    def fresh(fn):
        def run(i):
            engine._facts_cache.clear()
            return fn(i)
        return run

    rows.append(("local tagging", rate(fresh(lambda i: provider.generate_sync(req("tagging", i))), idx, args.seconds)))
    rows.append(("local alt_text", rate(fresh(lambda i: provider.generate_sync(req("alt_text", i))), idx,
                                        args.seconds)))
    rows.append(("local tagging+alt_text", rate(fresh(
        lambda i: (provider.generate_sync(req("tagging", i)), provider.generate_sync(req("alt_text", i)))),
        idx, args.seconds)))

    async def concurrent() -> float:
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < args.seconds:
            engine._facts_cache.clear()
            await asyncio.gather(*(provider.generate(req(task, i)) for i in idx for task in ("tagging", "alt_text")))
            n += len(idx)
        return n / (time.perf_counter() - t)

    rows.append(("local tagging+alt_text, asyncio.gather", asyncio.run(concurrent())))

    print(f"local provider bench: {len(imgs)} JPEG thumbnails (768 px long side), {os.cpu_count()} cpus, "
          f"onnxruntime threads/forward={provider.threads}, vocabulary={len(vocab)} tags")
    print(f"model load {load_s:.2f} s; first tagging call (embeds the vocabulary) {cold_s:.2f} s")
    print(f"{'path':42s} {'images/s':>9s} {'ms/image':>9s}")
    for name, r in rows:
        print(f"{name:42s} {r:9.1f} {1000.0 / r:9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_s": load_s, "cold_first_call_s": cold_s,
                                               "images_per_s": dict(rows)}, indent=2))


if __name__ == "__main__":
    main()
