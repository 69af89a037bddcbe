"""Dedupe before calling a model: an exact content-hash match, or a pHash within `dedupe_max_distance` bits, of
an already-enriched asset reuses that asset's enrichment and provenance and skips the provider.

Near-duplicate lookup uses LSH bands: the 64-bit pHash is cut into 8 bands of 8 bits ("{i}:{byte:02x}", as
preprocess writes them to Hashes.phash_bands). Two hashes within distance d <= 7 share at least 8 - d bands, so
a candidate query on "any band equal" finds every true match; the exact Hamming distance is then computed on
the candidates.

Implementations:
- ElasticsearchDedupeIndex: queries the assets read alias (<index.index>-read), so it works across partitions,
  replicas and restarts, with an in-process LRU in front (copies seen by this worker hit without a round trip,
  including copies enriched but not yet indexed).
- InMemoryDedupeIndex: the LRU alone (bench, tests, single-process runs).

Near rule: pHash distance <= max_distance, or pHash distance <= confirm_distance AND dHash distance <=
max_distance (two independent perceptual hashes agreeing; catches slight crops, which move pHash by 6-10 bits,
without accepting a lone pHash that far). Candidates beyond 7 bits are found only if they share a band, which is
likely but not guaranteed.

Variants are never merged (issue 15): a near match (not the same bytes) is reused only when
- the image being enriched is not flat or near-flat (a plain field or smooth gradient: pHash says nothing there),
  and neither image's pHash lacks structure (`structured`: a gradient found in the index matched a two-tone split);
- the dominant colours agree (a product in another colour is another product): when both images have chromatic
  colours among their top 4, the two sets must overlap;
- the OCR text agrees (a bottle with another label, a banner in another language, a photo with a caption);
- and, for exact and near matches alike, the enrichment was made by the same provider, model and prompt as the
  current plan (`current` identities, compared with consumers/enrich/plan.py `stale_reasons`).

Same text inputs (trial 18): the prompts (and the local provider) read each upload's own text besides the pixels:
embedded title/description/keywords/alt text, uploader notes, product context (`prompts.untrusted_items`), and for
rights the declared licence, credit and copyright. An enrichment made from the original's XMP title is no answer for
a copy without it. So a match (exact or near) is reused only when `input_digests` of both records agree on the text
the tagging and alt-text prompts read (OCR text aside: it is read from the pixels and compared above); otherwise the
copy is linked but enriched on its own (`DedupeMatch.refused` "inputs"). An exact copy whose rights text differs
(another declared licence) reuses the description and asks rights for itself, as a near copy always does
(`DedupeMatch.own_rights`). The store-backed index computes a candidate's digests from the record its document
keeps (`record.enriched.pre`); a document without one is not reused (its inputs are unknown).

Reuse goes only toward a copy that is not better (issue 15 item 4): a near match (or a clip) is reused only when
the asset being enriched does not rank before it in `domain.records.quality_rank` (most pixels, then most bytes,
then the smallest asset id: the order consumers/index/families.py picks the family's canonical member by). An
asset that outranks its match (the original arriving after its web copy) is still linked `duplicate_of` it (the
index sink then makes it the canonical member) but is enriched by the provider itself (`DedupeMatch.reusable`
False; DEDUPE result "larger"). So the canonical member's enrichment is its own whatever the arrival order, and a
re-run in another order gives it the same fields; a smaller copy gets its own answer when it comes first and the
better copy's when it comes after it. The same bytes (same sha256) are always reused, both ways. A record whose
size is unknown (no `image` in the record) reuses as before. Cost: the original pays when it arrives after a
smaller copy (bench/enrich.py --reuse).

Videos (issue 20): a video is compared with another video by its keyframes (`video.keyframes[].phash`, their
time offsets and text), not by its poster frame alone: a clip trimmed by a few seconds has another poster, and a
different clip with the same logo intro has the same one. Two videos are the same clip (kind "clip") when
- their durations differ by at most `dedupe_video_max_trim_s` (re-encoded: ~0; trimmed at either end: the cut);
- at least two keyframes match (pHash within `max_distance`, their OCR text agreeing), and the matching keyframes
  are at least `dedupe_video_min_share` of each clip's keyframes (flat ones, a fade or a black frame, aside);
- and, as for images, the enrichment was made by the current provider, model and prompt.
Candidates: in the LRU by any keyframe's pHash band; in the store, videos of a duration within the trim (the
document's `duration_s`), ranked by shared poster bands and exact keyframe hashes.

Copies enriched at the same moment: in one worker, the first to miss claims its hashes (`InFlight`) and the
others wait for its answer and reuse it, by the same rule: a copy that outranks the claim's asset does not wait,
it is linked to it and pays for its own answer (and claims its hashes in turn). On different partitions/workers (neither indexed yet) both miss and both
call the provider; the index sink still puts byte copies in one family (consumers/index/families.py), near copies
stay two families until one of them is enriched again. Dedupe saves money; it never loses or merges an asset.

Links: a copy is `duplicate_of` its match's family canonical member (the index's `family_id`), else the match; a
canonical member that finds its own copies (a rerun) links to nobody. The index sink rewrites every member's link
to the canonical member in any case (no loops, whatever the records say).
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import io
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from consumers.enrich.plan import stale_reasons
from consumers.enrich.prompts import untrusted_items
from domain.events import scoped_id
from domain.records import quality_rank
from streams import metrics
from streams.records import to_ms

log = logging.getLogger(__name__)

DEGRADED_REASON_PREFIX = "degraded: "
"""validate's review reason for a degraded part (consumers/validate/stage.py writes it; the index keeps reasons)."""

BANDS = 8


def phash_bands(phash_hex: str) -> list[str]:
    """'{i}:{byte:02x}' for the 8 bytes of a 64-bit pHash (big-endian), like preprocess."""
    value = int(phash_hex, 16)
    return [f"{i}:{(value >> (8 * (BANDS - 1 - i))) & 0xFF:02x}" for i in range(BANDS)]


def hamming(a_hex: str, b_hex: str) -> int:
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


PLAIN_GREYS = frozenset({"black", "charcoal", "gray", "grey", "silver", "white"})
"""names given only to untinted (or nearly untinted) colours: a palette of only these is black, grey and white"""
NEUTRAL_COLOURS = PLAIN_GREYS | {"cream", "beige", "ivory"}
TOP_COLOURS = 4
FLAT_DETAIL = 0.6
"""mean |Laplacian| of the blurred 64x64 grey thumbnail below which an image is flat or a smooth gradient"""


def near_flat(thumbnail: bytes | None) -> bool:
    """True for a plain field or smooth gradient (its perceptual hash is noise; any two would match)."""
    if not thumbnail:
        return False
    try:
        import cv2
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(thumbnail)) as im:
            im.draft("L", (128, 128))  # JPEG: decode at 1/4-1/8 scale (~1 ms; this runs on the enrich event loop)
            a = np.asarray(im.convert("L").resize((64, 64), Image.Resampling.BOX), dtype=np.float32)
    except Exception:  # noqa: BLE001 - undecodable thumbnail: let the hashes decide
        return False
    grey = cv2.GaussianBlur(a, (0, 0), 1.0)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[2:-2, 2:-2]).mean()) < FLAT_DETAIL


def structured(phash_hex: str | None) -> bool:
    """Whether a pHash says anything about the image's structure. pHash sets a bit per DCT coefficient above their
    median, so an image with structure gets about half of its 64 bits set (32 on every photo, drawing and logo of
    the quality set); a plain field, a smooth gradient or a two-tone split gets 1-3, and any two such images are a
    few bits apart. False for those (and for no hash): a near match needs both sides structured."""
    if not phash_hex:
        return False
    try:
        ones = int(phash_hex, 16).bit_count()
    except ValueError:
        return False
    return 16 <= ones <= 48


def colour_names(colors: Any) -> list[str]:
    """Palette names by share from Signals.colors (dicts) or the index document's `colors` (names)."""
    out = []
    for c in colors or []:
        name = c.get("name") if isinstance(c, dict) else c
        if isinstance(name, str) and name.strip():
            out.append(name.strip().lower())
    return out


def text_words(text: str | None) -> frozenset[str]:
    return frozenset(re.findall(r"[^\W\d_]{2,}|\d+", (text or "").lower()))


def variant_reason(colors_a: list[str], text_a: frozenset[str], colors_b: list[str],
                   text_b: frozenset[str]) -> str | None:
    """Why two perceptually similar images are different assets (None: they may be copies)."""
    chroma_a = {c for c in colors_a[:TOP_COLOURS] if c not in NEUTRAL_COLOURS}
    chroma_b = {c for c in colors_b[:TOP_COLOURS] if c not in NEUTRAL_COLOURS}
    # both colourful, in different colours
    if chroma_a and chroma_b and not (chroma_a & chroma_b):
        return "dominant colours differ"
    # one colourful, the other only black, charcoal, grey, silver and white: the black model of a red product, a
    # grey chair beside a wooden one (trial 29: merged, and the black one described "in red"). "cream", "beige" and
    # "ivory" also name tinted colours, so a side with them proves nothing
    for colourful, plain in ((chroma_a, colors_b), (chroma_b, colors_a)):
        if colourful and plain and set(plain) <= PLAIN_GREYS and not (colourful & set(plain)):
            return "dominant colours differ"
    if text_a != text_b:
        if not text_a or not text_b or len(text_a & text_b) / len(text_a | text_b) < 0.5:
            return "visible text differs"
    return None


DESCRIBING_TASKS = ("tagging", "alt_text")
"""the tasks whose answer a copy reuses (verify renders the tagging prompt); rights has its own digest"""


def _text_of(pre: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record the prompts' per-upload text comes from, the image's OCR text left out (it is read from
    the pixels: `variant_reason` compares it), product context in a fixed key order."""
    asset = pre.get("asset") or {}
    pc = asset.get("product_context")
    return {"asset": {"uploader_notes": asset.get("uploader_notes"), "declared_license": asset.get("declared_license"),
                      "product_context": dict(sorted(pc.items())) if isinstance(pc, dict) else None},
            "embedded": pre.get("embedded"), "exif": pre.get("exif")}


def _digest(items: list[tuple[str, Any]]) -> str:
    lines = sorted({json.dumps(item, ensure_ascii=False, default=str) for item in items})  # order and repeats aside
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def input_digests(pre: dict[str, Any]) -> tuple[str, str]:
    """(describing, rights): sha256 of the text the describing prompts (tagging, alt_text) and the rights prompt read
    from this upload (`prompts.untrusted_items`: embedded title/description/keywords/alt text, uploader notes, product
    context; for rights the declared licence, embedded creator/copyright/credit/usage terms/licence URL, the camera)
    — the same fields the local provider reads. Two records with equal digests give every provider the same text."""
    text = _text_of(pre)
    return (_digest([item for task in DESCRIBING_TASKS for item in untrusted_items(text, task)]),
            _digest(untrusted_items(text, "rights")))


@dataclass
class DedupeMatch:
    asset_id: str
    kind: str
    """'exact' (same content sha256) | 'near' (pHash within the distance) | 'clip' (a video's keyframes)"""
    distance: int
    enrichment: dict[str, Any]
    provenance: list[dict[str, Any]] = field(default_factory=list)
    family_id: str | None = None
    """the matched asset's family (its canonical member's document id) when the index knows it"""
    reusable: bool = True
    """False: the asset is linked to the match but enriched on its own (`enrichment` empty), see `refused`"""
    own_rights: bool = True
    """the copy asks the rights task for itself: always for a near copy or clip, and for the same bytes whose rights
    text differs (another declared licence); False: the same bytes with the same rights text reuse rights too"""
    refused: str | None = None
    """why a match is not reused: 'larger' (a near copy or clip that ranks after the asset being enriched: fewer
    pixels, or as many and fewer bytes, `domain.records.quality_rank`) | 'inputs' (its enrichment was made from other
    per-upload text: `input_digests`)"""

    @property
    def link(self) -> str:
        """Whom the copy is a duplicate of: the family's canonical member, else the matched asset."""
        return self.family_id or self.asset_id


@runtime_checkable
class DedupeIndex(Protocol):
    async def lookup(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None, *,
                     tenant: str | None = None, exclude_asset_id: str | None = None,
                     dhash_hex: str | None = None, look: Look | None = None) -> DedupeMatch | None: ...

    async def remember(self, asset_id: str, sha256: str | None, phash: str | None, bands: list[str] | None,
                       enrichment: dict[str, Any], provenance: list[dict[str, Any]], *,
                       tenant: str | None = None, dhash: str | None = None, look: Look | None = None) -> None: ...

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        """What people decided about the asset so far (its HumanReview in the index), or None."""
        ...

    async def indexed(self, asset_id: str) -> "Indexed | None":
        """The asset's indexed version and review (one lookup), or None when not known."""
        ...

    def forget(self, asset_id: str, tenant: str | None = None) -> None:
        """The asset was deleted: never offer it as a copy's original again."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Indexed:
    """What the index holds of an asset, as enrich needs it: the event version it was published at (the sink's
    external version) and the human review."""

    version: int | None
    review: dict[str, Any] | None = None


@dataclass
class _Entry:
    asset_id: str
    sha256: str | None
    phash: str | None
    bands: list[str]
    tenant: str | None
    enrichment: dict[str, Any]
    provenance: list[dict[str, Any]]
    dhash: str | None = None
    colors: list[str] = field(default_factory=list)
    text: frozenset[str] = frozenset()
    frames: tuple[Frame, ...] = ()
    duration_s: float | None = None
    family_id: str | None = None
    width: int = 0
    height: int = 0
    byte_size: int = 0
    inputs: str | None = None
    rights_inputs: str | None = None
    """`input_digests` of the record the enrichment was made from (None: unknown, never reused toward a Look that
    has digests)"""

    def match(self, kind: str, distance: int, refused: str | None = None, own_rights: bool = True) -> DedupeMatch:
        if refused is not None:
            return DedupeMatch(self.asset_id, kind, distance, {}, [], self.family_id, reusable=False,
                               refused=refused)
        return DedupeMatch(self.asset_id, kind, distance, copy.deepcopy(self.enrichment),
                           copy.deepcopy(self.provenance), self.family_id, own_rights=own_rights)


@dataclass(frozen=True)
class Frame:
    """A video keyframe as dedupe compares it."""
    offset_s: float
    phash: str
    text: frozenset[str] = frozenset()


def frames_of(keyframes: Any, *, skip_flat: bool = False) -> tuple[Frame, ...]:
    """Frames with a pHash from VideoKeyframe dicts (the record's, or the index document's: no thumbnails);
    `skip_flat`: leave out flat keyframes (a fade, a black frame: their pHash matches any other)."""
    return tuple(Frame(float(k.get("offset_s") or 0.0), k["phash"], text_words(k.get("ocr_text")))
                 for k in keyframes or [] if k.get("phash") and not (skip_flat and near_flat(k.get("thumbnail"))))


@dataclass(frozen=True)
class ClipRule:
    """When two videos are the same clip (see the module doc)."""
    max_trim_s: float = 6.0
    min_share: float = 0.5
    min_frames: int = 2

    def distance(self, a: tuple[Frame, ...], dur_a: float | None, b: tuple[Frame, ...], dur_b: float | None,
                 max_distance: int) -> int | None:
        """The largest pHash distance among the matched keyframes when `a` and `b` are the same clip, else None."""
        if not a or not b or dur_a is None or dur_b is None or abs(dur_a - dur_b) > self.max_trim_s:
            return None
        matched_a: set[int] = set()
        matched_b: set[int] = set()
        worst = 0
        for i, fa in enumerate(a):
            best = None
            for j, fb in enumerate(b):
                d = hamming(fa.phash, fb.phash)
                if d <= max_distance and _same_text(fa.text, fb.text) and (best is None or d < best[0]):
                    best = (d, j)
            if best is not None:
                matched_a.add(i)
                matched_b.add(best[1])
                worst = max(worst, best[0])
        if min(len(matched_a), len(matched_b)) < min(self.min_frames, len(a), len(b)) or \
                len(matched_a) < self.min_share * len(a) or len(matched_b) < self.min_share * len(b):
            return None
        return worst


def _same_text(a: frozenset[str], b: frozenset[str]) -> bool:
    return a == b or bool(a and b and len(a & b) / len(a | b) >= 0.5)


@dataclass(frozen=True)
class Look:
    """What tells variants apart, of the asset being enriched (see the module doc)."""
    colors: tuple[str, ...] = ()
    text: frozenset[str] = frozenset()
    flat: bool = False
    current: Any = None
    """the plan's task identities (EnrichPlan.identities()); None = any enrichment may be reused"""
    frames: tuple[Frame, ...] = ()
    """a video's keyframes (flat ones left out); () for an image"""
    duration_s: float | None = None
    width: int = 0
    height: int = 0
    byte_size: int = 0
    """the asset's size (PreprocessedAsset.image): a near match ranking after it is not reused (0: unknown)"""
    inputs: str | None = None
    rights_inputs: str | None = None
    """`input_digests` of the asset's per-upload text: a match made from other text is not reused (None: any)"""

    @classmethod
    def of(cls, pre: dict[str, Any], current: Any = None) -> "Look":
        """From a PreprocessedAsset dict (its thumbnail, colours and OCR text; a video's keyframes; its text inputs)."""
        ocr = pre.get("ocr") or {}
        video = pre.get("video") or {}
        image = pre.get("image") or {}
        inputs, rights_inputs = input_digests(pre)
        return cls(tuple(colour_names((pre.get("signals") or {}).get("colors"))),
                   text_words(None if ocr.get("skipped") else ocr.get("text")),
                   near_flat((pre.get("thumbnail") or {}).get("data")), current,
                   frames_of(video.get("keyframes"), skip_flat=True), video.get("duration_s"),
                   int(image.get("width") or 0), int(image.get("height") or 0), int(image.get("byte_size") or 0),
                   inputs, rights_inputs)

    def refuses(self, asset_id: str | None, e: "_Entry") -> str | None:
        """Why the candidate `e`, a copy of this asset, is not reused toward it (None: it is): 'inputs' when its
        enrichment was made from other per-upload text, 'larger' when this asset `outranks` it."""
        if self.other_inputs(e):
            return "inputs"
        return "larger" if self.outranks(asset_id, e) else None

    def other_inputs(self, e: "_Entry") -> bool:
        """`e`'s enrichment was made from other per-upload text than this asset's (`input_digests`)."""
        return self.inputs is not None and e.inputs != self.inputs

    def own_rights(self, e: "_Entry") -> bool:
        """The same bytes as `e`: ask rights for this asset unless the rights text is the same."""
        return self.rights_inputs is not None and e.rights_inputs != self.rights_inputs

    def outranks(self, asset_id: str | None, e: "_Entry") -> bool:
        """The asset being enriched (`asset_id`) is a better copy than the candidate `e` (it ranks first in
        `quality_rank`, the family's canonical order): it is enriched on its own, never given `e`'s answer.
        False when this asset's size is unknown (reuse as before)."""
        if not (self.width and self.height):
            return False
        return quality_rank({"width": self.width, "height": self.height, "byte_size": self.byte_size,
                             "asset_id": asset_id or ""}) < quality_rank(
            {"width": e.width, "height": e.height, "byte_size": e.byte_size, "asset_id": e.asset_id})

    def bands(self, bands: list[str] | None, phash_hex: str | None) -> list[str]:
        """The poster's pHash bands and, for a video, its keyframes' (candidates in the LRU)."""
        out = list(bands or (phash_bands(phash_hex) if phash_hex else []))
        for f in self.frames:
            out += [b for b in phash_bands(f.phash) if b not in out]
        return out


def _best(candidates: list[_Entry], sha256: str | None, phash_hex: str | None, max_distance: int,
          tenant: str | None, exclude: str | None, dhash_hex: str | None = None,
          confirm_distance: int | None = None, look: Look | None = None,
          clip: ClipRule | None = None) -> DedupeMatch | None:
    """The same bytes first; else the nearest reusable copy; else the nearest copy this asset outranks (a link,
    `reusable` False)."""
    confirm = max_distance if confirm_distance is None else max(confirm_distance, max_distance)
    clip = clip or ClipRule()
    best: DedupeMatch | None = None

    def better(refused: str | None, d: int) -> bool:
        return best is None or (refused is not None, d) < (not best.reusable, best.distance)

    for e in candidates:
        if e.asset_id == exclude or (tenant is not None and e.tenant is not None and e.tenant != tenant):
            continue
        if not e.enrichment:
            continue
        if look is not None and look.current is not None and stale_reasons(e.provenance, look.current):
            continue  # made by another provider, model or prompt: not an answer this plan would give
        if sha256 and e.sha256 == sha256:
            if look is None:
                return e.match("exact", 0, own_rights=False)
            if not look.other_inputs(e):
                return e.match("exact", 0, own_rights=look.own_rights(e))
            if better("inputs", 0):  # the same bytes sent with other notes or product context: linked, own answer
                best = e.match("exact", 0, "inputs")
            continue
        if e.frames or (look is not None and look.frames):  # a video: by its keyframes, never the poster alone
            d = clip.distance(look.frames, look.duration_s, e.frames, e.duration_s, max_distance) if look else None
            if d is not None and better(why := look.refuses(exclude, e), d):
                best = e.match("clip", d, why)
            continue
        if look is not None and (look.flat or variant_reason(list(look.colors), look.text, e.colors, e.text)):
            continue
        if phash_hex and e.phash and structured(phash_hex) and structured(e.phash):  # the match's own look counts too
            d = hamming(phash_hex, e.phash)
            ok = d <= max_distance or (d <= confirm and dhash_hex is not None and e.dhash is not None
                                       and hamming(dhash_hex, e.dhash) <= max_distance)
            if ok and better(why := None if look is None else look.refuses(exclude, e), d):
                best = e.match("near", d, why)
    return best


class InMemoryDedupeIndex:
    """LRU of recently enriched assets with a band index for near lookups. One process only."""

    def __init__(self, max_distance: int = 6, max_size: int = 10_000, confirm_distance: int | None = None,
                 clip: ClipRule | None = None):
        self.max_distance = max_distance
        self.confirm_distance = confirm_distance
        self.clip = clip or ClipRule()
        self.max_size = max_size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_sha: dict[str, set[str]] = {}
        self._by_band: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup_sync(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None, *,
                    tenant: str | None = None, exclude_asset_id: str | None = None,
                    dhash_hex: str | None = None, look: Look | None = None) -> DedupeMatch | None:
        ids: set[str] = set()
        if sha256:
            ids |= self._by_sha.get(sha256, set())
        for b in look.bands(bands, phash_hex) if look is not None else (
                bands or (phash_bands(phash_hex) if phash_hex else [])):
            ids |= self._by_band.get(b, set())
        cands = [self._entries[i] for i in ids if i in self._entries]
        m = _best(cands, sha256, phash_hex, self.max_distance, tenant, exclude_asset_id, dhash_hex,
                  self.confirm_distance, look, self.clip)
        if m is not None:
            self._entries.move_to_end(next(scoped_id(e.asset_id, e.tenant) for e in cands if e.asset_id == m.asset_id
                                           and (tenant is None or e.tenant is None or e.tenant == tenant)))
        return m

    async def lookup(self, sha256, phash_hex, bands, *, tenant=None, exclude_asset_id=None, dhash_hex=None,
                     look=None):
        return self.lookup_sync(sha256, phash_hex, bands, tenant=tenant, exclude_asset_id=exclude_asset_id,
                                dhash_hex=dhash_hex, look=look)

    def remember_sync(self, asset_id: str, sha256: str | None, phash: str | None, bands: list[str] | None,
                      enrichment: dict[str, Any], provenance: list[dict[str, Any]], *,
                      tenant: str | None = None, dhash: str | None = None, look: Look | None = None) -> None:
        key = scoped_id(asset_id, tenant)  # two tenants' asset of the same id are two entries
        self._forget(key)
        bands = look.bands(bands, phash) if look is not None else list(bands or (phash_bands(phash) if phash else []))
        self._entries[key] = _Entry(asset_id, sha256, phash, bands, tenant, copy.deepcopy(enrichment),
                                    copy.deepcopy(provenance), dhash,
                                    list(look.colors) if look else [], look.text if look else frozenset(),
                                    look.frames if look else (), look.duration_s if look else None, None,
                                    look.width if look else 0, look.height if look else 0,
                                    look.byte_size if look else 0, look.inputs if look else None,
                                    look.rights_inputs if look else None)
        if sha256:
            self._by_sha.setdefault(sha256, set()).add(key)
        for b in bands:
            self._by_band.setdefault(b, set()).add(key)
        while len(self._entries) > self.max_size:
            self._forget(next(iter(self._entries)))

    async def remember(self, asset_id, sha256, phash, bands, enrichment, provenance, *, tenant=None, dhash=None,
                       look=None):
        self.remember_sync(asset_id, sha256, phash, bands, enrichment, provenance, tenant=tenant, dhash=dhash,
                           look=look)

    def _forget(self, key: str) -> None:
        e = self._entries.pop(key, None)
        if e is None:
            return
        if e.sha256:
            s = self._by_sha.get(e.sha256)
            if s is not None:
                s.discard(key)
                if not s:
                    del self._by_sha[e.sha256]
        for b in e.bands:
            s = self._by_band.get(b)
            if s is not None:
                s.discard(key)
                if not s:
                    del self._by_band[b]

    def forget(self, asset_id: str, tenant: str | None = None) -> None:
        self._forget(scoped_id(asset_id, tenant))

    def forget_key(self, key: str) -> None:
        """Forget the entry stored under `key` (scoped_id(asset_id, tenant))."""
        self._forget(key)

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        return None  # reviews live in the index; the sink applies them in any case

    async def indexed(self, asset_id: str) -> Indexed | None:
        return None  # versions live in the index

    async def aclose(self) -> None:
        pass


class InFlight:
    """Copies enriched at the same moment in one worker (issue 15: "copies processed at the same time are still
    linked"): a record that misses the dedupe lookup claims its hashes until its answer is known; a copy that
    misses while such a claim is open (by the same rules: same bytes, or near without a variant reason) waits for
    that answer and reuses it instead of paying for its own. The check and the claim run without an await between
    them, so of two copies exactly one claims and the other waits (no cycle: a waiter holds no claim). A claim
    whose record fails or is degraded releases its waiters with nothing (each then asks on its own). The last
    `keep` answers stay: a copy whose store lookup was under way while its twin finished still finds it here."""

    def __init__(self, max_distance: int = 6, confirm_distance: int | None = None, clip: ClipRule | None = None,
                 keep: int = 1024):
        self._index = InMemoryDedupeIndex(max_distance, 1 << 30, confirm_distance, clip)
        self._answers: OrderedDict[str, asyncio.Future] = OrderedDict()
        self.keep = keep

    def __len__(self) -> int:
        return sum(not f.done() for f in self._answers.values())

    async def wait(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None, *,
                   tenant: str | None = None, exclude_asset_id: str | None = None, dhash_hex: str | None = None,
                   look: Look | None = None) -> DedupeMatch | None:
        """The answer of a copy in flight or just finished (None: there is none, or it ended without a
        reusable answer)."""
        if look is not None:  # the answer is being made by the current plan: no provenance to compare yet
            look = dataclasses.replace(look, current=None)
        m = self._index.lookup_sync(sha256, phash_hex, bands, tenant=tenant, exclude_asset_id=exclude_asset_id,
                                    dhash_hex=dhash_hex, look=look)
        if m is None or not m.reusable:  # a smaller copy in flight: linked to, never waited for
            return m
        key = next(k for k, e in self._index._entries.items() if e.asset_id == m.asset_id
                   and (tenant is None or e.tenant is None or e.tenant == tenant))
        answer = await asyncio.shield(self._answers[key])
        if answer is None:
            return None
        return DedupeMatch(m.asset_id, m.kind, m.distance, copy.deepcopy(answer[0]), copy.deepcopy(answer[1]),
                           own_rights=m.own_rights)

    def claim(self, asset_id: str, sha256: str | None, phash: str | None, bands: list[str] | None, *,
              tenant: str | None = None, dhash: str | None = None, look: Look | None = None) -> str | None:
        """Open a claim (None when this asset already holds one: an older version in flight)."""
        key = scoped_id(asset_id, tenant)
        if key in self._answers and not self._answers[key].done():
            return None
        self._answers.pop(key, None)
        self._answers[key] = asyncio.get_running_loop().create_future()
        self._index.remember_sync(asset_id, sha256, phash, bands, {"in_flight": True}, [], tenant=tenant,
                                  dhash=dhash, look=look)
        return key

    def forget(self, asset_id: str, tenant: str | None = None) -> None:
        """A deleted asset: its kept answer is no copy's any more (a claim still open keeps its waiters)."""
        key = scoped_id(asset_id, tenant)
        future = self._answers.get(key)
        if future is not None and future.done():
            self._answers.pop(key)
            self._index.forget_key(key)

    def resolve(self, key: str | None, enrichment: dict[str, Any] | None = None,
                provenance: list[dict[str, Any]] | None = None) -> None:
        """Close the claim: waiters get (enrichment, provenance), or nothing when enrichment is None."""
        if key is None or key not in self._answers:
            return
        future = self._answers[key]
        if not future.done():
            future.set_result(None if enrichment is None else (enrichment, provenance or []))
        if enrichment is None:
            self._answers.pop(key)
            self._index.forget_key(key)
        done = [k for k, f in self._answers.items() if f.done()]
        for k in done[:max(0, len(done) - self.keep)]:
            self._answers.pop(k)
            self._index.forget_key(k)


def clip_rule(enrich: Any) -> ClipRule:
    """The clip rule from EnrichSettings."""
    return ClipRule(enrich.dedupe_video_max_trim_s, enrich.dedupe_video_min_share)


def _provenance_from_doc(p: dict[str, Any]) -> dict[str, Any]:
    """The index stores provenance with ISO timestamps and None fields dropped; back to the Avro shape."""
    ts = p.get("timestamp")
    if isinstance(ts, str):
        import datetime as dt
        ts = to_ms(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")))
    return {"task": p.get("task", ""), "provider": p.get("provider", ""), "model": p.get("model", ""),
            "model_version": p.get("model_version"), "prompt_id": p.get("prompt_id", ""),
            "prompt_version": p.get("prompt_version", ""), "prompt_hash": p.get("prompt_hash", ""),
            "request_id": p.get("request_id"), "timestamp": int(ts or 0),
            "input_tokens": int(p.get("input_tokens") or 0), "output_tokens": int(p.get("output_tokens") or 0),
            "latency_ms": float(p.get("latency_ms") or 0.0), "cost_usd": float(p.get("cost_usd") or 0.0),
            "reused_from": p.get("reused_from"), "degraded": p.get("degraded")}


RECORD_TEXT = tuple(f"record.enriched.pre.{f}" for f in (
    "asset.uploader_notes", "asset.declared_license", "asset.product_context", "embedded", "exif"))
"""what a candidate's `input_digests` are computed from: the validated record its index document keeps (stored, not
indexed), as the enrich stage saw it"""


def _record_digests(src: dict[str, Any]) -> tuple[str | None, str | None]:
    """`input_digests` of an index document's own record; (None, None) for a document without one."""
    pre = ((src.get("record") or {}).get("enriched") or {}).get("pre")
    return input_digests(pre) if isinstance(pre, dict) else (None, None)


class ElasticsearchDedupeIndex:
    """Looks up already-indexed assets in <index>-read; an InMemoryDedupeIndex in front.

    `client` is a sync elasticsearch.Elasticsearch (default: domain.store.client.make_client(settings), so
    auth/TLS/server_mode follow settings.index); calls run in a thread so the event loop never blocks. If the
    store is unreachable, lookups degrade to a miss (the provider is called; DEDUPE result="error") rather
    than stalling enrichment; searches time out after `timeout_s`, and after a failure the store is not asked
    again for `down_backoff_s` (the LRU still answers).
    """

    def __init__(self, settings: Any, client: Any = None, *, candidates: int = 50, timeout_s: float = 2.0,
                 down_backoff_s: float = 30.0):
        enrich = settings.enrich
        self.max_distance = enrich.dedupe_max_distance
        self.confirm_distance = enrich.dedupe_confirm_distance
        self.alias = f"{settings.index.index}-read"
        self.candidates = candidates
        self.clip = clip_rule(enrich)
        self.lru = InMemoryDedupeIndex(enrich.dedupe_max_distance, enrich.dedupe_lru_size,
                                       enrich.dedupe_confirm_distance, self.clip)
        if client is None:
            from domain.store.client import make_client
            client = make_client(settings)
        self.client = client
        self.timeout_s = timeout_s
        self.down_backoff_s = down_backoff_s
        self._down_until = 0.0

    def forget(self, asset_id: str, tenant: str | None = None) -> None:
        """A deleted asset: this worker's LRU no longer offers it (the store stops on its own)."""
        self.lru.forget(asset_id, tenant)

    def _query(self, sha256: str | None, phash_hex: str | None, bands: list[str] | None,
               exclude_asset_id: str | None, look: Look | None = None) -> dict[str, Any]:
        should: list[dict[str, Any]] = []
        if look is not None and look.frames and look.duration_s is not None:
            # a video: the videos as long as it give or take the trim (the clip rule decides); exact keyframe
            # hashes (a re-encode often keeps some) rank first among them
            should.append({"bool": {"filter": [
                {"term": {"media_type": "video"}},
                {"range": {"duration_s": {"gte": look.duration_s - self.clip.max_trim_s,
                                          "lte": look.duration_s + self.clip.max_trim_s}}}],
                "should": [{"terms": {"video.keyframes.phash": [f.phash for f in look.frames]}}]}})
        if sha256:
            should.append({"term": {"hashes.sha256": {"value": sha256, "boost": 100.0}}})
        if phash_hex:
            # one clause per band so candidates sharing more bands score higher
            should += [{"term": {"hashes.phash_bands": b}} for b in (bands or phash_bands(phash_hex))]
        # an asset validate sent to review as degraded (a part timed out or failed) is never reused (issue 21)
        q: dict[str, Any] = {"bool": {"should": should, "minimum_should_match": 1,
                                      "must_not": [{"prefix": {"reasons": DEGRADED_REASON_PREFIX}}]}}
        if exclude_asset_id:
            q["bool"]["must_not"].append({"ids": {"values": [exclude_asset_id]}})
        return q

    def _search(self, sha256, phash_hex, bands, tenant, exclude_asset_id, dhash_hex=None,
                look=None) -> DedupeMatch | None:
        from elasticsearch import NotFoundError
        try:
            res = self.client.options(request_timeout=self.timeout_s).search(
                index=self.alias, query=self._query(sha256, phash_hex, bands, exclude_asset_id, look),
                size=self.candidates,
                source=["asset_id", "tenant", "hashes", "enrichment", "provenance", "colors", "ocr_text",
                        "duration_s", "video.keyframes", "family_id", "width", "height", "byte_size",
                        *RECORD_TEXT])
        except NotFoundError:  # no index yet: nothing enriched before
            return None
        cands = []
        for hit in res.get("hits", {}).get("hits", []):
            src = hit.get("_source") or {}
            hashes = src.get("hashes") or {}
            cands.append(_Entry(src.get("asset_id") or hit.get("_id"), hashes.get("sha256"), hashes.get("phash"),
                                list(hashes.get("phash_bands") or []), src.get("tenant"),
                                src.get("enrichment") or {},
                                [_provenance_from_doc(p) for p in src.get("provenance") or []],
                                hashes.get("dhash"), colour_names(src.get("colors")), text_words(src.get("ocr_text")),
                                frames_of((src.get("video") or {}).get("keyframes")), src.get("duration_s"),
                                src.get("family_id"), int(src.get("width") or 0), int(src.get("height") or 0),
                                int(src.get("byte_size") or 0), *_record_digests(src)))
        return _best(cands, sha256, phash_hex, self.max_distance, tenant, exclude_asset_id, dhash_hex,
                     self.confirm_distance, look, self.clip)

    async def lookup(self, sha256, phash_hex, bands, *, tenant=None, exclude_asset_id=None, dhash_hex=None,
                     look=None):
        m = self.lru.lookup_sync(sha256, phash_hex, bands, tenant=tenant, exclude_asset_id=exclude_asset_id,
                                 dhash_hex=dhash_hex, look=look)
        if m is not None and m.kind == "exact" and m.reusable:
            return m
        if time.monotonic() < self._down_until:  # store recently unreachable: LRU only, no waiting
            if m is None:
                metrics.DEDUPE.labels("error").inc()
            return m
        try:
            remote = await asyncio.to_thread(self._search, sha256, phash_hex, bands, tenant, exclude_asset_id,
                                             dhash_hex, look)
        except Exception as e:  # store down: pay for a call rather than stall (see class doc)
            self._down_until = time.monotonic() + self.down_backoff_s
            metrics.DEDUPE.labels("error").inc()
            log.warning("dedupe lookup failed (%s); store lookups off for %.0f s, calling the model instead",
                        type(e).__name__, self.down_backoff_s)
            return m
        # a reusable copy (the same bytes first), else the nearest link (the LRU's on a tie)
        return min((x for x in (m, remote) if x is not None), default=None,
                   key=lambda x: (not x.reusable, x.kind != "exact", x.distance))

    def _get_indexed(self, asset_id: str) -> Indexed | None:
        from elasticsearch import NotFoundError
        try:
            res = self.client.options(request_timeout=self.timeout_s).search(
                index=self.alias, query={"ids": {"values": [asset_id]}}, size=1, source=["review", "version"])
        except NotFoundError:
            return None
        hits = res.get("hits", {}).get("hits", [])
        if not hits:
            return None
        src = hits[0].get("_source") or {}
        version = src.get("version")
        return Indexed(int(version) if version is not None else None, src.get("review"))

    async def indexed(self, asset_id: str) -> Indexed | None:
        """The asset's indexed version and review in one lookup. Never stalls enrichment: with the store down the
        record goes on without them (metric result="error"): the index sink, which applies every review again
        before it writes, keeps the person's values, and external versioning still refuses a stale event."""
        if time.monotonic() < self._down_until:
            metrics.REVIEW_LOOKUPS.labels("skipped").inc()
            return None
        try:
            found = await asyncio.to_thread(self._get_indexed, asset_id)
        except Exception as e:  # noqa: BLE001
            self._down_until = time.monotonic() + self.down_backoff_s
            metrics.REVIEW_LOOKUPS.labels("error").inc()
            log.warning("review lookup failed (%s); the index sink still applies reviews", type(e).__name__)
            return None
        metrics.REVIEW_LOOKUPS.labels("found" if found is not None and found.review else "none").inc()
        return found

    async def review(self, asset_id: str) -> dict[str, Any] | None:
        found = await self.indexed(asset_id)
        return found.review if found is not None else None

    async def remember(self, asset_id, sha256, phash, bands, enrichment, provenance, *, tenant=None, dhash=None,
                       look=None):
        # the index sink writes the document after validation; until then the LRU covers this worker
        self.lru.remember_sync(asset_id, sha256, phash, bands, enrichment, provenance, tenant=tenant, dhash=dhash,
                               look=look)

    async def aclose(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
