"""Safe decoding: hostile bytes get a PermanentError with a reason; odd but valid images decode correctly."""
from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from domain.vision.decode import decode, decoded_pixels, sniff
from streams.errors import PermanentError
from tests.preprocess_support import jpeg, png, png_header_only, scene, xmp_packet

LIMIT = 80_000_000


def reason_of(data: bytes, **kw) -> str:
    with pytest.raises(PermanentError) as ei:
        decode(data, max_pixels=kw.pop("max_pixels", LIMIT), **kw)
    assert ei.value.message  # a human-readable sentence, not a bare code
    return ei.value.reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_hostile_inputs_have_reasons():
    good = jpeg(scene(1))
    assert reason_of(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20) == "corrupt_image"
    assert reason_of(good[: len(good) // 2]) == "corrupt_image"
    assert reason_of(b"") == "not_an_image"
    assert reason_of(b"<!DOCTYPE html><html><body>Login</body></html>") == "not_an_image"
    assert reason_of(b"%PDF-1.7 ...") == "not_an_image"
    assert reason_of(png_header_only(100_000, 100_000)) == "decompression_bomb"  # Pillow's own hard limit
    assert reason_of(png_header_only(12_000, 9_000)) == "decompression_bomb"  # over our 80 MP limit
    assert reason_of(png(Image.new("L", (1200, 1000))), max_pixels=1_000_000) == "decompression_bomb"
    assert reason_of(b"\0\0\0\x1cftypavif" + b"\0" * 64) == "unsupported_format"
    assert reason_of(png(Image.new("RGB", (8, 8))), allowed_formats=["JPEG"]) == "unsupported_format"


def test_max_pixels_is_the_limit_in_both_directions():
    """preprocess.max_pixels set above Pillow's own hard limit (2 x 89 MP) is honoured, and a bomb's dead-letter
    reason quotes the configured limit, not Pillow's."""
    from domain.vision.decode import DEFAULT_FORMATS, open_checked

    img, _ = open_checked(png_header_only(14_000, 14_000), max_pixels=400_000_000, allowed_formats=DEFAULT_FORMATS)
    assert img.size == (14_000, 14_000)  # 196 MP: refused by Pillow before, whatever max_pixels said
    with pytest.raises(PermanentError) as ei:
        open_checked(png_header_only(30_000, 30_000), max_pixels=LIMIT, allowed_formats=DEFAULT_FORMATS)
    assert ei.value.reason == "decompression_bomb" and f"max_pixels={LIMIT}" in ei.value.message
    with pytest.raises(PermanentError) as ei:  # far over every limit: still refused, the configured limit named
        open_checked(png_header_only(100_000, 100_000), max_pixels=LIMIT, allowed_formats=DEFAULT_FORMATS)
    assert ei.value.reason == "decompression_bomb" and f"max_pixels={LIMIT}" in ei.value.message
    # Pillow refused it before giving a size (over its own hard limit): the header's size all the same (trial 24
    # F10: the 30000x30000 letter said only "900000000 pixels", with empty details)
    assert (ei.value.message, ei.value.details) == (
        f"decompression bomb: 100000x100000 = 10000000000 pixels is over max_pixels={LIMIT}",
        {"width": "100000", "height": "100000"})
    with pytest.raises(PermanentError) as ei:
        open_checked(png_header_only(12_000, 9_000), max_pixels=LIMIT, allowed_formats=DEFAULT_FORMATS)
    assert (ei.value.message, ei.value.details) == (
        f"decompression bomb: 12000x9000 = 108000000 pixels is over max_pixels={LIMIT}",
        {"width": "12000", "height": "9000"})


def test_html_error_message_says_what_it_was():
    with pytest.raises(PermanentError) as ei:
        decode(b"\n  <html><head><title>403</title></head></html>", max_pixels=LIMIT)
    assert "HTML" in ei.value.message


def test_sniff_ignores_names_and_headers():
    assert sniff(jpeg(scene())) == "JPEG"
    assert sniff(png(scene())) == "PNG"
    assert sniff(b"GIF89a....") == "GIF"
    assert sniff(b"hello") is None


def test_jpeg_draft_decodes_reduced_but_reports_full_size():
    big = scene(2, (4000, 3000))
    d = decode(jpeg(big), max_pixels=LIMIT, min_edge=800)
    assert (d.width, d.height) == (4000, 3000)
    assert 800 <= max(d.image.size) <= 2000  # DCT-scaled, not the full 12 MP
    full = decode(jpeg(big), max_pixels=LIMIT, min_edge=None)
    assert full.image.size == (4000, 3000)


def test_exif_orientation_applied():
    img = Image.new("RGB", (300, 200), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 150, 200))  # left half red
    ex = Image.Exif()
    ex[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    d = decode(jpeg(img, exif=ex), max_pixels=LIMIT)
    assert (d.width, d.height) == (200, 300) and d.image.size == (200, 300)
    assert d.orientation == 6
    top = np.asarray(d.image)[10, 100]
    assert top[0] > 200 and top[1] < 80  # the red left half is now on top


def test_an_xmp_only_orientation_is_not_applied_as_browsers_do_not():
    """Trial 24 F9: no EXIF orientation, an XMP tiff:Orientation="6": Chromium shows the file unrotated, so do we
    (Pillow's getexif() fills the EXIF orientation from XMP); an EXIF orientation next to the XMP still counts."""
    img = Image.new("RGB", (300, 200), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 150, 200))  # left half red
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, xmp=xmp)
    d = decode(buf.getvalue(), max_pixels=LIMIT)
    assert (d.width, d.height) == (300, 200) and d.image.size == (300, 200)
    assert d.orientation is None
    assert np.asarray(d.image)[100, 10][0] > 200  # the red half is still on the left
    ex = Image.Exif()
    ex[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, xmp=xmp, exif=ex)
    d = decode(buf.getvalue(), max_pixels=LIMIT)
    assert d.image.size == (200, 300) and d.orientation == 6


def test_cmyk_16bit_palette_alpha_gif_tiff_bmp_webp():
    rgb = scene(3, (320, 240))
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, "JPEG")
    d = decode(cmyk.getvalue(), max_pixels=LIMIT)
    assert d.mode == "CMYK" and d.image.mode == "RGB"
    assert abs(np.asarray(d.image, dtype=int).mean() - np.asarray(rgb, dtype=int).mean()) < 25

    arr16 = np.tile(np.linspace(0, 65535, 256), (64, 1)).astype(np.uint16)
    d = decode(png(Image.fromarray(arr16)), max_pixels=LIMIT)
    assert d.mode.startswith("I") and d.image.mode == "RGB"
    row = np.asarray(d.image)[32, :, 0]
    assert row[0] < 10 and row[-1] > 245  # scaled, not clipped to white

    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (25, 25, 75, 75))
    d = decode(png(rgba), max_pixels=LIMIT)
    assert d.has_alpha and d.image.mode == "RGBA"
    d = decode(png(rgba.convert("P")), max_pixels=LIMIT)
    assert d.image.mode in ("RGB", "RGBA")

    la = Image.new("LA", (50, 50), (128, 100))
    assert decode(png(la), max_pixels=LIMIT).has_alpha

    frames = [Image.new("RGB", (60, 40), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    d = decode(gif.getvalue(), max_pixels=LIMIT)
    assert d.format == "GIF" and np.asarray(d.image.convert("RGB"))[5, 5][0] > 200  # first frame (red)

    for fmt in ("TIFF", "BMP", "WEBP"):
        buf = io.BytesIO()
        rgb.save(buf, fmt)
        d = decode(buf.getvalue(), max_pixels=LIMIT)
        assert d.format == fmt and (d.width, d.height) == (320, 240)


def test_heic_when_pillow_heif_is_installed():
    pytest.importorskip("pillow_heif")  # optional extra: HEIC/HEIF is accepted only with this wheel
    from domain.vision.decode import HEIF_AVAILABLE

    assert HEIF_AVAILABLE
    buf = io.BytesIO()
    scene(8, (640, 480)).save(buf, "HEIF", quality=80)
    data = buf.getvalue()
    assert sniff(data) == "HEIF"
    d = decode(data, max_pixels=LIMIT)
    assert d.format == "HEIF" and (d.width, d.height) == (640, 480) and d.image.mode == "RGB"
    assert reason_of(data, allowed_formats=["JPEG", "PNG"]) == "unsupported_format"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def with_chunks(data: bytes, before_idat: list[bytes] = (), after_idat: list[bytes] = ()) -> bytes:
    """The PNG `data` with raw chunks added right after IHDR and right before IEND."""
    ihdr_end = 8 + 8 + 13 + 4
    return data[:ihdr_end] + b"".join(before_idat) + data[ihdr_end:-12] + b"".join(after_idat) + data[-12:]


def test_a_png_whose_metadata_inflates_past_pillows_limit_is_decoded_without_it():
    """Trial 16: a valid PNG with an XMP (iTXt) block inflating past 1 MiB was dead-lettered as `corrupt_image`,
    then (pixels15) as `metadata_too_large`, whole, though its pixels are fine. It is decoded without its text
    chunks now, and says what was not read (its credit and rights)."""
    from PIL.PngImagePlugin import PngInfo
    meta = PngInfo()
    meta.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>" + " " * 3_000_000 + "</x:xmpmeta>", zip=True)
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "PNG", pnginfo=meta)
    assert len(out.getvalue()) < 10_000
    d = decode(out.getvalue(), max_pixels=LIMIT)
    assert d.image.size == (8, 8) and d.image.getpixel((3, 3)) == (200, 10, 10)
    assert d.metadata_skipped == ("metadata skipped: an XMP/text chunk inflates past 1 MiB; not read: XMP "
                                  "(any creator, credit or rights the file states are unknown)")
    assert decode(png(scene(1)), max_pixels=LIMIT).metadata_skipped is None


def test_a_text_zip_bomb_in_a_png_is_never_inflated_and_an_oversized_profile_alone_is_dropped():
    """The fallback keeps the decompression-bomb protection: a zTXt chunk of 64 MiB of zeros (64 KB in the file),
    after the pixels, is dropped by its length, never inflated (Pillow stopped at 1 MiB on the first try). An ICC
    profile that inflates past the limit is dropped alone: the file's small XMP is still read."""
    import tracemalloc
    base = png(Image.new("RGB", (64, 48), (10, 120, 200)))
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (64 << 20), 9))
    data = with_chunks(base, after_idat=[bomb])
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        d = decode(data, max_pixels=LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert d.image.getpixel((5, 5)) == (10, 120, 200) and d.metadata_skipped.startswith(
        "metadata skipped: an XMP/text chunk inflates past 1 MiB; not read: text (")
    assert peak < 12 << 20, peak  # a few MiB: never the 64 MiB the chunk inflates to
    assert decoded_pixels(data, max_pixels=LIMIT) == 64 * 48  # its pixels count in the budget (they were 0)

    xmp = png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp_packet())
    icc = png_chunk(b"iCCP", b"huge\0\0" + zlib.compress(b"\0" * (2 << 20)))
    d = decode(with_chunks(base, before_idat=[icc, xmp]), max_pixels=LIMIT)
    assert d.metadata_skipped == ("metadata skipped: its ICC profile inflates past 1 MiB; not read: ICC profile "
                                  "(colours as stored, no ICC profile applied)"), d.metadata_skipped
    both = with_chunks(base, before_idat=[icc], after_idat=[bomb])
    assert decode(both, max_pixels=LIMIT).metadata_skipped == (
        "metadata skipped: an XMP/text chunk and its ICC profile inflate past 1 MiB; not read: ICC profile, text "
        "(any creator, credit or rights the file states are unknown; colours as stored, no ICC profile applied)")
    assert "Ana Gómez" in d.info["XML:com.adobe.xmp"]  # the XMP was read


def test_a_png_of_millions_of_tiny_chunks_is_refused_at_once_in_bounded_memory():
    """Code review 15 H1: a PNG with a zTXt chunk inflating past 1 MiB and then hundreds of thousands of empty
    private chunks was rewritten without its metadata chunk by chunk (an object per chunk: ~23x the file in memory),
    to size it for the pixel budget (outside every bound) and again to decode it: minutes and a GB for 48 MB. A PNG
    of more than MAX_PNG_ANCILLARY ancillary chunks is refused as soon as the walk passes the limit, the size is read
    from IHDR, and a PNG of many IDAT chunks (as some encoders write) still decodes."""
    import tracemalloc

    from domain.vision.decode import header_size
    base = png(Image.new("RGB", (16, 16), (1, 2, 3)))
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (2 << 20), 9))
    data = with_chunks(base, before_idat=[bomb, png_chunk(b"aBcd", b"") * 800_000])
    assert len(data) > 9_000_000
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        assert decoded_pixels(data, max_pixels=LIMIT) == 0  # decode() refuses it: nothing to hold
        with pytest.raises(PermanentError) as e:
            decode(data, max_pixels=LIMIT)
        took, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.reason == "metadata_too_large" and "more than 10000 ancillary" in str(e.value)
    assert took < 2.0 and peak < 50 << 20, (took, peak)

    # under the limit, with the metadata bomb: decoded without it, its size from IHDR (not from a rewrite)
    some = with_chunks(base, before_idat=[bomb, png_chunk(b"aBcd", b"") * 5_000])
    assert header_size(some, max_pixels=LIMIT) == (16, 16, "PNG")
    assert decode(some, max_pixels=LIMIT).metadata_skipped.startswith("metadata skipped: an XMP/text chunk")
    assert header_size(some, max_pixels=100) is None  # over max_pixels, as decode() says

    # 20,000 IDAT chunks of 3 bytes (critical chunks: only MAX_PNG_CHUNKS bounds them) decode as one
    big = Image.effect_noise((200, 150), 40).convert("RGB")
    raw = png(big)
    idat, pos = b"", 8
    while pos < len(raw):
        length = int.from_bytes(raw[pos:pos + 4], "big")
        idat += raw[pos + 8:pos + 8 + length] if raw[pos + 4:pos + 8] == b"IDAT" else b""
        pos += 12 + length
    cut = [png_chunk(b"IDAT", idat[i:i + 3]) for i in range(0, len(idat), 3)]
    many = raw[:33] + b"".join(cut) + png_chunk(b"IEND", b"")
    assert len(cut) > 20_000 and np.array_equal(np.asarray(decode(many, max_pixels=LIMIT).image), np.asarray(big))


def test_a_corrupt_image_reads_the_same_in_every_dead_letter():
    """Trial 10: a broken GIF's dead letter said `cannot identify image file <_io.BytesIO object at 0x7f71…>`,
    a different address in each letter (and in its replay), so letters of one fault did not group."""
    data = b"GIF89a\x01\x00garbage"
    messages = set()
    for _ in range(2):
        with pytest.raises(PermanentError) as e:
            decode(data, max_pixels=LIMIT)
        messages.add(str(e.value))
    assert e.value.reason == "corrupt_image"
    assert len(messages) == 1 and "0x" not in messages.pop()


def test_a_png_with_a_broken_data_stream_is_corrupt_not_indexed():
    """Trial 22: a PNG with 60 bytes overwritten in its first IDAT chunk (Pillow: "broken data stream") was
    indexed as a valid asset: reading its EXIF loaded the image, that error was swallowed as "broken EXIF", and
    the load after it returned the half-read image."""
    rng = np.random.default_rng(22)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(out, "PNG")
    data = bytearray(out.getvalue())
    data[200:260] = rng.integers(0, 255, 60, dtype=np.uint8).tobytes()
    with pytest.raises(PermanentError) as e:
        decode(bytes(data), max_pixels=LIMIT)
    assert e.value.reason == "corrupt_image" and str(e.value).startswith("corrupt PNG image"), str(e.value)
    assert decode(out.getvalue(), max_pixels=LIMIT).width == 400  # the intact file decodes


def test_frames_and_pages_are_counted_from_the_file_structure_bounded():
    """pixels15: an animated GIF/WebP/APNG or a multi-page TIFF is read at its first frame only, and nothing said it
    had more. The count comes from the file's frame list (no pixel decoded), and stops past 1000."""
    from domain.vision.frames import count_frames, frames_phrase

    def many(fmt: str, n: int) -> bytes:
        frames = [Image.new("RGB", (40, 30), (20 * i % 256, 0, 0)) for i in range(n)]
        out = io.BytesIO()
        frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
        return out.getvalue()

    for fmt in ("GIF", "WEBP", "PNG", "TIFF"):
        assert count_frames(many(fmt, 12), fmt) == 12, fmt
        assert count_frames(many(fmt, 1), fmt) is None, fmt  # one frame: nothing to say
    assert count_frames(jpeg(scene(1)), "JPEG") is None and count_frames(b"GIF89a\x01", "GIF") is None
    assert frames_phrase("GIF", 12) == "animated, 12 frames" and frames_phrase("TIFF", 12) == "12 pages"
    assert frames_phrase("WEBP", 1001) == "animated, more than 1000 frames" and frames_phrase("PNG", None) is None

    # a hostile GIF: 600,000 one-pixel frames in 9 MB. Pillow's n_frames walked them all (seconds, in decode too)
    head = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02\x44\x01\x00"
    bomb = head + frame * 600_000 + b"\x3b"
    t0 = time.perf_counter()
    assert count_frames(bomb, "GIF") == 1001
    d = decode(bomb, max_pixels=LIMIT)
    assert d.image.size == (1, 1) and time.perf_counter() - t0 < 1.5

    # a frame cut into 10 million one-byte data sub-blocks: the walk stops at its step budget (unknown: None)
    sliced = head + frame[:11] + b"\x01\x44" * 10_000_000 + b"\x00" + frame + b"\x3b"
    t0 = time.perf_counter()
    assert count_frames(sliced, "GIF") is None and time.perf_counter() - t0 < 1.0

    # a TIFF whose IFD chain loops back on itself: counted once, no endless walk
    tiff = bytearray(many("TIFF", 2))
    first = int.from_bytes(tiff[4:8], "little")
    entries = int.from_bytes(tiff[first:first + 2], "little")
    tiff[first + 2 + 12 * entries:first + 6 + 12 * entries] = first.to_bytes(4, "little")
    assert count_frames(bytes(tiff), "TIFF") is None  # one page (the loop is not a second one)

    # code review 15 L3: a count cut short by the step budget said "animated, 6 frames" for 506 frames
    sliced = head + frame * 5 + frame[:11] + b"\x01\x44" * 1_000_000 + b"\x00" + frame * 500 + b"\x3b"
    assert count_frames(sliced, "GIF") == -6 and frames_phrase("GIF", -6) == "animated, at least 6 frames"
    assert frames_phrase("TIFF", -3) == "at least 3 pages" and frames_phrase("GIF", -1) is None

    # code review 15 L7: reduced-resolution images (NewSubfileType bit 0) and masks (bit 2) are not pages
    def chain(*subfile_types: int) -> bytes:
        out = b"II*\x00" + (8).to_bytes(4, "little")
        for i, kind in enumerate(subfile_types):
            last = i == len(subfile_types) - 1
            out += struct.pack("<HHHII", 1, 254, 4, 1, kind) + struct.pack("<I", 0 if last else len(out) + 18)
        return out
    assert count_frames(chain(0, 1, 0, 4, 5, 0), "TIFF") == 3 and count_frames(chain(0, 1), "TIFF") is None
    assert count_frames(chain(0, 2, 0), "TIFF") == 3  # bit 1: a page of a multi-page document

    # code review 15 M1: a valid BigTIFF whose next-IFD offset is 2**64-1 raised OverflowError, and the record was
    # dead-lettered with no reason; a frame count never refuses an image
    def bigtiff(next_ifd: int) -> bytes:
        entries = [(256, 3, 1, 2), (257, 3, 1, 2), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 16, 1, None),
                   (277, 3, 1, 1), (278, 3, 1, 2), (279, 16, 1, 4)]
        pix_off = 16 + 8 + 20 * len(entries) + 8
        body = struct.pack("<Q", len(entries))
        for tag, typ, cnt, val in entries:
            val = pix_off if val is None else val
            body += struct.pack("<HHQ", tag, typ, cnt) + (struct.pack("<H", val) + b"\0" * 6 if typ == 3
                                                          else struct.pack("<Q", val))
        pixels = bytes([10, 200, 30, 90])
        return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + body + struct.pack("<Q", next_ifd) + pixels
    from tests.preprocess_support import event, stage
    hostile = bigtiff(2**64 - 1)
    assert decode(hostile, max_pixels=LIMIT).format == "TIFF" and count_frames(hostile, "TIFF") is None
    huge_count = b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, 2**62) + b"\0" * 64
    assert count_frames(huge_count, "TIFF") is None
    rec = stage(ocr_enabled=False, faces_enabled=False, nsfw_enabled=False).preprocess_bytes(event(None), hostile)
    assert rec["image"]["format"] == "TIFF" and rec["image"]["width"] == 2 and rec["image"]["frames"] is None


def test_an_animated_png_of_many_frames_is_not_refused_as_too_much_metadata():
    """Code review 15b L6: an APNG's frame chunks (fcTL, fdAT) counted as ancillary metadata, so an animation of
    more than 5,000 frames was refused "metadata too large … strip the embedded metadata"."""
    from domain.vision.decode import MAX_PNG_ANCILLARY
    frames = [Image.new("RGB", (2, 2), (i % 256, i // 256 % 256, 0)) for i in range(MAX_PNG_ANCILLARY // 2 + 10)]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=10)
    d = decode(out.getvalue(), max_pixels=LIMIT)
    assert (d.format, d.width, d.height) == ("PNG", 2, 2)


def test_preprocess_reads_a_pngs_chunk_list_once_for_its_size_bound_strip_and_frames():
    """Session 15's read-back: preprocess walked a PNG's chunk list once to size it for the pixel budget, once more
    for the chunk bound, once more for the metadata strip, again for each stripped try and once more to count an
    APNG's frames: the chunk headers of a PNG of thousands of chunks were read five to seven times. They are read
    once per image now, and the record is the same: frames counted, the metadata bomb dropped and said so."""
    import cProfile
    import pstats

    from tests.preprocess_support import event, stage
    frames = [Image.new("RGB", (16, 12), (i % 256, 40, 200)) for i in range(1500)]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:], duration=10)
    icc = png_chunk(b"iCCP", b"huge\0\0" + zlib.compress(b"\0" * (2 << 20)))
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (2 << 20), 9))
    data = with_chunks(out.getvalue(), before_idat=[icc, bomb])  # three tries: without text, without ICC, without both
    chunks, pos = 0, 8
    while pos < len(data):
        chunks, pos = chunks + 1, pos + 12 + int.from_bytes(data[pos:pos + 4], "big")
    st = stage(ocr_enabled=False, faces_enabled=False, nsfw_enabled=False)
    profile = cProfile.Profile()
    rec = profile.runcall(st.preprocess_bytes, event(None), data)
    assert rec["image"]["frames"] == 1001 and (rec["image"]["width"], rec["image"]["height"]) == (16, 12)
    assert rec["degraded"]["metadata"].startswith("metadata skipped: an XMP/text chunk and its ICC profile inflate")
    heads = (func for func in pstats.Stats(profile).stats.items()  # a chunk's head: a struct.Struct of (length, type)
             if func[0][2] == "<method 'unpack_from' of '_struct.Struct' objects>")
    reads = sum(n for _, (*_, callers) in heads for caller, (n, *_) in callers.items() if "/domain/vision/" in caller[0])
    assert reads == chunks, (reads, chunks)  # each chunk head once, by the one walk
