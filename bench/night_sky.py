"""Night-sky pixel rules tried for issue 15 item 1 (subjects) and NOT kept in the local provider: can generic
pixel rules name (a) a star field and (b) the Moon without naming look-alikes? Prints, per group of images, how
many each rule names, and the figures of every image with --details.

    python bench/night_sky.py [--details]

Images: every image of tests/data/quality, and tests/data/sky/images (tests/data/sky/make_images.py): s_*/m_*/l_*
were made and looked at while the thresholds were set (the quality set's hubble.jpg is the only real star field;
the quality set has no Moon disc: moon.jpg is a crop of the lunar surface); h_* were made after the thresholds were
fixed and were not tuned on. Result (docs/benchmarks.md, "Night sky"): both rules name look-alikes made after them
(dust specks on a black scan and snow against a black night as stars, a clear Petri dish as the Moon), so the
local provider names neither. The rules are kept here, measured, for the next attempt (a model that knows the
sky), not imported by the pipeline.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ROOT / "tests" / "data" / "quality" / "images"
SKY = ROOT / "tests" / "data" / "sky" / "images"

SKY_EDGE = 640
"""long edge (px) the night-sky figures are measured at (a smaller image is not enlarged)"""
SKY_POINT_STEP = 30
"""grey levels a pixel must be brighter than its ground (the image opened with a 9 px disc) to be a bright point"""
SKY_STREAK = 15
"""a bright point this long (px, its box's long side at SKY_EDGE) is a streak: rain, a hair, a firework's trail"""
SKY_DISC_STEP = 50
"""grey levels above the image's outer ring a pixel must be to be part of a bright disc (and >= 60)"""


@dataclass(frozen=True)
class Disc:
    """The largest bright region, with the circle its outline follows (fitted to its convex outline: the limb)."""
    radius: float
    """the circle's radius as a share of the image's short side"""
    cover: int
    """degrees of the circle the region's outline follows (within 2 % of the radius), in 10-degree steps"""
    inside: float
    """share of the region inside the circle (x 1.03)"""
    sky: float
    """median brightness outside the circle (x 1.15)"""
    texture: float
    """median |detail| inside the region (grey minus its blur at radius/15), as a share of its median brightness"""
    saturation: float
    """mean HSV saturation of the region"""
    shading: float
    """share of the region's brightness variance a smooth quadratic surface explains: a lit ball's or a rendered
    planet's shading (the Moon's brightness is its markings: maria and craters)"""


@dataclass(frozen=True)
class Sky:
    ground: float
    """median brightness (0-255) of the ground, the image with its small bright points opened away"""
    dark_share: float
    """share of the ground darker than 60"""
    points: float
    """bright points (>= SKY_POINT_STEP above their ground) per 100 000 px at SKY_EDGE"""
    point_share: float
    """share of the pixels in bright points"""
    point_area: float
    """95th percentile of a point's area (px at SKY_EDGE)"""
    streaks: float
    """share of the points that are streaks (SKY_STREAK)"""
    point_saturation: float
    """mean HSV saturation of the point pixels: stars are white or faintly tinted, windows and fireworks coloured"""
    spread: float
    """share of the 4 x 4 cells of the image holding at least a quarter of the mean points per cell: stars fill
    the sky, a city's lights sit under a dark sky"""
    disc: Disc | None
    faint: float = 0.0
    """share of the points whose peak (above the ground) is under half the 95th-percentile peak: not used by the
    rules; a real star field is mostly faint stars"""


def _circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares circle through points (centre x, centre y, radius)."""
    a = np.c_[2 * x, 2 * y, np.ones_like(x)]
    (cx, cy, k), *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    return float(cx), float(cy), float(np.sqrt(max(0.0, k + cx * cx + cy * cy)))


def _bright_disc(arr: np.ndarray, grey: np.ndarray, hsv: np.ndarray) -> Disc | None:
    """The largest region SKY_DISC_STEP brighter than the image's outer ring, and the circle of its limb: a circle
    fitted (deterministic RANSAC over triples, then least squares on the inliers) to the points of its outline that
    lie on its convex hull, so a crescent's or half Moon's terminator (inside the hull) does not bend it."""
    import cv2

    g = grey.astype(np.float32)
    h, w = g.shape
    ring = np.concatenate([g[:3].ravel(), g[-3:].ravel(), g[:, :3].ravel(), g[:, -3:].ravel()])
    mask = (g >= max(float(np.median(ring)) + SKY_DISC_STEP, 60.0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[i, cv2.CC_STAT_AREA] < 50:
        return None
    comp = (lab == i).astype(np.uint8)
    contour = max(cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=cv2.contourArea)
    hull = cv2.convexHull(contour).astype(np.float32)
    pts = contour[:, 0, :].astype(np.float64)
    near = np.array([abs(cv2.pointPolygonTest(hull, (float(px), float(py)), True)) <= 1.5 for px, py in pts])
    x, y = pts[near, 0], pts[near, 1]
    if len(x) < 10:
        return None
    rng = np.random.default_rng(0)
    best, best_in = None, -1
    for _ in range(100):
        j = rng.choice(len(x), 3, replace=False)
        try:
            cx, cy, r = _circle(x[j], y[j])
        except np.linalg.LinAlgError:
            continue
        if not 3 <= r <= 2 * max(h, w):
            continue
        inl = np.abs(np.hypot(x - cx, y - cy) - r) <= max(1.5, 0.02 * r)
        if inl.sum() > best_in:
            best, best_in = inl, int(inl.sum())
    if best is None or best_in < 10:
        return None
    cx, cy, r = _circle(x[best], y[best])
    d = np.hypot(x - cx, y - cy)
    on = np.abs(d - r) <= max(1.5, 0.02 * r)
    cover = 10 * len(np.unique((np.degrees(np.arctan2(y[on] - cy, x[on] - cx)) // 10).astype(int)))
    yy, xx = np.mgrid[0:h, 0:w]
    rr = (xx - cx) ** 2 + (yy - cy) ** 2
    region = comp > 0
    inside = float((rr[region] <= (1.03 * r) ** 2).mean())
    out = rr > (1.15 * r) ** 2
    sky = float(np.median(g[out])) if out.any() else 255.0
    k = max(3, int(r * 0.16)) | 1
    core = cv2.erode(comp, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    if not core.any():
        return None
    med = max(1.0, float(np.median(g[core])))
    detail = g - cv2.GaussianBlur(g, (0, 0), max(2.0, r / 15))
    return Disc(radius=r / min(h, w), cover=cover, inside=inside, sky=sky,
                texture=float(np.median(np.abs(detail[core]))) / med,
                saturation=float(hsv[..., 1][region].mean()) / 255.0, shading=_shading(g, core))


def _shading(g: np.ndarray, core: np.ndarray) -> float:
    """R² of a quadratic surface fitted to the brightness of `core` (0 = no smooth shading, 1 = only shading)."""
    yy, xx = np.nonzero(core)
    v = g[core].astype(np.float64)
    if len(v) < 10 or float(v.var()) <= 1e-6:
        return 0.0
    x, y = xx / max(1, g.shape[1]), yy / max(1, g.shape[0])
    a = np.c_[x, y, x * x, y * y, x * y, np.ones_like(x)]
    coef, *_ = np.linalg.lstsq(a, v, rcond=None)
    return float(max(0.0, 1.0 - ((a @ coef - v) ** 2).mean() / v.var()))


def night_sky(arr: np.ndarray) -> Sky:
    """Night-sky figures on the image at <= SKY_EDGE px: the ground is the grey image opened with a 9 px disc
    (points smaller than that are taken away), a point is SKY_POINT_STEP brighter than its ground; and the largest
    bright disc (`_bright_disc`). Read by `starry_sky` and `moon_disc`."""
    import cv2

    h, w = arr.shape[:2]
    if max(h, w) > SKY_EDGE:
        scale = SKY_EDGE / max(h, w)
        arr = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if min(h, w) < 32:
        return Sky(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    hsv = cv2.cvtColor(arr, cv2.COLOR_RGB2HSV)
    ground = cv2.medianBlur(cv2.morphologyEx(grey, cv2.MORPH_OPEN,
                                             cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))), 5)
    points = ((grey.astype(np.int16) - ground.astype(np.int16)) >= SKY_POINT_STEP).astype(np.uint8)
    n, lab, stats, centres = cv2.connectedComponentsWithStats(points, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    longest = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    faint = 0.0
    if len(areas):
        peaks = np.zeros(n, np.int16)
        np.maximum.at(peaks, lab.ravel(), (grey.astype(np.int16) - ground.astype(np.int16)).ravel())
        faint = float((peaks[1:] < 0.5 * np.percentile(peaks[1:], 95)).mean())
        cells = np.bincount((np.minimum(3, centres[1:, 1] * 4 // h) * 4 + np.minimum(3, centres[1:, 0] * 4 // w))
                            .astype(int), minlength=16)
        spread = float((cells >= 0.25 * cells.mean()).mean())
    else:
        spread = 0.0
    return Sky(ground=float(np.median(ground)), dark_share=float((ground < 60).mean()),
               points=len(areas) * 1e5 / (h * w), point_share=float(points.mean()),
               point_area=float(np.percentile(areas, 95)) if len(areas) else 0.0,
               streaks=float((longest >= SKY_STREAK).mean()) if len(areas) else 0.0,
               point_saturation=float(hsv[..., 1][points > 0].mean()) / 255.0 if len(areas) else 0.0,
               spread=spread, disc=_bright_disc(arr, grey, hsv), faint=faint)



STARS_GROUND = 40
STARS_DARK_SHARE = 0.9
"""Sky.ground at most and Sky.dark_share at least: a dark sky edge to edge (quality set: hubble 8 / 0.99; every
other photo has under 0.75 of its ground dark: grace_hopper 0.57, rocket 0.64, flower 0.71)"""
STARS_POINTS = 100
"""Sky.points at least: many points (hubble 768 per 100 000 px)"""
STARS_POINT_SHARE = 0.12
STARS_POINT_AREA = 100
"""Sky.point_share and Sky.point_area at most: small points (hubble 0.056, 26 px), not bokeh discs or fireworks"""
STARS_STREAKS = 0.05
"""Sky.streaks at most: points, not rain, hairs and scratches or firework trails (hubble 0.006)"""
STARS_SATURATION = 0.3
"""Sky.point_saturation at most: white or faintly tinted (hubble 0.15), not windows, street lamps, fireworks"""
STARS_SPREAD = 0.9
"""Sky.spread at least: the points fill the frame (hubble 1.0), not the lit part under a dark sky (a city)"""


def starry_sky(sky: Sky) -> bool:
    """A star field: a dark ground edge to edge with many small, white, round bright points filling the frame
    (STARS_*), and no Moon (`moon_disc`)."""
    if moon_disc(sky):
        return False
    return (sky.ground <= STARS_GROUND and sky.dark_share >= STARS_DARK_SHARE and sky.points >= STARS_POINTS
            and sky.point_share <= STARS_POINT_SHARE and sky.point_area <= STARS_POINT_AREA
            and sky.streaks <= STARS_STREAKS and sky.point_saturation <= STARS_SATURATION
            and sky.spread >= STARS_SPREAD)


MOON_RADIUS = (0.04, 0.5)
"""Disc.radius (share of the short side): a disc, neither a speck (a star, a galaxy: hubble 0.026) nor the frame"""
MOON_COVER = 150
MOON_INSIDE = 0.97
"""Disc.cover at least (degrees of the circle the outline follows: a crescent's limb is 180) and Disc.inside:
the bright region is round or a part of a round disc"""
MOON_SKY = 40
"""Disc.sky at most: dark around the disc (a sunset's sun, coins on a grey table are not)"""
MOON_TEXTURE = 0.03
"""Disc.texture at least: marked (maria, craters), not a plate, a lamp, a spotlight or a clock's plain face"""
MOON_SATURATION = 0.15
"""Disc.saturation at most: grey or faintly tinted, not a planet render, a Petri dish's agar or a lamp"""
MOON_SHADING = 0.5
"""Disc.shading at most: its brightness is markings, not a lit ball's smooth shading"""


def moon_disc(sky: Sky) -> bool:
    """The Moon: one bright round (or crescent, half) disc on a dark sky, grey, marked, not smoothly shaded
    (MOON_*). A close-up of the lunar surface (no disc, no sky) is not recognised."""
    disc = sky.disc
    if disc is None:
        return False
    return (MOON_RADIUS[0] <= disc.radius <= MOON_RADIUS[1] and disc.cover >= MOON_COVER
            and disc.inside >= MOON_INSIDE and disc.sky <= MOON_SKY and disc.texture >= MOON_TEXTURE
            and disc.saturation <= MOON_SATURATION and disc.shading <= MOON_SHADING)


def _load(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            flat.alpha_composite(im)
            im = flat
        return np.asarray(im.convert("RGB"))


def _group(path: Path) -> str:
    name = path.name
    if path.parent == QUALITY:
        return {"hubble.jpg": "quality set: star field (hubble)", "moon.jpg": "quality set: lunar surface crop (moon)"
                }.get(name, "quality set: the other images")
    when = "made after the thresholds" if name.startswith("h_") else "made, seen while setting the thresholds"
    kind = {"s": "star fields", "m": "Moon discs", "l": "look-alikes"}.get(name[0])
    if name.startswith("h_"):
        kind = ("star fields" if name.startswith(("h_stars", "h_nebula")) else
                "Moon discs" if name.startswith("h_moon") else "look-alikes")
    return f"{when}: {kind}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--details", action="store_true", help="print every image's figures")
    args = ap.parse_args(argv)
    paths = sorted(QUALITY.iterdir()) + sorted(SKY.glob("*.jpg"))
    groups: dict[str, list[tuple[str, bool, bool]]] = {}
    for path in paths:
        sky = night_sky(_load(path))
        stars, moon = starry_sky(sky), moon_disc(sky)
        groups.setdefault(_group(path), []).append((path.name, stars, moon))
        if args.details:
            d = sky.disc
            disc = (f"disc r={d.radius:.3f} cover={d.cover} inside={d.inside:.2f} sky={d.sky:.0f} "
                    f"texture={d.texture:.3f} sat={d.saturation:.2f} shading={d.shading:.2f}" if d else "no disc")
            print(f"{path.name:28s} ground={sky.ground:.0f} dark={sky.dark_share:.2f} points={sky.points:.0f} "
                  f"share={sky.point_share:.3f} area95={sky.point_area:.0f} streaks={sky.streaks:.3f} "
                  f"sat={sky.point_saturation:.2f} spread={sky.spread:.2f} faint={sky.faint:.2f} | {disc}"
                  + (" -> STARS" if stars else "") + (" -> MOON" if moon else ""))
    print("| images | n | named stars | named the Moon | which |")
    print("| --- | --- | --- | --- | --- |")
    for group, rows in groups.items():
        named = [f"{n}: {'stars' if s else 'Moon'}" for n, s, m in rows if s or m]
        print(f"| {group} | {len(rows)} | {sum(s for _, s, _ in rows)} | {sum(m for _, _, m in rows)} | "
              f"{', '.join(named) or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
