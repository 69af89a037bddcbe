"""How many frames (an animated GIF, WebP or PNG) or pages (a multi-page TIFF) an image file holds, counted from its
structure, bounded: preprocess decodes the first frame only, and the record says when the file has more
(`ImageFacts.frames`).

Pillow's `n_frames` walks every frame of a GIF (and every IFD of a TIFF, parsing its tags) to count them: a hostile
file of a million 1-pixel frames in a few MB takes it many seconds. Here each format's frame list is walked with a
constant amount of work per frame and stops at `FRAME_CAP` + 1 ("more than 1000"): no pixel is decoded, no chunk is
inflated. Pure Python, no Pillow: the search and review layers can use `frames_phrase` too.
"""
from __future__ import annotations

import struct

FRAME_CAP = 1000
"""Frames counted at most: a file with more says FRAME_CAP + 1, shown as "more than 1000"."""
MAX_STEPS = 1_000_000
"""Blocks (GIF data sub-blocks, PNG or WebP chunks) walked at most (~0.2 s): a file that has more before its count is
known (a GIF frame cut into one-byte sub-blocks) gives the frames counted so far, or None."""

PAGED = frozenset({"TIFF"})
"""Formats whose frames are pages, not an animation."""


def count_frames(data: bytes, fmt: str, cap: int = FRAME_CAP) -> int | None:
    """The frames or pages of an image file of (sniffed) format `fmt`, at most `cap` + 1 (= more than `cap`); None
    when it has one, or its format has no such notion here (JPEG, BMP, HEIF), or its structure cannot be read
    (the decode says what is wrong with it). At most MAX_STEPS steps of constant work each."""
    counter = _COUNTERS.get(fmt)
    if counter is None:
        return None
    try:
        n = counter(data, cap + 1)
    except (IndexError, struct.error, ValueError):
        return None
    return n if n > 1 else None


def frames_phrase(fmt: str | None, frames: int | None, cap: int = FRAME_CAP) -> str | None:
    """What a person is told: "animated, 12 frames", "12 pages", "animated, more than 1000 frames"; None for one."""
    if not frames or frames <= 1:
        return None
    n = f"more than {cap}" if frames > cap else str(frames)
    return f"{n} pages" if fmt in PAGED else f"animated, {n} frames"


def _gif(data: bytes, stop: int) -> int:
    """Image descriptors (0x2C) of a GIF: each frame's data sub-blocks are stepped over by their length bytes."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return 0
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    n, size, steps = 0, len(data), 0
    while pos < size and n < stop and steps < MAX_STEPS:
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x2C:  # image descriptor (10 bytes), local colour table, LZW code size, data sub-blocks
            n += 1
            packed = data[pos + 9]
            pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:
            break
        while pos < size and steps < MAX_STEPS:  # sub-blocks, ended by a zero length
            length = data[pos]
            pos += 1 + length
            steps += 1
            if length == 0:
                break
    return n


def _tiff(data: bytes, stop: int) -> int:
    """IFDs in the main chain of a TIFF or BigTIFF (its pages; not SubIFDs), following each IFD's next offset and
    stopping at a loop."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        return 0
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count_fmt, entry, next_fmt = (order + "Q", 20, order + "Q") if big else (order + "H", 12, order + "I")
    head = 8 if big else 2
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < stop:
        seen.add(offset)
        entries = struct.unpack_from(count_fmt, data, offset)[0]
        offset = struct.unpack_from(next_fmt, data, offset + head + entry * entries)[0]
    return len(seen)


def _webp(data: bytes, stop: int) -> int:
    """ANMF chunks of an animated WebP (RIFF chunks: a FourCC, a little-endian size, the payload padded to even)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return 0
    if data[12:16] != b"VP8X" or not data[20] & 0x02:  # no extended header with the animation flag: one frame
        return 1
    pos, n, size = 12, 0, len(data)
    for _ in range(MAX_STEPS):
        if pos + 8 > size or n >= stop:
            break
        kind, length = _RIFF_CHUNK.unpack_from(data, pos)
        n += kind == b"ANMF"
        pos += 8 + length + (length & 1)
    return n


def _png(data: bytes, stop: int) -> int:
    """fcTL chunks of an APNG (one per frame): the chunk list walked by its length fields. A PNG without an acTL
    chunk before its first IDAT is no animation: the walk stops there."""
    pos, n, size, animated = 8, 0, len(data), False
    for _ in range(MAX_STEPS):
        if pos + 12 > size or n >= stop:
            break
        length, kind = _CHUNK.unpack_from(data, pos)
        animated = animated or kind == b"acTL"
        if kind == b"IEND" or (kind == b"IDAT" and not animated):
            break
        n += kind == b"fcTL"
        pos += 12 + length
    return n


_CHUNK = struct.Struct(">I4s")
_RIFF_CHUNK = struct.Struct("<4sI")
_COUNTERS = {"GIF": _gif, "TIFF": _tiff, "WEBP": _webp, "PNG": _png}
