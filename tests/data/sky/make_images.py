"""Builds tests/data/sky/images for the local provider's night-sky rules (issue 15 item 1, subjects): images made
AFTER the rules were written on the quality set's hubble.jpg, so they test the rules rather than fit them.
Deterministic (fixed seeds); the committed images are this script's output:

* s_stars0.jpg   a star field: points of power-law brightness, a few tinted, a faint sky gradient, sensor noise
* s_milky.jpg    a dense star field across a diffuse coloured band (the Milky Way, a nebula)
* s_galaxies.jpg a deep field: stars and small elliptical galaxies of many colours
* s_horizon.jpg  stars over a black tree-line
* m_full.jpg     the full Moon: a disc with dark maria and craters, limb darkening, on black
* m_crescent.jpg a crescent Moon; m_half.jpg a half Moon, small in a dark blue sky with a few stars
* look-alikes (l_*.jpg): bokeh, a city at night, fireworks, snow and rain at night, dust and scratches on a black
  scan, a ball, a plate, a lamp, a clock face, a planet render (Mars, Jupiter), a spotlight, a Petri dish, a sunset
* h_*.jpg       made after the rules' thresholds were fixed (`heldout`): star fields, Moons, and harder look-alikes
                 (white bokeh, snow and dust specks on black, ceiling lights, a golf ball, a plate from above, a clear
                 Petri dish, a street lamp, the sun in fog, a coin on black)

    python tests/data/sky/make_images.py
"""
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parent / "images"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
H, W = 480, 640


def save(a, name, seed=0):
    a = np.asarray(a, np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    a = a + np.random.default_rng(seed + len(name)).normal(0, 2.5, a.shape)  # sensor noise
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(OUT / f"{name}.jpg", quality=88)


def ground(base=(6, 8, 14), seed=0, grad=10):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    g = np.zeros((H, W, 3), np.float32) + np.array(base, np.float32)
    return g + (grad * (1 - yy / H))[..., None] * np.array([0.3, 0.5, 1.0], np.float32)


def stars(img, n, seed, tint=0.3, bright=(40, 255), sigma=(0.5, 1.6)):
    r = np.random.default_rng(seed)
    layer = np.zeros_like(img)
    for _ in range(n):
        x, y = r.uniform(0, W), r.uniform(0, H)
        b = bright[0] + (bright[1] - bright[0]) * r.power(6) if r.random() < 0.9 else r.uniform(150, 255)
        col = np.array([1, 1, 1], np.float32)
        if r.random() < tint:
            col = np.array(r.choice([[1, 0.8, 0.6], [0.7, 0.8, 1], [1, 0.9, 0.7]]), np.float32)
        s = r.uniform(*sigma) * (1.6 if b > 200 else 1)
        x0, x1, y0, y1 = int(max(0, x - 4 * s - 1)), int(min(W, x + 4 * s + 2)), int(max(0, y - 4 * s - 1)), int(min(H, y + 4 * s + 2))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        psf = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
        layer[y0:y1, x0:x1] += b * psf[..., None] * col
    return img + layer


def blobs(img, n, seed, size=(2, 6), colours=None, elong=(1, 2.5), bright=(60, 200)):
    r = np.random.default_rng(seed)
    layer = np.zeros_like(img)
    for _ in range(n):
        x, y = r.uniform(0, W), r.uniform(0, H)
        a = r.uniform(*size)
        b = a / r.uniform(*elong)
        t = r.uniform(0, math.pi)
        col = np.array(colours[r.integers(len(colours))] if colours else (1, 1, 1), np.float32)
        m = np.zeros((H, W), np.float32)
        cv2.ellipse(m, (int(x), int(y)), (max(1, int(a)), max(1, int(b))), math.degrees(t), 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), max(0.6, a / 3))
        layer += r.uniform(*bright) * m[..., None] * col
    return img + layer


def moon_disc(img, cx, cy, rad, seed, phase=1.0, light=230):
    """A lunar disc: maria (low-frequency dark patches), craters (bright rims, dark floors), limb darkening;
    `phase` < 1 keeps the lit part right of the terminator (1 = full)."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = (xx - cx) / rad, (yy - cy) / rad
    rr = np.sqrt(dx * dx + dy * dy)
    inside = rr <= 1
    maria = cv2.GaussianBlur(r.normal(0, 1, (H, W)).astype(np.float32), (0, 0), rad / 5)
    maria = (maria - maria.min()) / (np.ptp(maria) + 1e-6)
    tex = 1 - 0.45 * (maria > 0.55)
    tex = cv2.GaussianBlur(tex.astype(np.float32), (0, 0), rad / 30)
    for _ in range(int(rad * 0.8)):
        a, ang = r.uniform(0, 0.95), r.uniform(0, 2 * math.pi)
        px, py = cx + rad * a * math.cos(ang), cy + rad * a * math.sin(ang)
        cr = rad * r.uniform(0.01, 0.07)
        d = np.sqrt((xx - px) ** 2 + (yy - py) ** 2) / cr
        tex = tex + 0.25 * np.exp(-((d - 1) ** 2) / 0.05) - 0.15 * (d < 0.8)
    tex = tex + cv2.GaussianBlur(r.normal(0, 0.05, (H, W)).astype(np.float32), (0, 0), 1.0)
    limb = 0.75 + 0.25 * np.sqrt(np.clip(1 - rr ** 2, 0, 1))
    lum = light * tex * limb
    if phase < 1:  # the terminator: an ellipse of half-width (2 phase - 1)
        k = 2 * phase - 1
        edge = k * np.sqrt(np.clip(1 - dy ** 2, 0, 1))
        lum = lum * np.clip((dx - (-edge)) * rad / 3, 0, 1)
    lum = np.where(inside, lum, 0)
    soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.8)
    out = img * (1 - soft[..., None]) + (lum * soft)[..., None] * np.array([1, 0.98, 0.93], np.float32)
    return out


def specks(d, r, n, size):
    """n grey specks of radius 0.5-`size` px at random places (dust on a scan)."""
    for _ in range(n):
        x, y, sz = r.uniform(0, W), r.uniform(0, H), r.uniform(0.5, size)
        v = int(r.uniform(90, 255))
        d.ellipse([x - sz, y - sz, x + sz, y + sz], fill=(v, v, v))


def draw(fn):
    im = Image.new("RGB", (W, H), (0, 0, 0))
    fn(ImageDraw.Draw(im), im)
    return np.asarray(im, np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # --- positives ---
    save(stars(ground(seed=1), 900, 1), "s_stars0")
    g = ground((4, 5, 10), grad=6)
    band = np.zeros((H, W), np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    band = np.exp(-((yy - 0.6 * xx - 40) ** 2) / (2 * 70 ** 2))
    neb = cv2.GaussianBlur(np.random.default_rng(2).normal(0, 1, (H, W)).astype(np.float32), (0, 0), 18)
    g = g + (band * (40 + 60 * np.clip(neb * 3, 0, 1)))[..., None] * np.array([0.9, 0.7, 1.0], np.float32)
    save(stars(g, 2500, 2, bright=(25, 200), sigma=(0.4, 1.2)), "s_milky")
    g = stars(ground((2, 2, 4), grad=0), 300, 3)
    save(blobs(g, 160, 3, size=(2, 7), colours=[(1, .8, .6), (.7, .8, 1), (1, .6, .5), (1, 1, 1)], elong=(1, 3)),
         "s_galaxies")
    g = stars(ground((8, 10, 22), seed=4), 700, 4)
    trees = np.zeros((H, W), np.float32)
    r = np.random.default_rng(4)
    top = (H * 0.78 + np.cumsum(r.normal(0, 3, W))).astype(int)
    for x in range(W):
        t = max(0, min(H, top[x] - (r.integers(0, 40) if x % 7 < 2 else 0)))
        trees[t:, x] = 1
    save(g * (1 - trees[..., None]) + 3 * trees[..., None], "s_horizon")
    save(moon_disc(ground((2, 2, 3), grad=0), 320, 240, 170, 5), "m_full")
    save(moon_disc(ground((3, 4, 8), grad=4), 300, 250, 150, 6, phase=0.2), "m_crescent")
    g = stars(ground((10, 18, 45), grad=20), 60, 7, bright=(30, 120))
    save(moon_disc(g, 460, 140, 60, 7, phase=0.55), "m_half")

    # --- look-alikes ---
    warm = [(1, .75, .35), (1, .9, .6), (.6, .8, 1), (1, .4, .3), (1, 1, .8)]
    save(blobs(ground((5, 5, 8), grad=0), 45, 10, size=(15, 45), colours=warm, elong=(1, 1.1), bright=(60, 160)),
         "l_bokeh")

    def city(d, im):
        r = np.random.default_rng(11)
        x = 0
        while x < W:
            bw, bh = int(r.integers(40, 110)), int(r.integers(120, 380))
            d.rectangle([x, H - bh, x + bw, H], fill=(18, 18, 26))
            for wy in range(H - bh + 8, H - 8, 14):
                for wx in range(x + 5, x + bw - 6, 10):
                    if r.random() < 0.45:
                        c = (255, 210, 120) if r.random() < 0.7 else (200, 220, 255)
                        d.rectangle([wx, wy, wx + 4, wy + 6], fill=c)
            x += bw + int(r.integers(2, 10))
        for sx in range(20, W, 70):
            d.ellipse([sx - 3, H - 60 - 3, sx + 3, H - 60 + 3], fill=(255, 190, 90))
    c = draw(city)
    save(np.maximum(cv2.GaussianBlur(c, (0, 0), 0.7), ground((5, 8, 25), grad=25)), "l_citynight")

    def fireworks(d, im):
        r = np.random.default_rng(12)
        for _ in range(4):
            cx, cy, rad = r.integers(100, W - 100), r.integers(80, H - 150), r.integers(60, 140)
            col = tuple(int(v) for v in r.choice([[255, 80, 80], [120, 255, 120], [255, 220, 90], [160, 140, 255]]))
            for k in range(60):
                a = 2 * math.pi * k / 60 + r.normal(0, 0.03)
                rr = rad * r.uniform(0.7, 1.0)
                d.line([cx + 0.2 * rr * math.cos(a), cy + 0.2 * rr * math.sin(a),
                        cx + rr * math.cos(a), cy + rr * math.sin(a) + 0.1 * rr], fill=col, width=2)
    save(cv2.GaussianBlur(draw(fireworks), (0, 0), 1.0) + ground((4, 4, 10), grad=8), "l_fireworks")
    g = ground((20, 22, 30), grad=0)
    g[int(H * 0.7):] += 90  # snow lying on the ground, lit
    g = blobs(g, 500, 13, size=(1.5, 6), elong=(1, 1.3), bright=(80, 200))
    save(g, "l_snow_night")

    def rain(d, im):
        r = np.random.default_rng(14)
        for _ in range(500):
            x, y, ln = r.uniform(0, W), r.uniform(0, H), r.uniform(15, 40)
            v = int(r.uniform(80, 200))
            d.line([x, y, x + 0.15 * ln, y + ln], fill=(v, v, v), width=1)
        for sx in range(40, W, 150):  # street lamps
            d.ellipse([sx - 10, 100, sx + 10, 120], fill=(255, 200, 120))
    save(cv2.GaussianBlur(draw(rain), (0, 0), 0.8) + ground((12, 12, 18), grad=10), "l_rain_night")

    def dust(d, im):
        r = np.random.default_rng(15)
        specks(d, r, 250, 2.5)
        for _ in range(14):  # hairs and scratches
            x, y = r.uniform(0, W), r.uniform(0, H)
            pts = [(x, y)]
            a = r.uniform(0, 2 * math.pi)
            for _ in range(int(r.integers(10, 60))):
                a += r.normal(0, 0.15)
                x, y = x + 3 * math.cos(a), y + 3 * math.sin(a)
                pts.append((x, y))
            v = int(r.uniform(120, 230))
            d.line(pts, fill=(v, v, v), width=1)
    save(cv2.GaussianBlur(draw(dust), (0, 0), 0.6) + 8, "l_dust_scan")

    def shaded_sphere(cx, cy, rad, albedo, light=(-0.5, -0.6, 0.62)):
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        dx, dy = (xx - cx) / rad, (yy - cy) / rad
        inside = dx * dx + dy * dy <= 1
        dz = np.sqrt(np.clip(1 - dx * dx - dy * dy, 0, 1))
        shade = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1) * 0.85 + 0.1
        spec = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1) ** 40 * 0.6
        return inside, shade, spec, dx, dy
    inside, shade, spec, dx, dy = shaded_sphere(320, 240, 170, 1)
    panels = (np.abs(np.sin(6 * np.arctan2(dy, dx))) < 0.06) | (np.abs(np.sin(9 * dy)) < 0.05)
    ball = (235 * shade * (1 - 0.7 * panels) + 255 * spec)[..., None] * np.array([1, 1, 1], np.float32)
    save(np.where(inside[..., None], ball, 5), "l_ball")

    def plate(d, im):
        d.ellipse([90, 60, 550, 420], fill=(236, 236, 232))
        d.ellipse([170, 120, 470, 360], fill=(226, 226, 222))
        d.ellipse([170, 120, 470, 360], outline=(200, 200, 196), width=3)
    p = cv2.GaussianBlur(draw(plate), (0, 0), 1.5)
    save(p + ground((2, 2, 2), grad=0), "l_plate")
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rr = np.sqrt((xx - 320) ** 2 + (yy - 220) ** 2)
    lamp = np.clip(255 * np.exp(-np.maximum(rr - 90, 0) / 60), 0, 255)[..., None] * np.array([1, .85, .5], np.float32)
    save(lamp + 4, "l_lamp")

    def clock(d, im):
        d.ellipse([110, 30, 530, 450], fill=(230, 228, 220), outline=(60, 60, 60), width=10)
        f = ImageFont.truetype(FONT, 36)
        for k in range(1, 13):
            a = math.radians(k * 30 - 90)
            d.text((320 + 165 * math.cos(a), 240 + 165 * math.sin(a)), str(k), fill=(20, 20, 20), font=f, anchor="mm")
        for k in range(60):
            a = math.radians(k * 6)
            d.line([320 + 195 * math.cos(a), 240 + 195 * math.sin(a), 320 + 185 * math.cos(a),
                    240 + 185 * math.sin(a)], fill=(30, 30, 30), width=2)
        d.line([320, 240, 320 + 90, 240 - 70], fill=(10, 10, 10), width=9)
        d.line([320, 240, 320 - 40, 240 + 150], fill=(10, 10, 10), width=5)
    save(cv2.GaussianBlur(draw(clock), (0, 0), 0.8), "l_clock")
    inside, shade, _, dx, dy = shaded_sphere(320, 240, 180, 1, light=(0.55, -0.3, 0.78))
    r = np.random.default_rng(16)
    tex = cv2.GaussianBlur(r.normal(0, 1, (H, W)).astype(np.float32), (0, 0), 12)
    mars = (shade * (200 + 30 * tex))[..., None] * np.array([0.85, 0.42, 0.25], np.float32)
    save(stars(np.where(inside[..., None], mars, 3), 120, 16, bright=(30, 120)), "l_planet_mars")
    bands = np.sin(dy * 14 + 0.6 * tex) * 0.5 + 0.5
    jup = (shade * 225)[..., None] * (np.array([0.95, 0.85, 0.7], np.float32) * (1 - 0.35 * bands[..., None])
                                       + np.array([0.0, -0.1, -0.2], np.float32) * bands[..., None])
    save(np.where(inside[..., None], jup, 3), "l_planet_jupiter")
    rr = np.sqrt(((xx - 320) / 1.0) ** 2 + ((yy - 260) / 0.7) ** 2)
    spot = 250 * np.clip(1.2 - rr / 200, 0, 1) ** 1.5
    save((spot + 6)[..., None] * np.array([1, 0.97, 0.9], np.float32), "l_spotlight")

    def petri(d, im):
        d.ellipse([100, 40, 540, 460], fill=(200, 170, 110), outline=(240, 240, 235), width=6)
        r = np.random.default_rng(17)
        for _ in range(80):
            a, q = r.uniform(0, 2 * math.pi), 200 * math.sqrt(r.uniform(0, 0.9))
            x, y, s = 320 + q * math.cos(a), 250 + q * math.sin(a), r.uniform(3, 14)
            d.ellipse([x - s, y - s, x + s, y + s], fill=(245, 240, 225), outline=(170, 140, 90))
    save(cv2.GaussianBlur(draw(petri), (0, 0), 1.0) + 5, "l_petri")
    t = yy / H
    sky = np.stack([250 - 80 * t, 120 + 40 * t - 60 * t, 60 + 40 * t], -1)
    sky[int(H * 0.65):] = sky[int(H * 0.65):] * 0.45
    rr = np.sqrt((xx - 320) ** 2 + (yy - 250) ** 2)
    sun = np.clip(1.3 - rr / 60, 0, 1)[..., None] * np.array([255, 200, 90], np.float32)
    save(np.maximum(sky, sun) + np.clip(40 * np.exp(-rr / 120), 0, 255)[..., None], "l_sunset")


def heldout():
    """Made after the rules' thresholds were fixed (other seeds, sizes, tints and harder look-alikes): the check
    the rules were not tuned on (docs/benchmarks.md, "Night sky")."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    save(stars(ground((5, 6, 9), grad=4), 450, 21, sigma=(0.5, 1.2)), "h_stars_sparse")
    save(stars(ground((3, 3, 6), grad=3), 1600, 22, bright=(30, 230)), "h_stars_dense")
    neb = np.exp(-(((xx - 250) / 130) ** 2 + ((yy - 200) / 90) ** 2))
    cloud = cv2.GaussianBlur(np.random.default_rng(23).normal(0, 1, (H, W)).astype(np.float32), (0, 0), 10)
    g = ground((4, 4, 8), grad=0) + (neb * 70 * np.clip(0.5 + cloud * 2, 0, 1))[..., None] * np.array(
        [1.0, 0.35, 0.45], np.float32)
    save(stars(g, 900, 23), "h_nebula")
    save(moon_disc(ground((2, 2, 3), grad=0), 250, 260, 80, 24), "h_moon_small")
    m = moon_disc(ground((6, 6, 10), grad=5), 360, 220, 140, 25, phase=0.3, light=210)
    save(cv2.GaussianBlur(m, (0, 0), 1.2) * np.array([1, 0.92, 0.75], np.float32), "h_moon_low_crescent")
    save(stars(moon_disc(ground((4, 6, 14), grad=8), 300, 240, 120, 26, phase=0.8), 80, 26, bright=(30, 100)),
         "h_moon_gibbous")
    save(blobs(ground((4, 4, 6), grad=0), 140, 27, size=(5, 11), elong=(1, 1.1), bright=(70, 150)), "h_bokeh_white")
    save(blobs(ground((3, 3, 4), grad=0), 700, 28, size=(1.5, 5), elong=(1, 1.4), bright=(70, 200)), "h_snow_black")

    save(cv2.GaussianBlur(draw(lambda d, im: specks(d, np.random.default_rng(29), 400, 2.0)), (0, 0), 0.6) + 6,
         "h_dust_specks")

    def ceiling(d, im):
        for y in range(40, H, 60):
            for x in range(40, W, 60):
                d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(255, 250, 240))
    save(cv2.GaussianBlur(draw(ceiling), (0, 0), 1.0) + 10, "h_ceiling_lights")
    rr = np.sqrt((xx - 320) ** 2 + (yy - 240) ** 2)
    inside = rr <= 160
    dz = np.sqrt(np.clip(1 - (rr / 160) ** 2, 0, 1))
    dimples = np.sin(xx / 4.0) * np.sin(yy / 4.0)
    golf = 150 + 90 * dz + 12 * dimples
    save(np.where(inside, golf, 4), "h_golf_ball")
    cr = cv2.GaussianBlur(np.random.default_rng(30).normal(0, 1, (H, W)).astype(np.float32), (0, 0), 3)
    save(np.where(rr <= 200, 215 + 10 * (rr > 185) + 6 * cr, 3), "h_plate_top")
    r = np.random.default_rng(31)
    dish = np.where(rr <= 210, 110.0, 3.0) + 60 * (np.abs(rr - 205) < 5)
    for _ in range(60):
        a, q = r.uniform(0, 2 * math.pi), 190 * math.sqrt(r.uniform(0, 0.9))
        dd = np.sqrt((xx - 320 - q * math.cos(a)) ** 2 + (yy - 240 - q * math.sin(a)) ** 2)
        dish = np.where(dd < r.uniform(3, 10), 220, dish)
    save(dish, "h_petri_clear")
    save(np.clip(255 * np.exp(-np.maximum(rr - 40, 0) / 25), 0, 255)[..., None] * np.array([1, .95, .85], np.float32)
         + ground((10, 12, 20), grad=10), "h_street_lamp")
    fog = 120 + 20 * (yy / H)
    save(np.where(rr <= 70, 235, fog) + 0 * xx, "h_sun_fog")
    relief = cv2.GaussianBlur(np.random.default_rng(32).normal(0, 1, (H, W)).astype(np.float32), (0, 0), 6)
    relief = relief + 2.5 * (np.abs(rr - 150) < 8) + 1.5 * (np.hypot((xx - 300) / 50, (yy - 230) / 70) < 1)
    emboss = cv2.filter2D(relief, -1, np.array([[-1, 0, 0], [0, 0, 0], [0, 0, 1]], np.float32))
    coin = 160 + 40 * emboss + 4 * cr
    save(np.where(rr <= 170, coin, 4)[..., None] * np.array([1, 0.97, 0.9], np.float32), "h_coin_black")


if __name__ == "__main__":
    main()
    heldout()
