"""How many frames (an animated GIF, WebP or PNG) or pages (a multi-page TIFF) an image file holds, counted from its
structure, bounded: preprocess decodes the first frame only, and the record says when the file has more
(`ImageFacts.frames`).

Pillow's `n_frames` walks every frame of a GIF (and every IFD of a TIFF, parsing its tags) to count them: a hostile
file of a million 1-pixel frames in a few MB takes it many seconds. Here each format's frame list is walked with a
constant amount of work per frame and stops at `FRAME_CAP` + 1 ("more than 1000"): no pixel is decoded, no chunk is
inflated. A walk that runs out of steps first says "at least N" (stored as -N). A PNG's frames come from the one walk
over its chunk list that the decode's bound and metadata strip use too (`domain/vision/png.py`). Pure Python, no
Pillow: the search and review layers can use `frames_phrase` too.
"""
from __future__ import annotations

import struct

from domain.vision import png

FRAME_CAP = 1000
"""Frames counted at most: a file with more says FRAME_CAP + 1, shown as "more than 1000"."""
MAX_STEPS = 1_000_000
"""Blocks (GIF data sub-blocks or extension blocks, WebP chunks) walked at most (0.2-0.6 s, code review 15 L4): a file
that has more before its count is known (a GIF frame cut into one-byte sub-blocks) gives "at least" the frames counted
so far (-N), or None when that is one. A PNG's walk stops sooner, past `png.MAX_PNG_CHUNKS` chunks or
`png.MAX_PNG_ANCILLARY` ancillary ones (a PNG the decode refuses), with the same "at least"."""
MAX_IFDS = 4 * (FRAME_CAP + 1)
"""TIFF IFDs walked at most (pages, and the reduced-resolution images and masks between them, which are not pages)."""

PAGED = frozenset({"TIFF"})
"""Formats whose frames are pages, not an animation."""


def count_frames(data: bytes, fmt: str, cap: int = FRAME_CAP, chunks: png.Chunks | None = None) -> int | None:
    """The frames or pages of an image file of (sniffed) format `fmt`, at most `cap` + 1 (= more than `cap`), or -N
    (= at least N) when the walk ran out of steps (MAX_STEPS) after N; None when it has one, or its format has no
    such notion here (JPEG, BMP, HEIF), or its structure cannot be read (the decode says what is wrong with it; an
    image is never refused for its frame count). At most MAX_STEPS steps of constant work each. `chunks`: a PNG's
    chunk list when the caller walked it (`png.walk`, as the decode takes it); walked here when not."""
    counter = _COUNTERS.get(fmt)
    if counter is None:
        return None
    try:
        n, complete = _png_frames(chunks, cap + 1) if fmt == "PNG" and chunks is not None else counter(data, cap + 1)
    except Exception:  # noqa: BLE001 - any structure (a BigTIFF offset of 2**64-1: OverflowError) is "unknown"
        return None
    if n <= 1:
        return None
    return n if complete or n > cap else -n


def frames_phrase(fmt: str | None, frames: int | None, cap: int = FRAME_CAP) -> str | None:
    """What a person is told: "animated, 12 frames", "12 pages", "animated, more than 1000 frames", "animated, at
    least 6 frames" (-6: the count stopped at its step budget); None for one."""
    if not frames or -1 <= frames <= 1:
        return None
    n = f"at least {-frames}" if frames < 0 else f"more than {cap}" if frames > cap else str(frames)
    return f"{n} pages" if fmt in PAGED else f"animated, {n} frames"


def _gif(data: bytes, stop: int) -> tuple[int, bool]:
    """Image descriptors (0x2C) of a GIF: each frame's data sub-blocks are stepped over by their length bytes; and
    whether the walk ended before MAX_STEPS."""
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return 0, True
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
    return n, steps < MAX_STEPS


def _tiff(data: bytes, stop: int) -> tuple[int, bool]:
    """Pages of a TIFF or BigTIFF: the IFDs in its main chain (not SubIFDs), following each IFD's next offset and
    stopping at a loop, less those whose NewSubfileType (tag 254, the first entry when present: tags are sorted)
    says reduced-resolution image (bit 0) or transparency mask (bit 2), which some scanners and cameras chain
    between the pages (code review 15 L7)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        return 0, True
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count_fmt, entry, next_fmt = (order + "Q", 20, order + "Q") if big else (order + "H", 12, order + "I")
    head = 8 if big else 2
    seen: set[int] = set()
    pages = 0
    while offset and offset not in seen and pages < stop and len(seen) < MAX_IFDS:
        seen.add(offset)
        entries = struct.unpack_from(count_fmt, data, offset)[0]
        pages += not (entries and _subfile_type(data, order, big, offset + head) & 0b101)
        offset = struct.unpack_from(next_fmt, data, offset + head + entry * entries)[0]
    return pages, not (offset and offset not in seen and pages < stop)


def _subfile_type(data: bytes, order: str, big: bool, pos: int) -> int:
    """NewSubfileType of the IFD whose first entry is at `pos` (0 when that entry is another tag)."""
    tag, kind = struct.unpack_from(order + "HH", data, pos)
    if tag != 254:
        return 0
    value = pos + (12 if big else 8)
    return struct.unpack_from(order + ("H" if kind == 3 else "Q" if kind == 16 else "I"), data, value)[0]


def _webp(data: bytes, stop: int) -> tuple[int, bool]:
    """ANMF chunks of an animated WebP (RIFF chunks: a FourCC, a little-endian size, the payload padded to even)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return 0, True
    if data[12:16] != b"VP8X" or not data[20] & 0x02:  # no extended header with the animation flag: one frame
        return 1, True
    pos, n, size = 12, 0, len(data)
    for _ in range(MAX_STEPS):
        if pos + 8 > size or n >= stop:
            return n, True
        kind, length = _RIFF_CHUNK.unpack_from(data, pos)
        n += kind == b"ANMF"
        pos += 8 + length + (length & 1)
    return n, pos + 8 > size


def _png(data: bytes, stop: int) -> tuple[int, bool]:
    return _png_frames(png.walk(data), stop)


def _png_frames(chunks: png.Chunks | None, stop: int) -> tuple[int, bool]:
    """fcTL chunks of an APNG (one per frame; a PNG without an acTL chunk before its first IDAT is no animation),
    from its chunk list (`png.walk`), at most `stop`."""
    if chunks is None:
        return 0, True
    return min(chunks.frames, stop), chunks.frames >= stop or not chunks.over_limit


_RIFF_CHUNK = struct.Struct("<4sI")
_COUNTERS = {"GIF": _gif, "TIFF": _tiff, "WEBP": _webp, "PNG": _png}
