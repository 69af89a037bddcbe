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

PAGED = frozenset({"TIFF"})
"""Formats whose frames are pages, not an animation."""


def count_frames(data: bytes, fmt: str, cap: int = FRAME_CAP) -> int | None:
    """The frames or pages of an image file of (sniffed) format `fmt`, at most `cap` + 1 (= more than `cap`); None
    when it has one, or its format has no such notion here (JPEG, BMP, HEIF), or its structure cannot be read
    (the decode says what is wrong with it). At most `cap` + 1 steps of constant work each, plus, for a GIF, one
    step per 255-byte data sub-block of the frames counted."""
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
    n, size = 0, len(data)
    while pos < size and n < stop:
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
        while pos < size:  # sub-blocks, ended by a zero length
            length = data[pos]
            pos += 1 + length
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
    pos, n, size = 12, 0, len(data)
    while pos + 8 <= size and n < stop:
        kind = data[pos:pos + 4]
        length = struct.unpack_from("<I", data, pos + 4)[0]
        n += kind == b"ANMF"
        pos += 8 + length + (length & 1)
    return n


def _png(data: bytes, stop: int) -> int:
    """fcTL chunks of an APNG (one per frame): the chunk list walked by its length fields."""
    pos, n, size = 8, 0, len(data)
    while pos + 12 <= size and n < stop:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IEND":
            break
        n += kind == b"fcTL"
        pos += 12 + length
    return n


_COUNTERS = {"GIF": _gif, "TIFF": _tiff, "WEBP": _webp, "PNG": _png}
