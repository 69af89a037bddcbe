"""Face counts: Haar cascades (the base commit's preprocess) vs BlazeFace + face mesh (this tree), same images, same
run, with CPU ms per image.

    OMP_THREAD_LIMIT=1 python bench/faces.py                                   # quality set + derived hard set
    python bench/faces.py --skimage-data DIR       # + scikit-image's sample data (LFW faces/non-faces, extras)
    python bench/faces.py --details                # every image where either detector is wrong
    python bench/faces.py --no-confirm             # BlazeFace alone (face mesh confirmation off): the ablation

Both columns are `face_count(img)` as preprocess runs it: the baseline is consumers/preprocess/signals.py of
--baseline (default: the commit before BlazeFace) loaded from git, the other is this tree's. Per set: images,
faces in the truth, false positives (counted faces over the truth, per image, summed) per 100 images, missed faces,
precision / recall of the counts, CPU ms per image (process time, models warm).

Sets:
  quality    tests/data/quality (truth.json `faces`): photos, products, documents, logos, backgrounds
  hard       built from the quality images: the four face photos scaled down into textures (small faces),
             mirrored, rotated 10-20 degrees, dimmed, and a group of three; every non-face image as 2x zoomed
             crops (quarters), greyscale and at 320 px (textures, food, coins, animals up close)
  skimage    with --skimage-data (the `skimage/data` folder of scikit-image 0.26, e.g. unpacked from
             `pip download --no-deps scikit-image==0.26.0`): LFW subset faces (100, 25 px, shown at 96 px on a
             192 px canvas) and non-faces (100, backgrounds of the same photos), and the sample images not in the
             quality set (cell, ihc, color, logo, motorcycle, page, text, phantom, clock, horse)
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUALITY = ROOT / "tests" / "data" / "quality"
BASE_REF = "287403b"
"""main before BlazeFace: faces by two Haar cascades"""


def baseline_face_count(ref: str):
    """face_count from `ref`'s consumers/preprocess/signals.py (its own cascades), run against this tree's
    decode helpers (unchanged)."""
    src = subprocess.check_output(["git", "-C", str(ROOT), "show", f"{ref}:consumers/preprocess/signals.py"])
    spec = importlib.util.spec_from_loader("baseline_signals", loader=None)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    exec(compile(src, f"{ref}:consumers/preprocess/signals.py", "exec"), mod.__dict__)
    return mod.face_count


def _open(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    return img


def quality_set() -> list[tuple[str, Image.Image, int]]:
    truth = json.loads((QUALITY / "truth.json").read_text())["images"]
    return [(name, _open(QUALITY / "images" / name), int(t.get("faces") or 0)) for name, t in sorted(truth.items())]


def hard_set(quality: list[tuple[str, Image.Image, int]]) -> list[tuple[str, Image.Image, int]]:
    faces = [(n, im.convert("RGB")) for n, im, k in quality if k == 1 and "_web" not in n]
    others = [(n, im) for n, im, k in quality if k == 0]
    backdrops = [im.convert("RGB") for n, im, _ in quality if n in ("grass.jpg", "gravel.jpg", "brick.jpg")]
    out: list[tuple[str, Image.Image, int]] = []
    for i, (n, im) in enumerate(faces):
        bg = backdrops[i % len(backdrops)].resize((1024, 768))
        for share in (0.35, 0.2):  # the whole photo at 35 % / 20 % of the canvas width: a small face
            small = im.resize((round(1024 * share), round(1024 * share * im.height / im.width)))
            canvas = bg.copy()
            canvas.paste(small, (600, 200))
            out.append((f"{n}@small{share}", canvas, 1))
        out.append((f"{n}@mirror", ImageOps.mirror(im), 1))
        for angle in (10, 20):
            out.append((f"{n}@rot{angle}", im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True), 1))
        out.append((f"{n}@dim", ImageEnhance.Brightness(im).enhance(0.45), 1))
    group = Image.new("RGB", (1500, 600), (200, 200, 200))
    for i, (_, im) in enumerate(faces[:3]):
        group.paste(im.resize((480, round(480 * im.height / im.width))).crop((0, 0, 480, 560)), (20 + i * 490, 20))
    out.append(("group_of_three", group, 3))
    for n, im in others:
        rgb = im.convert("RGB")
        w, h = rgb.size
        for q, (x, y) in enumerate(((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2))):
            out.append((f"{n}@quarter{q}", rgb.crop((x, y, x + w // 2, y + h // 2)).resize((w, h)), 0))
        out.append((f"{n}@grey", ImageOps.grayscale(rgb), 0))
        out.append((f"{n}@320", rgb.resize((320, max(1, round(320 * h / w)))), 0))
    return out


SKIMAGE_EXTRA = ("cell.png", "ihc.png", "color.png", "logo.png", "motorcycle_left.png", "motorcycle_right.png",
                 "page.png", "text.png", "phantom.png", "clock_motion.png", "horse.png", "chessboard_RGB.png",
                 "microaneurysms.png")


def skimage_set(directory: Path) -> list[tuple[str, Image.Image, int]]:
    out: list[tuple[str, Image.Image, int]] = []
    lfw = np.load(directory / "lfw_subset.npy")
    lfw = (lfw * 255).astype(np.uint8) if lfw.dtype != np.uint8 else lfw
    for i, patch in enumerate(lfw):
        canvas = Image.new("L", (192, 192), 128)
        canvas.paste(Image.fromarray(patch).resize((96, 96), Image.Resampling.BICUBIC), (48, 48))
        out.append((f"lfw{i:03d}", canvas, 1 if i < 100 else 0))
    out += [(n, _open(directory / n), 0) for n in SKIMAGE_EXTRA if (directory / n).is_file()]
    return out


def run(name: str, images: list[tuple[str, Image.Image, int]], detectors: dict, details: bool) -> dict:
    rows = {}
    counts: dict[str, list[int]] = {}
    for det, fn in detectors.items():
        fn(images[0][1])  # warm
        t0 = time.process_time()
        counts[det] = [fn(im) for _, im, _ in images]
        ms = (time.process_time() - t0) * 1000 / len(images)
        truth = [k for _, _, k in images]
        fp = sum(max(0, c - t) for c, t in zip(counts[det], truth))
        fn_ = sum(max(0, t - c) for c, t in zip(counts[det], truth))
        tp = sum(min(c, t) for c, t in zip(counts[det], truth))
        rows[det] = {"images": len(images), "faces": sum(truth), "fp": fp, "fp_per_100": 100 * fp / len(images),
                     "missed": fn_, "precision": tp / max(1, tp + fp), "recall": tp / max(1, sum(truth)),
                     "cpu_ms": ms}
    base, new = list(detectors)
    b, n = rows[base], rows[new]
    print(f"\n{name}: {b['images']} images, {b['faces']} faces")
    print(f"  {'':18}{base:>12}{new:>12}{'ratio':>8}")
    for key, label, fmt in (("fp", "false positives", "{:.0f}"), ("fp_per_100", "FP / 100 images", "{:.1f}"),
                            ("missed", "missed faces", "{:.0f}"), ("precision", "precision", "{:.3f}"),
                            ("recall", "recall", "{:.3f}"), ("cpu_ms", "CPU ms / image", "{:.1f}")):
        ratio = f"{n[key] / b[key]:.2f}x" if b[key] else "-"
        print(f"  {label:18}{fmt.format(b[key]):>12}{fmt.format(n[key]):>12}{ratio:>8}")
    if details:
        for (img_name, _, t), cb, cn in zip(images, counts[base], counts[new]):
            if cb != t or cn != t:
                print(f"    {img_name:40} truth {t}  {base} {cb}  {new} {cn}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=BASE_REF, help="git ref whose preprocess face count is the baseline")
    ap.add_argument("--skimage-data", help="scikit-image's skimage/data folder (adds the LFW subset etc.)")
    ap.add_argument("--details", action="store_true", help="list every image where either detector is wrong")
    ap.add_argument("--no-confirm", action="store_true", help="count BlazeFace's candidates without the face mesh "
                    "confirmation (every candidate's face-presence is still computed, so CPU is not lower)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    from consumers.preprocess import signals

    detectors = {"haar": baseline_face_count(args.baseline), "blazeface": signals.face_count}
    if args.no_confirm:
        from domain.vision.decode import flatten, resized

        def unconfirmed(img: Image.Image) -> int:
            arr = np.asarray(resized(flatten(img), signals.FACE_EDGE))
            return len(signals.face_detector().detect(arr, faceflag_min=0.0))
        detectors = {"haar": detectors["haar"], "bf-alone": unconfirmed}
    quality = quality_set()
    sets = {"quality": quality, "hard": hard_set(quality)}
    if args.skimage_data:
        sets["skimage"] = skimage_set(Path(args.skimage_data))
    what = "BlazeFace alone, score >= 0.5" if args.no_confirm else "BlazeFace + face mesh"
    print(f"baseline {args.baseline} (Haar cascades) vs this tree ({what}); 1 thread")
    out = {name: run(name, images, detectors, args.details) for name, images in sets.items()}
    everything = [x for images in sets.values() for x in images]
    out["all"] = run("all sets", everything, detectors, False)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
