#!/usr/bin/env python3
"""Make the sample images in this folder (deterministic, Pillow only): `python samples/make_samples.py`.

    poster_farmers_market.jpg   a poster with large legible text (OCR)
    photo_paris_sunset.jpg      a "photo" with EXIF camera + GPS (Paris) + XMP creator/copyright/credit/alt text
    photo_paris_sunset_copy.jpg near-duplicate of the photo: resized to 60 % and recompressed, metadata stripped
    product_red_mug.jpg         a product shot: a red mug on white
    logo_badge_alpha.png        a logo badge on a transparent background (PNG with alpha)
    gradient_decorative.jpg     a plain decorative gradient (no text, nothing to describe)
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, TiffImagePlugin

HERE = Path(__file__).resolve().parent
R = TiffImagePlugin.IFDRational


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font: the same on every machine


def poster() -> Image.Image:
    W, H = 900, 1200
    img = Image.new("RGB", (W, H), (246, 236, 210))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, W, 260], fill=(34, 94, 56))
    d.text((W // 2, 130), "FARMERS MARKET", font=font(92), fill=(250, 245, 230), anchor="mm")
    d.text((W // 2, 380), "EVERY SATURDAY", font=font(76), fill=(34, 34, 34), anchor="mm")
    d.text((W // 2, 480), "9 AM - 2 PM", font=font(76), fill=(190, 60, 30), anchor="mm")
    # baskets of produce: circles in a row
    for i, col in enumerate([(200, 40, 40), (240, 160, 20), (110, 160, 40), (150, 40, 120), (230, 200, 40)]):
        cx = 130 + i * 160
        d.ellipse([cx - 60, 640, cx + 60, 760], fill=col, outline=(60, 40, 20), width=4)
    d.rectangle([40, 800, W - 40, 830], fill=(120, 80, 40))
    d.text((W // 2, 960), "Town Square", font=font(64), fill=(34, 94, 56), anchor="mm")
    d.text((W // 2, 1060), "fresh local food", font=font(56), fill=(34, 34, 34), anchor="mm")
    return img


def sunset_photo() -> Image.Image:
    W, H = 1600, 1067
    rnd = random.Random(7)
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    for y in range(H):  # sky: deep blue -> orange towards the horizon
        t = min(1.0, y / (H * 0.62))
        d.line([(0, y), (W, y)], fill=(int(40 + 215 * t), int(60 + 100 * t), int(130 - 70 * t)))
    d.ellipse([980, 500, 1140, 660], fill=(255, 214, 120))  # sun
    # skyline with a lattice tower
    base = int(H * 0.64)
    x = 0
    while x < W:
        bw, bh = rnd.randint(40, 110), rnd.randint(60, 220)
        d.rectangle([x, base - bh, x + bw, H], fill=(30 + rnd.randint(0, 15), 24, 40))
        x += bw
    tx = 520
    d.polygon([(tx - 120, base), (tx - 12, base - 520), (tx + 12, base - 520), (tx + 120, base)], fill=(25, 20, 32))
    d.polygon([(tx - 60, base), (tx, base - 90), (tx + 60, base)], fill=(200, 120, 70))
    d.rectangle([tx - 3, base - 600, tx + 3, base - 520], fill=(25, 20, 32))
    d.rectangle([0, base + 40, W, H], fill=(22, 18, 30))  # river bank
    for i in range(60):  # reflections on the water
        y = base + 60 + i * 6
        d.line([(980 + rnd.randint(-80, 0), y), (1140 + rnd.randint(0, 80), y)], fill=(200, 140, 80), width=2)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    noise = Image.frombytes("L", (W, H), rnd.randbytes(W * H)).convert("RGB")  # seeded sensor-like grain
    return Image.blend(img, noise, 0.02)


def exif_paris() -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F] = "Fujifilm"
    ex[0x0110] = "X-T5"
    ex[0x0131] = "assetstream sample generator"
    sub = ex.get_ifd(0x8769)
    sub[0x829A] = R(1, 250)  # exposure
    sub[0x829D] = R(56, 10)  # f/5.6
    sub[0x8827] = 200  # ISO
    sub[0x9003] = "2024:06:21 21:34:10"
    sub[0x9011] = "+02:00"
    sub[0x920A] = R(35, 1)
    sub[0xA433] = "Fujifilm"
    sub[0xA434] = "XF35mmF1.4 R"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2] = "N", (R(48, 1), R(51, 1), R(2988, 100))  # 48.8583 N: Pont des Arts
    gps[3], gps[4] = "E", (R(2, 1), R(20, 1), R(1500, 100))  # 2.3375 E
    gps[5], gps[6] = b"\x00", R(35, 1)
    return ex


XMP_PARIS = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"
    xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"
    photoshop:Credit="Camille Laurent / Example Photo Agency">
   <dc:creator><rdf:Seq><rdf:li>Camille Laurent</rdf:li></rdf:Seq></dc:creator>
   <dc:rights><rdf:Alt><rdf:li xml:lang="x-default">(c) 2024 Camille Laurent. All rights reserved.</rdf:li></rdf:Alt></dc:rights>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Sunset over the Seine</rdf:li></rdf:Alt></dc:title>
   <dc:subject><rdf:Bag><rdf:li>sunset</rdf:li><rdf:li>Paris</rdf:li><rdf:li>skyline</rdf:li></rdf:Bag></dc:subject>
   <xmpRights:UsageTerms><rdf:Alt><rdf:li xml:lang="x-default">Editorial use only</rdf:li></rdf:Alt></xmpRights:UsageTerms>
   <Iptc4xmpCore:AltTextAccessibility><rdf:Alt><rdf:li xml:lang="x-default">The Paris skyline and a lattice tower silhouetted against an orange sunset sky</rdf:li></rdf:Alt></Iptc4xmpCore:AltTextAccessibility>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def red_mug() -> Image.Image:
    W, H = 1000, 1000
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse([290, 800, 730, 860], fill=(225, 225, 225))  # soft shadow
    d.rectangle([320, 330, 680, 820], fill=(196, 22, 28))  # body
    d.ellipse([320, 790, 680, 850], fill=(196, 22, 28))  # rounded base
    d.ellipse([320, 300, 680, 360], fill=(150, 14, 20))  # rim (inside)
    d.ellipse([335, 308, 665, 352], fill=(70, 30, 20))  # coffee
    d.ellipse([650, 420, 820, 680], outline=(196, 22, 28), width=38)  # handle
    d.rectangle([350, 380, 380, 780], fill=(232, 90, 90))  # highlight
    return img.filter(ImageFilter.GaussianBlur(1.5))


def logo_badge() -> Image.Image:
    S = 512
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse([16, 16, S - 16, S - 16], fill=(20, 70, 160, 255))
    d.ellipse([48, 48, S - 48, S - 48], outline=(255, 255, 255, 255), width=10)
    pts = [(S / 2 + 150 * math.cos(math.radians(-90 + i * 36)) * (1 if i % 2 == 0 else 0.45),
            S / 2 + 150 * math.sin(math.radians(-90 + i * 36)) * (1 if i % 2 == 0 else 0.45)) for i in range(10)]
    d.polygon(pts, fill=(250, 200, 30, 255))
    return img


def gradient() -> Image.Image:
    W, H = 1200, 800
    across = Image.linear_gradient("L").rotate(90).resize((W, H))
    down = Image.linear_gradient("L").resize((W, H))  # 0 at the top, 255 at the bottom
    both = ImageChops.multiply(across, down)
    return Image.merge("RGB", (across.point(lambda v: 90 + v * 120 // 255), down.point(lambda v: 60 + v * 80 // 255),
                               both.point(lambda v: 200 - v * 90 // 255)))


def main(out: Path = HERE) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(img: Image.Image, name: str, **kw) -> Image.Image:
        path = out / name
        img.save(path, **kw)
        written.append(path)
        return img

    save(poster(), "poster_farmers_market.jpg", quality=80)
    photo = sunset_photo()
    save(photo, "photo_paris_sunset.jpg", quality=80, exif=exif_paris(), xmp=XMP_PARIS.encode("utf-8"))
    copy = Image.open(out / "photo_paris_sunset.jpg")
    copy = copy.resize((copy.width * 6 // 10, copy.height * 6 // 10), Image.Resampling.LANCZOS)
    save(copy, "photo_paris_sunset_copy.jpg", quality=60)
    save(red_mug(), "product_red_mug.jpg", quality=85)
    save(logo_badge(), "logo_badge_alpha.png", optimize=True)
    save(gradient(), "gradient_decorative.jpg", quality=85)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"{p.name:32s} {p.stat().st_size / 1024:6.1f} KB")
