"""A PNG's chunk list, walked once per image (headers only: a length, a type; nothing is inflated): what the decode's
bound needs (how many chunks, how many ancillary ones), what its metadata strip needs (where the text and ICC chunks
are) and what the frame count needs (an APNG's frames), from one pass. Pure Python, no Pillow: `domain/vision/decode.py`
and `domain/vision/frames.py` both read it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK = struct.Struct(">I4s")
"""A chunk's head: its data length and its type (the data and a CRC follow)."""

MAX_PNG_CHUNKS = 100_000
"""Chunks a PNG may have; more is refused (`corrupt_image`) before Pillow walks them (5-10 us a chunk there, and it
keeps every private chunk: a 48 MB file of 4 million empty chunks took a minute and +426 MB, code review 15 P1). A
50 MiB PNG of libpng's 8 KiB IDAT chunks has about 6,400."""
MAX_PNG_ANCILLARY = 10_000
"""Ancillary chunks (text, time, physical size, private ones: a lower-case first letter) a PNG may have; more is
refused as `metadata_too_large`. A normal PNG has a few dozen."""

TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
ICC_CHUNK = frozenset({b"iCCP"})
METADATA_CHUNKS = TEXT_CHUNKS | ICC_CHUNK
APNG_FRAME_CHUNKS = frozenset((b"acTL", b"fcTL", b"fdAT"))
"""An animated PNG's frames: pixels, not metadata (code review 15b L6: an APNG of many frames was refused with
advice to strip its metadata); MAX_PNG_CHUNKS still bounds them."""

Span = tuple[int, int, bytes]
"""(start, end, type) of a chunk in the file: its length field at `start`, the byte after its CRC at `end`."""


@dataclass(frozen=True, slots=True)
class Chunks:
    """What one walk over a PNG's chunk list found."""
    metadata: tuple[Span, ...]
    """The text and ICC chunks (METADATA_CHUNKS): at most MAX_PNG_ANCILLARY spans, not an object per chunk (code
    review 15 H1)."""
    chunks: int
    ancillary: int
    """Ancillary chunks, an APNG's frame chunks not counted."""
    frames: int
    """fcTL chunks (one per frame) of an APNG: one whose acTL chunk comes before its first IDAT; 0 for a still PNG."""

    @property
    def over_limit(self) -> bool:
        """The walk stopped as it passed MAX_PNG_CHUNKS or MAX_PNG_ANCILLARY (the counts are then that far)."""
        return self.chunks > MAX_PNG_CHUNKS or self.ancillary > MAX_PNG_ANCILLARY

    def without(self, drop: frozenset[bytes]) -> Chunks:
        """The chunk list of the same file with the metadata chunks of the types in `drop` left out, as
        `domain.vision.decode.without_png_chunks` leaves them out (their spans shifted, counts less them)."""
        kept: list[Span] = []
        cut = 0
        for start, end, kind in self.metadata:
            if kind in drop:
                cut += end - start
            else:
                kept.append((start - cut, end - cut, kind))
        gone = len(self.metadata) - len(kept)
        return Chunks(tuple(kept), self.chunks - gone, self.ancillary - gone, self.frames)


def walk(data: bytes) -> Chunks | None:
    """The chunk list of the PNG `data` (None when it does not start with the PNG signature), walked up to IEND, or up
    to a chunk that does not parse (the rest is left to Pillow). Bounded: the walk stops as soon as it passes
    MAX_PNG_CHUNKS chunks or MAX_PNG_ANCILLARY ancillary ones (`Chunks.over_limit`)."""
    if not data.startswith(SIGNATURE):
        return None
    spans: list[Span] = []
    unpack = CHUNK.unpack_from
    pos, n, chunks, ancillary, fctl, animated, pixels = len(SIGNATURE), len(data), 0, 0, 0, False, False
    while pos + 12 <= n:
        length, kind = unpack(data, pos)
        end = pos + 12 + length
        if end > n:
            break
        chunks += 1
        if kind[0] & 0x20:  # ancillary (lower-case first letter), an APNG's frame chunks among them
            if kind in APNG_FRAME_CHUNKS:
                if kind == b"fcTL":
                    fctl += 1
                elif kind == b"acTL" and not pixels:
                    animated = True
            else:
                ancillary += 1
                if kind in METADATA_CHUNKS:
                    spans.append((pos, end, kind))
                if ancillary > MAX_PNG_ANCILLARY:
                    break
        elif kind == b"IDAT":
            pixels = True
        elif kind == b"IEND":
            break
        if chunks > MAX_PNG_CHUNKS:
            break
        pos = end
    return Chunks(tuple(spans), chunks, ancillary, fctl if animated else 0)
