"""Builds tests/data/logo/images for the local provider's logo decision (issue 15 item 1): graphics that are NOT
logos but look like one to a simple rule (plain ground, few colours, compact shapes), and one logo with a wordmark
(made after the rule, to run the wordmark path through real OCR). Deterministic; the committed images are its
output.

* product_render_mug.png   a shaded mug with a handle and a soft shadow, rendered here on white (a product render)
* icon_photo_coffee.jpg    the quality set's coffee photo (skimage, CC0) cropped square round the cup and made
                           icon-sized (160 px): a photo that looks like an icon
* chart_bars.png           a bar chart drawn by matplotlib (axes, ticks, labels, two colours on white)
* ui_screenshot.png        a settings window drawn here: title bar, sidebar, fields, buttons, text
* banner_flat_green.png    a flat green web banner with a short white headline ("NEW ARRIVALS")
* logo_wordmark_harbor.png a logo: an orange disc with a white wave and the wordmark "Harbor" in navy, on a
                           transparent ground

    pip install --target /tmp/mpl --no-deps matplotlib contourpy cycler fonttools kiwisolver pyparsing \
        python-dateutil six
    PYTHONPATH=/tmp/mpl python tests/data/logo/make_images.py
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
OUT = HERE / "images"
QUALITY = HERE.parent / "quality" / "images"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def product_render_mug() -> Image.Image:
    """A red mug: a cylinder lit from the left (Lambert shading + a highlight), a handle, an elliptic rim and a
    blurred contact shadow, on white."""
    w, h = 400, 400
    img = np.full((h, w, 3), 255.0)
    shadow = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shadow).ellipse((95, 315, 305, 350), fill=90)
    shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(12)), np.float32)[..., None] / 255.0
    img = img * (1.0 - shadow)
    base = np.array([190.0, 35.0, 40.0])
    x0, x1, y0, y1 = 110, 290, 110, 330
    xs = np.arange(x0, x1)
    u = (xs - (x0 + x1) / 2) / ((x1 - x0) / 2)  # -1..1 across the cylinder
    normal_x = u
    normal_z = np.sqrt(np.clip(1 - u ** 2, 0, 1))
    light = np.array([-0.5, 0.8])
    light = light / np.linalg.norm(light)
    lambert = np.clip(normal_x * light[0] + normal_z * light[1], 0, 1)
    spec = np.clip(normal_x * light[0] + normal_z * light[1], 0, 1) ** 40
    col = base[None] * (0.25 + 0.75 * lambert[:, None]) + 255.0 * 0.6 * spec[:, None]
    for y in range(y0, y1):
        img[y, x0:x1] = np.clip(col * (0.92 + 0.08 * (y - y0) / (y1 - y0)), 0, 255)
    pil = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(pil)
    d.ellipse((x0, y1 - 14, x1, y1 + 14), fill=tuple(int(c * 0.7) for c in base))
    d.ellipse((x0, y0 - 16, x1, y0 + 16), fill=(120, 20, 25))
    d.ellipse((x0 + 8, y0 - 11, x1 - 8, y0 + 11), fill=(70, 35, 20))  # coffee in the mug
    d.arc((265, 160, 345, 280), start=-90, end=90, fill=(150, 28, 32), width=18)
    return pil.filter(ImageFilter.GaussianBlur(0.8))


def icon_photo_coffee() -> Image.Image:
    photo = Image.open(QUALITY / "coffee.jpg").convert("RGB")
    w, h = photo.size
    side = int(min(w, h) * 0.8)
    left, top = (w - side) // 2, (h - side) // 2
    return photo.crop((left, top, left + side, top + side)).resize((160, 160), Image.Resampling.LANCZOS)


def chart_bars() -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    quarters = ["Q1", "Q2", "Q3", "Q4"]
    ax.bar(np.arange(4) - 0.2, [12, 17, 15, 21], width=0.4, color="#1f77b4", label="2025")
    ax.bar(np.arange(4) + 0.2, [14, 19, 18, 24], width=0.4, color="#ff7f0e", label="2026")
    ax.set_xticks(np.arange(4), quarters)
    ax.set_ylabel("Sales (k units)")
    ax.set_title("Sales per quarter")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def ui_screenshot() -> Image.Image:
    img = Image.new("RGB", (480, 320), (246, 246, 248))
    d = ImageDraw.Draw(img)
    f, fb = ImageFont.truetype(FONT, 13), ImageFont.truetype(FONT_BOLD, 14)
    d.rectangle((0, 0, 479, 28), fill=(52, 58, 70))
    for i, c in enumerate(((237, 95, 85), (245, 190, 80), (98, 197, 84))):
        d.ellipse((10 + 20 * i, 9, 22 + 20 * i, 21), fill=c)
    d.text((200, 6), "Settings", font=fb, fill=(235, 235, 240))
    d.rectangle((0, 29, 120, 319), fill=(228, 230, 235))
    for i, item in enumerate(("General", "Account", "Privacy", "Network", "Updates")):
        if i == 1:
            d.rectangle((6, 40 + 30 * i, 114, 64 + 30 * i), fill=(66, 133, 244))
        d.text((16, 44 + 30 * i), item, font=f, fill=(255, 255, 255) if i == 1 else (40, 40, 48))
    d.text((140, 44), "Account", font=fb, fill=(30, 30, 36))
    for i, (label, value) in enumerate((("Name", "Ada Lovelace"), ("Email", "ada@example.org"),
                                        ("Language", "English"))):
        y = 80 + 44 * i
        d.text((140, y + 4), label, font=f, fill=(80, 80, 90))
        d.rectangle((230, y, 460, y + 26), fill=(255, 255, 255), outline=(190, 190, 200))
        d.text((238, y + 5), value, font=f, fill=(30, 30, 36))
    d.rounded_rectangle((290, 260, 370, 288), radius=6, fill=(225, 225, 230), outline=(180, 180, 190))
    d.text((307, 266), "Cancel", font=f, fill=(30, 30, 36))
    d.rounded_rectangle((380, 260, 460, 288), radius=6, fill=(66, 133, 244))
    d.text((402, 266), "Save", font=fb, fill=(255, 255, 255))
    return img


def banner_flat_green() -> Image.Image:
    img = Image.new("RGB", (600, 200), (46, 160, 90))
    d = ImageDraw.Draw(img)
    fnt = ImageFont.truetype(FONT_BOLD, 56)
    text = "NEW ARRIVALS"
    box = d.textbbox((0, 0), text, font=fnt)
    d.text(((600 - (box[2] - box[0])) // 2, (200 - (box[3] - box[1])) // 2 - box[1]), text, font=fnt,
           fill=(255, 255, 255))
    return img


def logo_wordmark_harbor() -> Image.Image:
    img = Image.new("RGBA", (520, 200), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((20, 20, 180, 180), fill=(240, 120, 30, 255))
    d.arc((45, 70, 115, 140), start=200, end=340, fill=(255, 255, 255, 255), width=12)
    d.arc((85, 70, 155, 140), start=200, end=340, fill=(255, 255, 255, 255), width=12)
    d.text((205, 52), "Harbor", font=ImageFont.truetype(FONT_BOLD, 76), fill=(20, 40, 90, 255))
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    product_render_mug().save(OUT / "product_render_mug.png", optimize=True)
    icon_photo_coffee().save(OUT / "icon_photo_coffee.jpg", quality=90)
    chart_bars().save(OUT / "chart_bars.png", optimize=True)
    ui_screenshot().save(OUT / "ui_screenshot.png", optimize=True)
    banner_flat_green().save(OUT / "banner_flat_green.png", optimize=True)
    logo_wordmark_harbor().save(OUT / "logo_wordmark_harbor.png", optimize=True)


if __name__ == "__main__":
    main()
