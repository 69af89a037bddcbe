"""Output mappings of a ValidatedAsset: schema.org JSON-LD and an XMP packet (IPTC Photo Metadata).

    to_jsonld(validated) -> dict     json.dumps-able schema.org ImageObject
    jsonld_text(doc)     -> str      its JSON text, safe inside <script type="application/ld+json">
    to_xmp(validated)    -> str      a well-formed <x:xmpmeta> packet; .encode("utf-8") for Pillow's `xmp=`

Used by the index sink, the CLI (.jsonld and .xmp sidecar per image) and write-back. Field choice follows the
validated record (human > embedded > model already resolved there); creator / copyright come from the asset's
human fields, then its embedded XMP. Text is escaped by the serializers (json / ElementTree), and characters
XML 1.0 cannot carry are removed.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from domain.capturetime import capture_time
from domain.records import to_plain
from domain.review import has_decision
from domain.sources import sniffed_media_type
from domain.xmp import NS, XML_LANG, q, xmp_root

JSONLD_NS = "https://assetstream.io/ns/jsonld/1.0/"
_URL = re.compile(r"^https?://\S+$", re.I)
_XML_BAD = re.compile(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --- shared helpers ---------------------------------------------------------------------------------------

def _parts(v: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    enriched = v.get("enriched") or {}
    pre = enriched.get("pre") or {}
    asset = pre.get("asset") or {}
    return enriched, pre, asset, (asset.get("human_fields") or {})


def _first(*values: Any) -> Any:
    for val in values:
        if val is not None and (not isinstance(val, str) or val.strip()):
            return val
    return None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _exif_time(text: str | None) -> str | None:
    """The capture time as ISO 8601 with its time-zone offset when it has one: preprocess's
    '2024-06-21T21:34:10+02:00' (EXIF DateTimeOriginal + OffsetTimeOriginal, or XMP/IPTC) as it is, EXIF's own
    '2026:11:18 14:02:11' -> '2026-11-18T14:02:11' (a local time: no offset is invented); None when it is not a
    plausible capture time (domain.capturetime)."""
    if not text:
        return None
    m = re.match(r"^(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?$",
                 text.strip())
    if not m:
        return None
    # a record indexed before preprocess checked dates may hold '2026-13-45T25:61:61' or '9999-12-31T23:59:59+99:00':
    # only a valid xsd:dateTime (and a plausible capture time) is published
    return capture_time(m.group(1), m.group(2), m.group(3), *m.group(4).split(":"), m.group(6),
                        fraction=m.group(5) or "")


def creator_of(v: dict[str, Any]) -> str | None:
    _, pre, _, human = _parts(v)
    return _first(human.get("creator"), (pre.get("embedded") or {}).get("creator"))


def copyright_of(v: dict[str, Any]) -> str | None:
    _, pre, _, human = _parts(v)
    return _first(human.get("copyright"), (pre.get("embedded") or {}).get("copyright"))


RIGHTS_FIELD_SOURCES = ("human", "embedded")
"""Whose text a standard rights field (xmpRights:UsageTerms, photoshop:Credit / IIM Credit, schema.org license and
creditText) may carry: the file's own or a person's. A model's paraphrase ("Restricted: all rights reserved
(...)", "CC BY-NC 2.0 (from copyright notice)") or a rule's ("Photo: Jane Doe") goes to our own namespace only,
approved or not: an approval confirms the flag, it does not make the words the rights holder's."""


def rights_text(v: dict[str, Any], name: str) -> str | None:
    """The record's `licensing` / `credit_text` when it may go into a standard rights field (see
    RIGHTS_FIELD_SOURCES), else None. A licence that is a URL is no usage terms: it is the WebStatement."""
    value = v.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    if (v.get("field_sources") or {}).get(name) not in RIGHTS_FIELD_SOURCES:
        return None
    if name == "licensing" and _URL.match(value.strip()):
        return None
    return value


def suggested_rights_text(v: dict[str, Any], name: str) -> str | None:
    """The `licensing` / `credit_text` that may not go into a standard field (rights_text), for our namespace."""
    value = v.get(name)
    if not isinstance(value, str) or not value.strip() or rights_text(v, name) is not None:
        return None
    return None if name == "licensing" and _URL.match(value.strip()) else value


def creators_of(v: dict[str, Any]) -> list[str]:
    """Several creators stay several: preprocess joins a file's dc:creator Seq / IIM By-lines with '; '."""
    creator = creator_of(v)
    return [c.strip() for c in creator.split("; ") if c.strip()] if creator else []


def rights_marked_of(v: dict[str, Any]) -> str | None:
    """xmpRights:Marked from the file's evidence only, never from a model or our flag: what the file says; else
    "True" when the file or a person gives a copyright notice; else nothing (False = public domain is only ever
    the file's own word)."""
    _, pre, _, _ = _parts(v)
    marked = (pre.get("embedded") or {}).get("rights_marked")
    if marked is not None:
        return "True" if marked else "False"
    return "True" if copyright_of(v) else None


def license_url_of(v: dict[str, Any]) -> str | None:
    _, pre, asset, _ = _parts(v)
    for cand in (asset.get("declared_license"), (pre.get("embedded") or {}).get("license_url"), v.get("licensing")):
        if cand and _URL.match(cand.strip()):
            return cand.strip()
    return None


def _prune(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _prune(val) for k, val in node.items()}
        return {k: val for k, val in out.items() if val not in (None, "", [], {})}
    if isinstance(node, list):
        return [x for x in (_prune(i) for i in node) if x not in (None, "", [], {})]
    return node


# --- JSON-LD ----------------------------------------------------------------------------------------------

def iso_duration(seconds: float | None) -> str | None:
    """ISO 8601 duration: 6.0 -> 'PT6S', 95.5 -> 'PT1M35.5S', 3725 -> 'PT1H2M5S'."""
    if seconds is None or seconds < 0:
        return None
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec = rest / 1000
    out = "PT" + (f"{h}H" if h else "") + (f"{m}M" if m else "")
    if sec or out == "PT":
        out += f"{sec:g}S"
    return out


def _video_terms(pre: dict[str, Any], asset: dict[str, Any], thumbnail_url: str | None) -> dict[str, Any]:
    """What a schema.org VideoObject adds: duration (ISO 8601), thumbnailUrl (the poster frame), encodingFormat
    from the sniffed container (a declared content type is only a guess from the file name), the frame size, each
    keyframe's time and text (our namespace), and the transcript (empty until a speech-to-text stage)."""
    video = pre.get("video") or {}
    thumb = _first(thumbnail_url, (asset.get("attributes") or {}).get("thumbnail_url"))
    return {"@type": "VideoObject", "duration": iso_duration(video.get("duration_s")),
            "thumbnailUrl": thumb, "encodingFormat": sniffed_media_type(pre),
            "videoFrameSize": f"{(pre.get('image') or {}).get('width')}x{(pre.get('image') or {}).get('height')}",
            "transcript": video.get("transcript"),
            "assetstream:keyframes": [{"@type": "Clip", "startOffset": k.get("offset_s"),
                                       "text": k.get("ocr_text")} for k in video.get("keyframes") or []]}


def _family_terms(v: dict[str, Any]) -> dict[str, Any]:
    """The duplicate family as the index sets it (domain.records.with_family: the record's `family`), else
    nothing: enrich's own link depends on arrival order, so it is not published as the asset's family."""
    family = v.get("family")
    if not family or not family.get("family_id"):
        return {}
    return {"duplicateOf": (v.get("enriched") or {}).get("duplicate_of"), "familyId": family["family_id"],
            "familySize": family.get("family_size"), "familyCanonical": family.get("family_canonical")}


def to_jsonld(validated: dict[str, Any], thumbnail_url: str | None = None) -> dict[str, Any]:
    """schema.org ImageObject for one validated asset, VideoObject for a video (empty values left out).
    `thumbnail_url`: where the video's poster frame is published (else the event's `thumbnail_url` attribute)."""
    v = validated
    enriched, pre, asset, _ = _parts(v)
    image = pre.get("image") or {}
    exif = pre.get("exif") or {}
    place = pre.get("place") or {}
    hashes = pre.get("hashes") or {}
    asset_id = asset.get("asset_id")
    sha = hashes.get("sha256") or image.get("content_sha256")
    licence_url = license_url_of(v)
    terms = rights_text(v, "licensing")
    licence: Any = licence_url or ({"@type": "CreativeWork", "name": terms} if terms else None)
    content_location = None
    if exif.get("gps_lat") is not None and exif.get("gps_lon") is not None or place:
        content_location = {
            "@type": "Place",
            "name": ", ".join(x for x in (place.get("city"), place.get("region"), place.get("country")) if x) or None,
            "address": {"@type": "PostalAddress", "addressLocality": place.get("city"),
                        "addressRegion": place.get("region"),
                        "addressCountry": place.get("country_code") or place.get("country")} if place else None,
            "geo": {"@type": "GeoCoordinates", "latitude": exif.get("gps_lat"), "longitude": exif.get("gps_lon"),
                    "elevation": exif.get("gps_alt")} if exif.get("gps_lat") is not None else None,
        }
    creators = creators_of(v)
    review = v.get("review") or {}
    doc = {
        "@context": ["https://schema.org", {"assetstream": JSONLD_NS}],
        "@type": "ImageObject",
        "@id": f"urn:assetstream:asset:{asset_id}",
        "identifier": [
            {"@type": "PropertyValue", "propertyID": "assetstream:asset_id", "value": asset_id},
            {"@type": "PropertyValue", "propertyID": "sha256", "value": sha} if sha else None,
        ],
        "contentUrl": asset.get("source_uri"),
        "name": v.get("title"),
        "caption": v.get("caption"),
        "description": _first(v.get("summary"), v.get("caption")),
        "accessibilitySummary": v.get("alt_text") if not v.get("decorative") else None,
        "keywords": [{"@type": "DefinedTerm", "name": t["label"], "termCode": t["tag"],
                      "inDefinedTermSet": f"urn:assetstream:taxonomy:{v.get('taxonomy_version')}"}
                     for t in v.get("tags") or []],
        "creator": [{"@type": "Person", "name": c} for c in creators] if len(creators) > 1 else
                   ({"@type": "Person", "name": creators[0]} if creators else None),
        "creditText": rights_text(v, "credit_text"),
        "copyrightNotice": copyright_of(v),
        "license": licence,
        "acquireLicensePage": (asset.get("attributes") or {}).get("acquire_license_page"),
        "width": {"@type": "QuantitativeValue", "value": image["width"], "unitText": "px"} if image else None,
        "height": {"@type": "QuantitativeValue", "value": image["height"], "unitText": "px"} if image else None,
        # what the bytes are (sniffed), never the type an uploader claimed or the name's extension suggests
        "encodingFormat": sniffed_media_type(pre),
        "contentSize": f"{image['byte_size']} B" if image.get("byte_size") else None,
        "sha256": sha,
        "contentLocation": content_location,
        "dateCreated": _exif_time(exif.get("capture_time")),
        "uploadDate": _iso(asset.get("event_time")),
        "dateModified": _iso((v.get("stamp") or {}).get("at")),
        "text": v.get("visible_text"),
        # schema.org's own terms where it has them: the review status is the work's status in its lifecycle
        "creativeWorkStatus": v.get("status"),
        "accessibilityFeature": ["alternativeText"] if v.get("alt_text") and not v.get("decorative") else None,
        # the rest in our own namespace (declared in @context): schema.org defines no additionalProperty on
        # ImageObject, so validators and search engines would flag it
        "assetstream:decorative": bool(v.get("decorative")),
        "assetstream:usageFlag": v.get("usage_flag"),
        # a model's or rule's rights words: ours, never in schema.org's license / creditText (rights_text)
        "assetstream:suggestedLicensing": suggested_rights_text(v, "licensing"),
        "assetstream:suggestedCreditText": suggested_rights_text(v, "credit_text"),
        "assetstream:taxonomyVersion": v.get("taxonomy_version"),
        "assetstream:fieldSources": json.dumps(v.get("field_sources") or {}, sort_keys=True),
        "assetstream:reviewedBy": review.get("editor"),
        "assetstream:reviewedAt": _iso(review.get("decided_at")),
        # the whole decision (per field: action, value, editor, time, source; the verdict), so a later
        # `assetstream run` over the same --out re-applies it instead of overwriting it (review_of_jsonld)
        "assetstream:review": review_json(review),
    }
    doc.update({f"assetstream:{k}": x for k, x in _family_terms(v).items()})
    if pre.get("media_type") == "video" and pre.get("video"):
        doc.update(_video_terms(pre, asset, thumbnail_url))
    doc = _prune(doc)
    # a PropertyValue without a value says nothing
    doc["identifier"] = [p for p in doc.get("identifier", []) if "value" in p]
    doc["assetstream:decorative"] = bool(v.get("decorative"))  # false is a fact too
    return _prune(doc)


_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def jsonld_text(doc: dict[str, Any], indent: int | None = 2) -> str:
    """The JSON text of a JSON-LD document as every JSON-LD file the project writes has it: `<`, `>`, `&` (and
    U+2028/2029) as \\u escapes, so the text pasted into an HTML `<script type="application/ld+json">` block
    cannot end it (`</script>` in a title) or open a comment; still JSON, parsing to the same values. (These
    characters occur only inside strings in JSON text, where an escape means the same character.)"""
    return json.dumps(doc, indent=indent, default=str).translate(_SCRIPT_SAFE)


def review_json(review: dict[str, Any] | None) -> str | None:
    """A HumanReview as the JSON-LD's `assetstream:review` (times as epoch ms), or None when nobody decided. The
    verdict keeps the SHA-256 of the image it was given on: a re-run over other bytes sends the asset back to
    review rather than dating the verdict to them."""
    if not has_decision(review):
        return None
    keep = {k: review.get(k) for k in ("status", "editor", "decided_at", "fields", "content_sha256")}
    return json.dumps(to_plain(keep), sort_keys=True)


def review_of_jsonld(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The HumanReview a JSON-LD sidecar carries (`assetstream:review`), or None. ValueError when the term is
    there but is not a review (a hand-edited file)."""
    text = doc.get("assetstream:review")
    if text is None:
        return None
    review = json.loads(text) if isinstance(text, str) else text
    if not isinstance(review, dict) or not isinstance(review.get("fields", []), list):
        raise ValueError("assetstream:review is not a review record")
    return review if has_decision(review) else None


# --- XMP --------------------------------------------------------------------------------------------------

def _clean(text: Any) -> str:
    return _XML_BAD.sub("", str(text))


_q = q


def _lang_alt(parent: ET.Element, prefix: str, name: str, text: str | None) -> None:
    if text is None:
        return
    prop = ET.SubElement(parent, _q(prefix, name))
    alt = ET.SubElement(prop, _q("rdf", "Alt"))
    li = ET.SubElement(alt, _q("rdf", "li"), {XML_LANG: "x-default"})
    li.text = _clean(text)


def _container(parent: ET.Element, prefix: str, name: str, kind: str, items: list[str]) -> None:
    if not items:
        return
    prop = ET.SubElement(parent, _q(prefix, name))
    box = ET.SubElement(prop, _q("rdf", kind))
    for item in items:
        ET.SubElement(box, _q("rdf", "li")).text = _clean(item)


def _simple(parent: ET.Element, prefix: str, name: str, text: Any) -> None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return
    ET.SubElement(parent, _q(prefix, name)).text = _clean(text)


def to_xmp(validated: dict[str, Any]) -> str:
    """A complete XMP packet (with <?xpacket?> wrapper) describing the validated asset."""
    v = validated
    enriched, pre, asset, _ = _parts(v)
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "assetstream"})
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})

    _lang_alt(desc, "dc", "title", v.get("title"))
    _lang_alt(desc, "dc", "description", _first(v.get("caption"), v.get("summary")))
    _container(desc, "dc", "subject", "Bag", [t["label"] for t in v.get("tags") or []])
    _container(desc, "dc", "creator", "Seq", creators_of(v))
    _lang_alt(desc, "dc", "rights", copyright_of(v))
    # standard rights fields: the file's or a person's words only (rights_text); Marked from the file's evidence
    _simple(desc, "photoshop", "Credit", rights_text(v, "credit_text"))
    _lang_alt(desc, "xmpRights", "UsageTerms", rights_text(v, "licensing"))
    _simple(desc, "xmpRights", "WebStatement", license_url_of(v))
    _simple(desc, "xmpRights", "Marked", rights_marked_of(v))
    if v.get("decorative"):
        _lang_alt(desc, "Iptc4xmpCore", "AltTextAccessibility", "")
    else:
        _lang_alt(desc, "Iptc4xmpCore", "AltTextAccessibility", v.get("alt_text"))
    _lang_alt(desc, "Iptc4xmpCore", "ExtDescrAccessibility", v.get("summary"))
    _simple(desc, "photoshop", "DateCreated", _exif_time((pre.get("exif") or {}).get("capture_time")))
    _simple(desc, "xmp", "MetadataDate", _iso((v.get("stamp") or {}).get("at")))

    # assetstream provenance
    _simple(desc, "assetstream", "AssetId", asset.get("asset_id"))
    _simple(desc, "assetstream", "Status", v.get("status"))
    _simple(desc, "assetstream", "UsageFlag", v.get("usage_flag"))
    _simple(desc, "assetstream", "SuggestedLicensing", suggested_rights_text(v, "licensing"))
    _simple(desc, "assetstream", "SuggestedCreditText", suggested_rights_text(v, "credit_text"))
    _simple(desc, "assetstream", "Decorative", "True" if v.get("decorative") else "False")
    _simple(desc, "assetstream", "TaxonomyVersion", v.get("taxonomy_version"))
    stamp = v.get("stamp") or {}
    _simple(desc, "assetstream", "PipelineVersion", stamp.get("version"))
    _simple(desc, "assetstream", "ValidatedAt", _iso(stamp.get("at")))
    _container(desc, "assetstream", "Tags", "Bag", [t["tag"] for t in v.get("tags") or []])
    _container(desc, "assetstream", "Reasons", "Seq", list(v.get("reasons") or []))
    _container(desc, "assetstream", "FieldSources", "Bag",
               [f"{k}={s}" for k, s in sorted((v.get("field_sources") or {}).items())])
    for name, value in _family_terms(v).items():
        _simple(desc, "assetstream", name[0].upper() + name[1:], value)
    provs = enriched.get("provenance") or []
    if provs:
        prop = ET.SubElement(desc, _q("assetstream", "Provenance"))
        seq = ET.SubElement(prop, _q("rdf", "Seq"))
        for p in provs:
            li = ET.SubElement(seq, _q("rdf", "li"), {_q("rdf", "parseType"): "Resource"})
            for key, name in (("task", "Task"), ("provider", "Provider"), ("model", "Model"),
                              ("model_version", "ModelVersion"), ("prompt_id", "PromptId"),
                              ("prompt_version", "PromptVersion"), ("prompt_hash", "PromptHash")):
                _simple(li, "assetstream", name, p.get(key))
            _simple(li, "assetstream", "Timestamp", _iso(p.get("timestamp")))

    body = ET.tostring(root, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>')


def parse_xmp(packet: str | bytes) -> dict[str, Any]:
    """Read back the fields to_xmp writes (for tests and write-back checks): {'dc:title': ..., 'dc:subject': [...]}."""
    root = xmp_root(packet)
    desc = root.find(f"{_q('rdf', 'RDF')}/{_q('rdf', 'Description')}") if root is not None else None
    out: dict[str, Any] = {}
    if desc is None:
        return out
    rev = {uri: p for p, uri in NS.items()}
    for child in desc:
        uri, name = child.tag[1:].split("}", 1)
        key = f"{rev.get(uri, uri)}:{name}"
        box = next(iter(child), None)
        if box is None:
            out[key] = child.text or ""
        elif box.tag == _q("rdf", "Alt"):
            li = box.find(_q("rdf", "li"))
            out[key] = (li.text or "") if li is not None else ""
        elif box.tag in (_q("rdf", "Bag"), _q("rdf", "Seq")):
            items = []
            for li in box.findall(_q("rdf", "li")):
                if len(li):
                    items.append({c.tag.split("}", 1)[1]: c.text for c in li})
                else:
                    items.append(li.text or "")
            out[key] = items
    return out
