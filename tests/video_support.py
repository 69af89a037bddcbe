"""Short test videos made with PyAV: known text rendered into the frames with Pillow, a scene cut at a known time."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass

import av
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class Scene:
    seconds: float
    text: str
    background: tuple[int, int, int]
    ink: tuple[int, int, int] = (10, 10, 10)


TWO_SCENES = (Scene(3.0, "FRESH BREAD", (250, 250, 245)), Scene(3.0, "OPEN SUNDAY", (30, 60, 170), (255, 255, 255)))
"""The scene cut is at 3.0 s; each scene's text is visible for its whole length."""


FESTIVAL = (Scene(4.0, "HARBOR FESTIVAL", (20, 40, 120), (255, 255, 255)),
            Scene(4.0, "TICKETS ON SALE", (200, 180, 40)),
            Scene(4.0, "SATURDAY JUNE", (30, 120, 40), (255, 255, 255)),
            Scene(4.0, "ZEBRA AQUARIUM", (120, 30, 30), (255, 255, 255)))
"""Four 4 s text scenes; made with `gop=10_000, options=LONG_GOP_FAST` it has one intra frame, at 0 s."""

SHOP = (Scene(2.0, "FRESH BREAD", (200, 30, 30), (255, 255, 255)),
        Scene(2.0, "OPEN SUNDAY", (20, 120, 40), (255, 255, 255)),
        Scene(2.0, "FREE SHIPPING", (30, 40, 180), (255, 255, 255)))
"""A 6 s clip of three 2 s shots (trial 35 F6): made with `gop=10_000, options=LONG_GOP_FAST` its only intra frame
is at 0 s, and the clip is shorter than `video_spread_gap_s`."""

OPEN_GOP = (Scene(10.0, "RECIPE ONE", (200, 40, 40), (255, 255, 255)), Scene(4.0, "BAKE AT 200", (30, 140, 60)))
"""At 25 fps and libx265's defaults (open GOP, keyint 250): an IDR picture at 0 s and a CRA picture at 10 s, the
scene cut, 250 frames on (far enough for its picture order count to wrap if the pictures between are skipped)."""

LONG_GOP_FAST = {"preset": "ultrafast", "sc_threshold": "0"}
"""x264 as a fast phone or screen encoder runs it: no intra frame at scene cuts (with a large `gop`)."""


def frame_image(scene: Scene, size: tuple[int, int], i: int) -> Image.Image:
    img = Image.new("RGB", size, scene.background)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(24, size[1] // 7))
    x = size[0] // 10 + (i % 10)  # a little motion, so inter frames are not all empty
    d.text((x, size[1] // 3), scene.text, font=font, fill=scene.ink)
    return img


def make_video(scenes: tuple[Scene, ...] = TWO_SCENES, *, size: tuple[int, int] = (640, 360), fps: int = 10,
               container: str = "mp4", codec: str = "libx264", gop: int | None = None,
               metadata: dict[str, str] | None = None, options: dict[str, str] | None = None,
               rotation: int = 0, faststart: bool = False) -> bytes:
    """An encoded video (bytes). libx264 puts an intra frame at each scene cut by itself; `gop` caps the
    distance between intra frames; `options` go to the encoder (e.g. x264's sc_threshold=0: no intra frame at
    scene cuts); `rotation`: the display rotation a phone held upright writes (degrees counter-clockwise): the
    frames are stored turned the other way, so a player that applies it shows `size` upright. `faststart`: the
    index (moov) before the media data, as web videos are written (a cut file then still opens)."""
    with tempfile.TemporaryDirectory() as tmp:
        # a real file: the faststart pass rewrites it (moving the index in front), which a BytesIO cannot do
        path = f"{tmp}/clip.{container}"
        with av.open(path, mode="w", format=container,
                     options={"movflags": "+faststart"} if faststart else {}) as out:
            for k, v in (metadata or {}).items():
                out.metadata[k] = v
            stream = out.add_stream(codec, rate=fps, options=options or {})
            stream.width, stream.height = size if rotation % 180 == 0 else (size[1], size[0])
            stream.pix_fmt = "yuv420p"
            if rotation:
                stream.set_display_rotation(rotation)
            if gop:
                stream.codec_context.gop_size = gop
            for scene in scenes:
                for i in range(round(scene.seconds * fps)):
                    frame = av.VideoFrame.from_image(frame_image(scene, size, i).rotate(-rotation, expand=True))
                    for packet in stream.encode(frame):
                        out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with open(path, "rb") as fh:
            return fh.read()
