"""Builds the labelled quality set used by bench/quality.py and some tests (deterministic; the committed images
are its output). Sources, all shipped inside registry packages with a known licence, or drawn here:

* scikit-image 0.26 `skimage/data` (astronaut: NASA, public domain; camera, coins, moon, page, text, brick,
  grass, gravel, horse, clock_motion, rocket (NASA), coffee (Rachel Michetti, CC0), chelsea (Stefan van der
  Walt, CC0), motorcycle_left (Middlebury, CC0 via skimage), hubble_deep_field (NASA/ESA, public domain),
  retina (Häggström, CC0), ihc (CC0), logo (skimage, BSD-3)) — see skimage/data/README.txt in the wheel;
* scikit-learn 1.9 `sklearn/datasets/images` (china.jpg, flower.jpg: CC-BY 2.0, credited in its README.txt);
* matplotlib 3.11 `mpl-data/sample_data` (grace_hopper.jpg: public domain (US Navy); logo2.png and
  Minduka_Present_Blue_Pack.png: matplotlib licence / public domain);
* renders made here with Pillow and the DejaVu fonts (documents, signs, banners, labels, flat fields).

    pip download --no-deps scikit-image scikit-learn matplotlib -d /tmp/w && for w in /tmp/w/*.whl; do unzip -o -q "$w" -d /tmp/src; done
    python tests/data/quality/make_set.py /tmp/src

Images are resized to <= 512 px (long edge) to keep the set small (< 3 MB).
"""
from __future__ import annotations

import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
FONT_SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def font(size: int, path: str = FONT) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def fit(img: Image.Image, edge: int = 512) -> Image.Image:
    img = img.copy()
    if max(img.size) > edge:
        img.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    return img


def flat_white(img: Image.Image) -> Image.Image:
    bg = Image.new("RGB", img.size, (255, 255, 255))
    bg.paste(img.convert("RGB"), mask=img.getchannel("A"))
    return bg


def hue_shift(img: Image.Image, shift: float) -> Image.Image:
    a = np.asarray(img.convert("RGB")).astype(np.float32) / 255.0
    hsv = np.vectorize(colorsys.rgb_to_hsv)(a[..., 0], a[..., 1], a[..., 2])
    h = (hsv[0] + shift) % 1.0
    rgb = np.vectorize(colorsys.hsv_to_rgb)(h, hsv[1], hsv[2])
    return Image.fromarray((np.stack(rgb, -1) * 255).round().astype(np.uint8))


def text_block(size, lines, fnt, fill=(0, 0, 0), bg=(255, 255, 255), mode="RGB", at=(30, 30), gap=1.35):
    img = Image.new(mode, size, bg)
    d = ImageDraw.Draw(img)
    x, y = at
    for line in lines:
        d.text((x, y), line, font=fnt, fill=fill)
        y += int(fnt.size * gap)
    return img


def banner(text: str, sub: str) -> Image.Image:
    img = Image.new("RGB", (600, 240), (236, 112, 20))
    d = ImageDraw.Draw(img)
    d.rectangle((20, 20, 580, 220), outline=(255, 255, 255), width=4)
    d.text((300, 95), text, font=font(44, FONT_BOLD), fill=(255, 255, 255), anchor="mm")
    d.text((300, 165), sub, font=font(30, FONT_BOLD), fill=(60, 20, 0), anchor="mm")
    return img


def bottle(label: str, colour) -> Image.Image:
    img = Image.new("RGB", (360, 480), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((110, 120, 250, 450), 30, fill=(90, 150, 90))
    d.rectangle((155, 50, 205, 125), fill=(90, 150, 90))
    d.rectangle((150, 30, 210, 55), fill=(40, 40, 40))
    d.rectangle((112, 220, 248, 330), fill=colour)
    d.text((180, 275), label, font=font(30, FONT_BOLD), fill=(20, 20, 20), anchor="mm")
    return img


DOC_LINES = [
    "Quarterly report to the board",
    "Sales rose in every region during the",
    "third quarter, led by strong demand for",
    "garden furniture and outdoor lighting.",
    "Shipping costs fell and the warehouse",
    "opened two new loading bays in March.",
]
MENU_LEFT = ["Soup of the day", "Green salad", "Fresh bread"]
MENU_RIGHT = ["Grilled fish", "Roast chicken", "Apple pie"]


def main(src: Path) -> None:
    sk = src / "skimage" / "data"
    sl = src / "sklearn" / "datasets" / "images"
    mp = src / "matplotlib" / "mpl-data" / "sample_data"
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()

    def save(name: str, img: Image.Image, **kw) -> None:
        path = OUT / name
        if name.endswith(".jpg"):
            img.convert("RGB").save(path, "JPEG", quality=kw.get("quality", 85), optimize=True)
        else:
            img.save(path, optimize=True)

    def photo(name, file, **kw):
        img = fit(Image.open(file))
        save(name, img, **kw)
        return img

    astro = photo("astronaut.jpg", sk / "astronaut.png")
    save("astronaut_web.jpg", fit(astro, 256), quality=60)
    photo("camera.jpg", sk / "camera.png")
    cat = photo("chelsea.jpg", sk / "chelsea.png")
    save("chelsea_web.jpg", fit(cat, 300), quality=55)
    c = cat.convert("RGB").copy()
    d = ImageDraw.Draw(c)
    d.rectangle((0, c.height - 56, c.width, c.height), fill=(255, 255, 255))
    d.text((c.width // 2, c.height - 28), "ADOPT ME", font=font(34, FONT_BOLD), fill=(0, 0, 0), anchor="mm")
    save("chelsea_adopt_caption.jpg", c)
    coffee = photo("coffee.jpg", sk / "coffee.png")
    photo("coins.jpg", sk / "coins.png")
    rocket = photo("rocket.jpg", sk / "rocket.jpg")
    w, h = rocket.size
    save("rocket_crop.jpg", rocket.crop((int(w * 0.03), int(h * 0.03), w, h)).resize((w, h)))
    photo("moon.jpg", sk / "moon.png")
    photo("motorcycle.jpg", sk / "motorcycle_left.png")
    photo("hubble.jpg", sk / "hubble_deep_field.jpg")
    photo("retina.jpg", sk / "retina.jpg")
    photo("grass.jpg", sk / "grass.png")
    photo("brick.jpg", sk / "brick.png")
    photo("gravel.jpg", sk / "gravel.png")
    china = photo("china.jpg", sl / "china.jpg")
    save("china_copy.jpg", ImageEnhance.Brightness(china).enhance(1.06), quality=70)
    photo("flower.jpg", sl / "flower.jpg")
    photo("grace_hopper.jpg", mp / "grace_hopper.jpg")
    photo("clock.jpg", sk / "clock_motion.png")
    photo("tissue.jpg", sk / "ihc.png")
    photo("handwriting.jpg", sk / "text.png")
    save("page_scan.png", Image.open(sk / "page.png"))

    horse = Image.open(sk / "horse.png")  # RGBA silhouette
    save("horse_alpha.png", fit(horse))
    save("horse_flat.png", fit(flat_white(horse)))
    logo2 = Image.open(mp / "logo2.png")
    save("matplotlib_logo_alpha.png", logo2)
    save("matplotlib_logo_flat.jpg", flat_white(logo2), quality=90)
    sklogo = Image.open(sk / "logo.png").convert("RGBA")
    save("skimage_logo.png", fit(sklogo, 400))
    # the same logo as a small icon, once with black under its transparent pixels (as many editors export it)
    # and once flattened on white: copies of one another
    icon = fit(sklogo, 160)
    a = np.asarray(icon).copy()
    a[a[..., 3] == 0, :3] = 0
    save("skimage_logo_icon_alpha.png", Image.fromarray(a, "RGBA"))
    save("skimage_logo_icon_flat.jpg", flat_white(icon), quality=90)
    gift = Image.open(mp / "Minduka_Present_Blue_Pack.png")
    canvas = Image.new("RGB", (400, 400), (255, 255, 255))
    big = gift.resize((320, 320), Image.Resampling.LANCZOS)
    canvas.paste(big.convert("RGB"), (40, 40), big.getchannel("A"))
    save("gift_on_white.jpg", canvas)
    save("gift_on_white_red.jpg", hue_shift(canvas, 0.42))

    # a product on white in two colours (variants: never merged)
    cup = coffee.crop((110, 0, 470, coffee.height))  # the cup and saucer, inside the photo
    pw = Image.new("RGB", (480, 480), (255, 255, 255))
    pw.paste(cup, ((480 - cup.width) // 2, (480 - cup.height) // 2))
    save("cup_on_white.jpg", pw)
    save("cup_on_white_green.jpg", hue_shift(pw, 0.33))

    save("document_report.png", text_block((640, 300), DOC_LINES, font(22, FONT_SERIF)))
    menu = Image.new("RGB", (640, 260), (255, 255, 255))
    dm = ImageDraw.Draw(menu)
    for i, (a, b) in enumerate(zip(MENU_LEFT, MENU_RIGHT)):
        dm.text((30, 40 + i * 50), a, font=font(24), fill=(0, 0, 0))
        dm.text((350, 40 + i * 50), b, font=font(24), fill=(0, 0, 0))
    save("menu_two_columns.png", menu)
    sign = text_block((480, 200), ["OPEN DAILY", "9 TO 5"], font(48, FONT_BOLD), fill=0, bg=1, mode="1",
                      at=(40, 30), gap=1.4)
    save("sign_open_1bit.png", sign)
    label = text_block((400, 160), ["FRAGILE", "HANDLE WITH CARE"], font(32, FONT_BOLD), fill=0, bg=1, mode="1",
                       at=(30, 25), gap=1.5)
    save("label_fragile_1bit.png", label)
    save("banner_sale_en.jpg", banner("SUMMER SALE", "50% OFF EVERYTHING"))
    save("banner_sale_fr.jpg", banner("SOLDES D'ETE", "TOUT A MOITIE PRIX"))
    save("bottle_lemon.jpg", bottle("LEMON", (250, 230, 80)))
    save("bottle_lime.jpg", bottle("LIME", (250, 230, 80)))
    save("flat_red.png", Image.new("RGB", (400, 300), (200, 30, 40)))
    save("flat_blue.png", Image.new("RGB", (400, 300), (30, 70, 200)))
    g = np.linspace(0, 1, 400)[None, :, None]
    grad = (np.array([20, 120, 130]) * (1 - g) + np.array([200, 240, 235]) * g) * np.ones((300, 1, 1))
    save("gradient_teal.jpg", Image.fromarray(grad.astype(np.uint8)))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(list(OUT.iterdir()))} images, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
