"""Content and perceptual hashes. pHash bands are what the enrich stage's dedupe and the index look up."""
from __future__ import annotations

import hashlib

import imagehash
import scipy.fftpack  # noqa: F401 - imagehash.phash imports it on first use, from a worker thread; see below
from PIL import Image

from domain.vision.decode import flatten, resized

# scipy is imported here, when the worker loads the stage, and never first from its threads: imagehash.phash
# importing scipy.fftpack in one thread while the geocoder imported scipy.spatial in another raised KeyError('scipy')
# (a dead letter) and left the photo without its place (seen on the first photos of a run; metadata.py imports
# scipy.spatial the same way)

HASH_EDGE = 256
"""Perceptual hashes are computed from the image scaled to this long edge (they downscale to 32/9 px anyway)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash_bands(phash_hex: str) -> list[str]:
    """The 64-bit pHash as 8 bands of 8 bits: ['0:ab', '1:12', ...]. Two images share a band when those 8 bits
    are equal; near duplicates (Hamming distance <= 6) share at least 2 of the 8 bands (pigeonhole)."""
    raw = bytes.fromhex(phash_hex)
    if len(raw) != 8:
        raise ValueError("pHash must be 64 bits (16 hex digits)")
    return [f"{i}:{b:02x}" for i, b in enumerate(raw)]


def perceptual(img: Image.Image) -> tuple[str, str]:
    """(pHash hex, dHash hex), 16 hex digits each, from an RGB(A) image of any size. Transparency is flattened on
    white first (as the thumbnail is): the colour under transparent pixels is arbitrary (often black), so a
    transparent PNG and its flattened copy would otherwise hash 30+ bits apart."""
    gray = flatten(resized(img, HASH_EDGE)).convert("L")
    return str(imagehash.phash(gray)), str(imagehash.dhash(gray))


def hamming(a_hex: str, b_hex: str) -> int:
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def hashes_record(data: bytes, img: Image.Image, sha256: str | None = None) -> dict:
    p, d = perceptual(img)
    return {"sha256": sha256 or sha256_hex(data), "phash": p, "dhash": d, "phash_bands": phash_bands(p)}
