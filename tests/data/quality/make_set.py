"""Builds the labelled quality set used by bench/quality.py and some tests (deterministic; the committed images
are its output). Sources, all shipped inside registry packages with a known licence, or drawn here:

* scikit-image 0.26 `skimage/data` (astronaut: NASA, public domain; camera, coins, moon, page, text, brick,
  grass, gravel, horse, clock_motion, rocket (NASA), coffee (Rachel Michetti, CC0), chelsea (Stefan van der
  Walt, CC0), motorcycle_left (Middlebury, CC0 via skimage), hubble_deep_field (NASA/ESA, public domain),
  retina (Häggström, CC0), ihc (CC0), logo and color (the colour wheel; skimage, BSD-3)) — see the docstrings in
  skimage/data/_fetchers.py in the wheel;
* scikit-learn 1.9 `sklearn/datasets/images` (china.jpg, flower.jpg: CC-BY 2.0, credited in its README.txt);
* matplotlib 3.11 `mpl-data/sample_data` (grace_hopper.jpg: public domain (US Navy); logo2.png and
  Minduka_Present_Blue_Pack.png: matplotlib licence / public domain);
* renders made here with Pillow and the DejaVu fonts (documents, signs, banners, labels, flat fields; session 12:
  decorative backgrounds (gradients, a paper texture, bokeh, a two-tone split, a vignette) and simple drawings of
  everyday things (a wall clock, a traffic light, balloons, an umbrella, an envelope, a bicycle, a line chart)).
  The wheels ship no other everyday photographs: the rest of skimage/data is the stereo partner of
  motorcycle_left (the same scene), microscopy, medical phantoms and the LFW face crops (no stated licence).

    pip download --no-deps scikit-image scikit-learn matplotlib -d /tmp/w && for w in /tmp/w/*.whl; do unzip -o -q "$w" -d /tmp/src; done
    python tests/data/quality/make_set.py /tmp/src

Images are resized to <= 512 px (long edge) to keep the set small (< 3 MB).
"""
from __future__ import annotations

import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

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


def decorative_backgrounds() -> dict[str, Image.Image]:
    """Backgrounds a library keeps for layouts: no subject, nothing to describe (decorative: true)."""
    h, w = 300, 400
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]

    def lerp(a, b, t):
        return Image.fromarray((np.array(a) * (1 - t) + np.array(b) * t).round().astype(np.uint8))

    rng = np.random.default_rng(12)
    paper = np.array([242, 236, 222]) + rng.normal(0, 7, (h, w, 1)) + rng.normal(0, 2, (h, w, 3))
    dots = Image.new("RGB", (w, h), (28, 32, 62))
    layer = Image.new("RGB", (w, h), (0, 0, 0))
    dl = ImageDraw.Draw(layer)
    for _ in range(28):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), int(rng.integers(12, 40))
        dl.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers([200, 150, 80], 256)))
    bokeh = Image.blend(dots, layer.filter(ImageFilter.GaussianBlur(9)), 0.55)
    split = Image.new("RGB", (w, h), (44, 62, 92))
    ImageDraw.Draw(split).rectangle((w // 2, 0, w, h), fill=(232, 204, 158))
    r2 = ((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.5
    return {
        "gradient_peach.jpg": lerp((248, 196, 164), (255, 241, 226), x * np.ones((h, 1, 1))),
        "gradient_lavender.jpg": lerp((186, 176, 228), (246, 243, 252), y * np.ones((1, w, 1))),
        "gradient_mint.jpg": lerp((160, 222, 196), (236, 250, 242), (x + y) / 2),
        "paper_texture.jpg": Image.fromarray(paper.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7)),
        "bokeh_dots.jpg": bokeh,
        "two_tone_split.png": split,
        "vignette_light.jpg": lerp((238, 236, 232), (168, 166, 162), r2 ** 1.5),
    }


def everyday_drawings() -> dict[str, Image.Image]:
    """Simple flat drawings of everyday things (clip art a library holds); the classifier may or may not name them."""
    out = {}
    img = Image.new("RGB", (400, 400), (226, 221, 210))
    d = ImageDraw.Draw(img)
    d.ellipse((40, 40, 360, 360), fill=(255, 255, 255), outline=(30, 30, 30), width=12)
    for i in range(12):
        a = np.pi * 2 * i / 12
        r0 = 125 if i % 3 else 112
        d.line((200 + r0 * np.sin(a), 200 - r0 * np.cos(a), 200 + 140 * np.sin(a), 200 - 140 * np.cos(a)),
               fill=(30, 30, 30), width=6 if i % 3 else 10)
    d.line((200, 200, 200 - 70 * np.sin(np.pi / 3), 200 - 70 * np.cos(np.pi / 3)), fill=(20, 20, 20), width=12)
    d.line((200, 200, 200 + 110 * np.sin(np.pi / 3), 200 - 110 * np.cos(np.pi / 3)), fill=(20, 20, 20), width=8)
    d.line((200, 230, 200, 80), fill=(200, 30, 30), width=3)
    d.ellipse((190, 190, 210, 210), fill=(20, 20, 20))
    out["wall_clock.png"] = img

    img = Image.new("RGB", (320, 480), (196, 218, 240))
    d = ImageDraw.Draw(img)
    d.rectangle((150, 330, 170, 480), fill=(70, 70, 74))
    d.rounded_rectangle((105, 40, 215, 340), 18, fill=(25, 25, 28))
    for i, colour in enumerate([(232, 32, 30), (92, 72, 22), (22, 64, 36)]):
        d.ellipse((125, 60 + i * 92, 195, 130 + i * 92), fill=colour)
    out["traffic_light.png"] = img

    img = Image.new("RGB", (420, 420), (250, 248, 240))
    d = ImageDraw.Draw(img)
    for cx, cy, colour in [(130, 140, (220, 40, 50)), (290, 120, (40, 90, 210)), (210, 190, (250, 200, 30))]:
        d.line((cx, cy + 80, 210, 400), fill=(90, 90, 90), width=2)
        d.polygon([(cx - 8, cy + 88), (cx + 8, cy + 88), (cx, cy + 74)], fill=colour)
        d.ellipse((cx - 62, cy - 80, cx + 62, cy + 80), fill=colour)
        d.ellipse((cx - 36, cy - 56, cx - 16, cy - 24), fill=(255, 255, 255))
    out["balloons.png"] = img

    img = Image.new("RGB", (420, 420), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for i in range(6):
        d.pieslice((30, 60, 390, 420), 180 + i * 30, 210 + i * 30, fill=(210, 30, 40) if i % 2 == 0 else (245, 245, 245),
                   outline=(120, 20, 20), width=2)
    d.line((210, 240, 210, 370), fill=(60, 40, 30), width=8)
    d.arc((170, 340, 212, 392), 0, 180, fill=(60, 40, 30), width=8)
    d.line((210, 40, 210, 62), fill=(60, 40, 30), width=6)
    out["umbrella.png"] = img

    img = Image.new("RGB", (480, 340), (178, 138, 98))
    d = ImageDraw.Draw(img)
    d.rectangle((60, 60, 420, 280), fill=(246, 240, 226), outline=(150, 140, 120), width=2)
    d.line((60, 60, 240, 190, 420, 60), fill=(150, 140, 120), width=3)
    d.line((60, 280, 200, 160), fill=(190, 180, 160), width=2)
    d.line((420, 280, 280, 160), fill=(190, 180, 160), width=2)
    d.rectangle((360, 76, 404, 128), fill=(70, 120, 190), outline=(255, 255, 255), width=3)
    out["envelope.png"] = img

    img = Image.new("RGB", (480, 320), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for cx in (120, 360):
        d.ellipse((cx - 80, 150, cx + 80, 310), outline=(30, 30, 30), width=8)
        d.ellipse((cx - 6, 224, cx + 6, 236), fill=(30, 30, 30))
    frame = [(120, 230), (205, 130), (330, 130), (360, 230), (245, 230), (120, 230)]
    d.line(frame, fill=(30, 110, 200), width=9, joint="curve")
    d.line((245, 230, 190, 105), fill=(30, 110, 200), width=9)
    d.line((330, 130, 315, 80), fill=(30, 110, 200), width=8)
    d.line((295, 80, 345, 75), fill=(30, 30, 30), width=8)
    d.line((170, 102, 215, 102), fill=(30, 30, 30), width=10)
    out["bicycle.png"] = img

    rng = np.random.default_rng(5)
    img = Image.new("RGB", (560, 340), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for gy in range(60, 300, 60):
        d.line((60, gy, 530, gy), fill=(225, 225, 225), width=1)
    d.line((60, 20, 60, 300, 530, 300), fill=(60, 60, 60), width=3)
    vals = np.cumsum(rng.normal(1.2, 4.0, 40)) + 40
    pts = [(70 + i * 11.5, 290 - v * 1.9) for i, v in enumerate(vals)]
    d.line(pts, fill=(30, 90, 200), width=4, joint="curve")
    for px, py in pts[::6]:
        d.ellipse((px - 5, py - 5, px + 5, py + 5), fill=(30, 90, 200))
    out["line_chart.png"] = img
    return out


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
    # session 12 (issue 15 item 6): more decorative images and classifier-named everyday subjects
    for name, img in {**decorative_backgrounds(), **everyday_drawings()}.items():
        save(name, img)
    save("color_wheel.png", Image.open(sk / "color.png"))
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(list(OUT.iterdir()))} images, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
