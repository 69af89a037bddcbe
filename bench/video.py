#!/usr/bin/env python3
"""Video keyframe benchmark: seconds per video-minute, one process, one decoder thread, every path measured in
the same run on the same file.

    python bench/video.py [--minutes 2] [--size 1920x1080] [--fps 25] [--scene-s 10] [--rounds 3] [--full]
                          [--clip PATH]   (made once and kept there; a 10-minute 1080p clip takes minutes to encode)
                          [--gop N]       (long-GOP, like a screen recording: an intra frame only every N frames and
                                           none at scene cuts, x264 keyint=N with scenecut off)
                          [--before REV]  (also time consumers/preprocess/video.py as it was at git revision REV, at
                                           its own defaults, on the same clip in the same run)

The clip is made here with PyAV/libx264 (x264's defaults: an intra frame at each scene cut and at most every
250 frames): a new scene every --scene-s seconds (a colour field with a moving title and texture).
Paths, each from the same bytes in memory:
  baseline   FFmpeg's own intra-only decode (`-skip_frame nokey`: PyAV with codec_context.skip_frame = "NONKEY"),
             every intra frame decoded at full size, nothing else
  keyframes  consumers/preprocess/video.extract at default settings: intra frames scanned (scaled to 960 px by
             swscale), scene changes + even spread selected, the missing spread times seeked and decoded
  stage      PreprocessStage.preprocess_video: the above + OCR / hashes / colours / faces / NSFW per keyframe,
             thumbnails (what a worker really spends on the video)
  full       (--full) every frame decoded, the naive way to look for scene changes
"scenes" counts the clip's distinct scenes (a new one every --scene-s seconds, repeating after 8) with at least
one keyframe inside.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from consumers.preprocess import video  # noqa: E402

COLOURS = [(200, 40, 40), (30, 140, 60), (40, 70, 190), (230, 190, 40), (30, 30, 30), (225, 225, 225),
           (140, 50, 160), (30, 160, 160)]


def make_clip(minutes: float, size: tuple[int, int], fps: int, scene_s: float, gop: int | None = None) -> bytes:
    w, h = size
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 40, size=(h, w, 1), dtype=np.uint8)
    font = ImageFont.load_default(size=h // 10)
    scenes = []
    for i, c in enumerate(COLOURS):
        img = Image.new("RGB", size, c)
        ImageDraw.Draw(img).text((w // 10, h // 3), f"SCENE {i + 1} TITLE", font=font,
                                 fill=tuple(255 - v for v in c))
        scenes.append(np.clip(np.asarray(img, dtype=np.int16) + texture - 20, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast",
                                                         **({"sc_threshold": "0"} if gop else {})})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
        total = int(minutes * 60 * fps)
        per_scene = int(scene_s * fps)
        for n in range(total):
            base = scenes[(n // per_scene) % len(scenes)]
            frame = np.roll(base, (n % per_scene) * 2, axis=1)  # a slow pan: real inter frames
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def baseline_nokey(data: bytes) -> int:
    """FFmpeg's -skip_frame nokey: every intra frame decoded (full size, native pixel format)."""
    n = 0
    with av.open(io.BytesIO(data)) as box:
        st = box.streams.video[0]
        st.codec_context.thread_count = 1
        st.codec_context.skip_frame = "NONKEY"
        for _ in box.decode(st):
            n += 1
    return n


def full_decode(data: bytes) -> int:
    n = 0
    with av.open(io.BytesIO(data)) as box:
        st = box.streams.video[0]
        st.codec_context.thread_count = 1
        for _ in box.decode(st):
            n += 1
    return n


def module_at(rev: str):
    """consumers/preprocess/video.py as it was at git revision `rev`, loaded as its own module."""
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{rev}:consumers/preprocess/video.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"video_at_{rev}", loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    exec(compile(src, f"video.py@{rev}", "exec"), mod.__dict__)
    return mod


def scenes_found(offsets: list[float], scene_s: float, duration_s: float) -> str:
    """Distinct scenes with a keyframe inside, of those in the clip (its scenes repeat after len(COLOURS))."""
    total = min(len(COLOURS), math.ceil(duration_s / scene_s - 1e-6))
    return f"{len({int(t // scene_s) % len(COLOURS) for t in offsets})}/{total} scenes"


def best(fn, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--scene-s", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also time decoding every frame")
    ap.add_argument("--gop", type=int, help="long-GOP clip: an intra frame every N frames, none at scene cuts")
    ap.add_argument("--before", help="git revision whose video.py is timed beside the current one")
    ap.add_argument("--clip", type=Path, help="read the clip from here if it exists, else make it and keep it there")
    a = ap.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    if a.clip and a.clip.exists():
        data = a.clip.read_bytes()
        print(f"clip {a.clip}: {len(data) / 1e6:.1f} MB")
    else:
        gop = f", intra frame every {a.gop} frames only" if a.gop else ""
        print(f"making a {a.minutes:g}-minute {a.size} {a.fps} fps H.264 clip (scene every {a.scene_s:g} s{gop}) ...",
              flush=True)
        t = time.perf_counter()
        data = make_clip(a.minutes, size, a.fps, a.scene_s, a.gop)
        print(f"  {len(data) / 1e6:.1f} MB in {time.perf_counter() - t:.0f} s")
        if a.clip:
            a.clip.write_bytes(data)

    from app.settings import Settings
    from consumers.preprocess.stage import PreprocessStage

    stage = PreprocessStage(Settings())
    limits = video.Limits.from_settings(stage.cfg)
    rows = []
    base_s, n_intra = best(lambda: baseline_nokey(data), a.rounds)
    rows.append(("baseline: FFmpeg -skip_frame nokey (all intra frames)", base_s, f"{n_intra} intra frames"))
    from consumers.preprocess import stage as stage_module

    versions = [("", video, limits, stage)]
    if a.before:
        old = module_at(a.before)  # at that revision's own defaults (video_spread_gap_s was 20 s)
        old_stage = PreprocessStage(Settings(preprocess={"video_spread_gap_s": old.Limits().spread_gap_s}))
        versions.insert(0, (f" @{a.before}", old, old.Limits(), old_stage))
    stage.preprocess_video({"asset_id": "warm-up"}, data, "MP4")  # OCR/model loading out of the first timing
    for tag, mod, lim, st in versions:
        key_s, v = best(lambda mod=mod, lim=lim: mod.extract(data, "MP4", lim), a.rounds)
        offsets = [k.offset_s for k in v.keyframes]
        reasons = {r: sum(k.reason == r for k in v.keyframes) for r in ("first", "scene", "spread")}
        rows.append((f"keyframes{tag}: video.extract (default settings)", key_s,
                     f"{scenes_found(offsets, a.scene_s, v.duration_s)}, {len(v.keyframes)} keyframes {reasons}"))
        stage_module.video = mod  # the stage's whole video path with this version's keyframe selection
        try:
            stage_s, rec = best(lambda st=st: st.preprocess_video({"asset_id": "bench"}, data, "MP4"), 1)
        finally:
            stage_module.video = video
        rows.append((f"stage{tag}: + OCR/hashes/signals per keyframe", stage_s,
                     f"{len(rec['video']['keyframes'])} keyframes, OCR {len(rec['ocr']['text'])} chars"))
    if a.full:
        full_s, n = best(lambda: full_decode(data), 1)
        rows.append(("full decode (every frame)", full_s, f"{n} frames"))
    minutes = v.duration_s / 60
    print(f"\n{minutes:g}-minute {v.width}x{v.height} {v.codec}, 1 thread, best of {a.rounds} (stage/full: 1 run)")
    print(f"{'path':62s} {'s':>7s} {'s/video-min':>12s} {'÷ baseline':>11s}  notes")
    for name, s, note in rows:
        print(f"{name:62s} {s:7.2f} {s / minutes:12.3f} {s / base_s:10.2f}x  {note}")
    print(f"\nkeyframe extraction: {key_s / minutes:.3f} s per video-minute ({key_s / base_s:.2f}x FFmpeg's "
          f"intra-only decode); the whole video in the stage: {stage_s:.1f} s (the keyframe cap bounds the "
          f"per-keyframe work, so it does not grow with the length)")
    print("median keyframe gap (s):", statistics.median(np.diff([k.offset_s for k in v.keyframes]))
          if len(v.keyframes) > 1 else "-")


if __name__ == "__main__":
    main()
