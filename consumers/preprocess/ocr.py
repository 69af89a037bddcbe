"""OCR with RapidOCR (PP-OCRv4 det + rec on onnxruntime, the models ship in the rapidocr-onnxruntime wheel) and
tesseract (pytesseract.image_to_data), gated by a cheap text-likelihood check so images without text skip it.

Engine per image (`ocr_engine: auto`): RapidOCR reads text in photos, on products, logos, banners and signs far
better than tesseract at about its CPU cost (detector limit type "max": an image is never upscaled for detection,
as the default "min" 736 px did, ~7x the CPU; RapidOCR itself caps the detector input at 960, 1500 or 2000 px by
the image's size). Its lines are regrouped by column (in_reading_order); a dense single-column page
(>= DENSE_LINES lines) is read again by tesseract, and tesseract's answer is kept when it found as many words
(PP-OCR's detector misses a slanted line now and then). PP-OCR's recogniser often drops the space between tightly
set capitals ("SUMMERSALE"): such runs are split into words with wordninja's English unigram model. Without
RapidOCR, tesseract reads everything (logged once).

The gate (text_likelihood) works on a 640 px grayscale: morphological gradient -> Otsu -> horizontal closing
joins glyphs into line blobs -> connected components; a component counts as a text line when it is wide and
short, mostly filled, and of glyph height. When none is, `wordmark_row` looks for a logo's word in letters too
large for that (a row of letter-shaped components on a plain ground). It costs ~2-4 ms per image against
~150-1500 ms for tesseract.
"""
from __future__ import annotations

import math
import os
import re
import threading
from typing import Any

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # tesseract must not fan out over the worker's cores

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from domain.vision.decode import flat_small  # noqa: E402
from consumers.preprocess.lazy import LazyModel  # noqa: E402
from consumers.preprocess.metadata import clean_text  # noqa: E402

GATE_EDGE = 640
DENSE_LINES = 5
BOX_THRESH = 0.3
"""PP-OCR detector: mean text probability a line box needs (RapidOCR's default 0.5 skipped a slightly slanted,
unevenly lit line of a page scan and a code line; on the quality set no image without text gained any)"""
SPLIT_MAX_RANK = 25_000
_log_once = threading.Event()


def text_likelihood(img: Image.Image) -> tuple[bool, int]:
    """(looks like it has text, number of text-line candidates) on a small grayscale copy (transparency on white,
    as OCR reads it: a plain convert("L") makes transparent pixels black, and dark text on them invisible)."""
    a = np.asarray(flat_small(img, GATE_EDGE))
    h, w = a.shape
    if h < 16 or w < 16:
        return False, 0
    grad = cv2.morphologyEx(a, cv2.MORPH_GRADIENT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    otsu, bw = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # contrast: Otsu's threshold, except for a two-valued gradient (a bilevel 1-bit image kept at its size: the
    # gradient is 0 or the full step), where Otsu returns the lower value (0) however sharp the step is
    levels = np.flatnonzero(np.bincount(grad.ravel(), minlength=256))
    contrast = float(levels[-1] - levels[0]) if len(levels) <= 2 else otsu
    if contrast < 20:  # almost no contrast anywhere: flat/gradient
        return False, 0
    joined = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    lines = 0
    for i in range(1, n):
        x, y, cw, ch, area = stats[i]
        if ch < 6 or ch > h * 0.3 or cw < 2.0 * ch or cw < 20:
            continue
        fill = area / float(cw * ch)
        if 0.35 <= fill <= 0.95:
            # glyphs leave gaps: count vertical transitions along the middle row of the raw edge map
            row = bw[y + ch // 2, x:x + cw] > 0
            transitions = int(np.count_nonzero(row[1:] != row[:-1]))
            if transitions >= max(4, cw // (ch * 2)):
                lines += 1
    if lines == 0 and wordmark_row(a):
        return True, 1
    return lines >= 1, lines


PLAIN_GROUND = 0.9
"""share of the border pixels within GROUND_TOLERANCE grey levels of their median a plain ground needs"""
GROUND_TOLERANCE = 12
INK_STEP = 48
"""grey levels from the ground that make a pixel ink (the gate's wordmark check and drawn_letters)"""
WORDMARK_GLYPHS = 4
"""glyphs in a row that make a wordmark (fewer is a mark, a pair of shapes, an icon)"""
GLYPH_WIDE = 1.6
GLYPH_MAX_WIDTH = 2.1
"""a glyph-like component wider than GLYPH_WIDE times its height (a bold serif "m" is 1.9 times as wide as tall; so
are two shapes touching) continues a row but is not counted among its WORDMARK_GLYPHS letters; wider than
GLYPH_MAX_WIDTH it is none (before, the "m" of a transparent "Velmora" wordmark broke the row into "Vel" and "ora",
three letters each, and the gate skipped it)"""
WORDMARK_MAX_GLYPHS = 200
"""more glyph-like components than this is no wordmark (a short word, perhaps with a tagline, whose small text
the line check finds) but a grid, a pattern, a page: the row search, quadratic in them, is not run (a 640 px grid
of small outlined cells, ~5,000 of them, took 8-14 s)"""


def glyph_candidates(a: np.ndarray) -> list[tuple[int, int, int, int, float]] | None:
    """The letter-shaped ink components (x, y, width, height, fill) of the gate's grayscale `a` on a plain
    ground (see wordmark_row), or None when the ground is not plain."""
    h = a.shape[0]
    border = np.concatenate([a[:2].ravel(), a[-2:].ravel(), a[:, :2].ravel(), a[:, -2:].ravel()]).astype(np.int16)
    ground = int(np.median(border))
    if np.mean(np.abs(border - ground) <= GROUND_TOLERANCE) < PLAIN_GROUND:
        return None
    ink = (np.abs(a.astype(np.int16) - ground) >= INK_STEP).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    x, y, cw, ch, area = (stats[1:, k].astype(np.int64) for k in range(5))
    fill = area / np.maximum(cw * ch, 1)
    keep = ((ch >= 8) & (ch <= 0.95 * h) & (cw >= 0.12 * ch) & (cw <= GLYPH_MAX_WIDTH * ch) & (fill >= 0.12)
            & (fill <= 0.8))
    return [(int(x[i]), int(y[i]), int(cw[i]), int(ch[i]), float(fill[i])) for i in np.flatnonzero(keep)]


def wordmark_row(a: np.ndarray) -> bool:
    """A logo's wordmark on the gate's grayscale `a`: a short word in large letters (taller than the line check's
    glyph height, or outlined by the gradient so thinly that its line blobs are hollow) on a plain ground.

    Only for a plain ground (>= PLAIN_GROUND of the border pixels within GROUND_TOLERANCE of their median: a
    logo, an icon, a product on white; photographs are not): the pixels differing from the ground by >= 48
    grey levels are split into connected components, and a component is glyph-like when it is 8 px to 95 % of
    the image tall, 0.12-GLYPH_MAX_WIDTH times as wide as tall and 12-80 % filled (a filled bar, disc or product
    silhouette is fuller, a thin frame emptier). A wordmark is >= WORDMARK_GLYPHS glyphs no wider than GLYPH_WIDE
    in a row (a wider one, an "m", continues it without counting): each next to the last
    (gap < 0.6 x the taller one's height, heights within 2.8x), sharing its baseline or its top (descenders,
    ascenders), and of more than one shape (a row of equal dots or stars is not a word). Past
    WORDMARK_MAX_GLYPHS glyph-like components there is none."""
    glyphs = glyph_candidates(a)
    if glyphs is None or not WORDMARK_GLYPHS <= len(glyphs) <= WORDMARK_MAX_GLYPHS:
        return False
    glyphs.sort()
    for start in range(len(glyphs) - WORDMARK_GLYPHS + 1):
        row = [glyphs[start]]
        for g in glyphs[start + 1:]:
            x, y, cw, ch, _ = row[-1]
            gx, gy, gw, gh, _ = g
            tall = max(ch, gh)
            if gx - (x + cw) >= 0.6 * tall:
                break
            if gx < x + cw // 2 or not 1 / 2.8 <= gh / ch <= 2.8:
                continue  # overlapping (a dot over its stem, a part of the last glyph) or of another size
            if abs((gy + gh) - (y + ch)) <= 0.12 * tall or abs(gy - y) <= 0.12 * tall:
                row.append(g)
        letters = [g for g in row if g[2] <= GLYPH_WIDE * g[3]]
        if len(letters) >= WORDMARK_GLYPHS:
            shapes = {(round(cw / ch * 4), round(fill * 5)) for _, _, cw, ch, fill in letters}
            if len(shapes) >= 2:
                return True
    return False


def run_ocr(img: Image.Image, *, lang: str = "eng", max_edge: int = 2000, min_confidence: float = 30.0,
            timeout_s: float = 30.0, max_chars: int = 4000, full_size: tuple[int, int] | None = None) -> dict:
    """Ocr record from a full tesseract pass (page segmentation auto). Word boxes are in the pixels of
    `full_size` (the oriented source) when given, else of `img`."""
    import pytesseract

    gray = flat_small(img, max_edge)
    sx = full_size[0] / gray.width if full_size else 1.0
    sy = full_size[1] / gray.height if full_size else 1.0
    gray = ImageOps.autocontrast(gray, cutoff=1)  # coloured text on coloured ground reads better stretched
    try:
        d = pytesseract.image_to_data(gray, lang=lang, output_type=pytesseract.Output.DICT, timeout=timeout_s,
                                      config="--oem 1 --psm 3")
    except pytesseract.TesseractNotFoundError:
        return skipped(lang, "tesseract_unavailable")
    except RuntimeError as exc:  # pytesseract raises RuntimeError on its timeout
        return skipped(lang, "timeout" if "timeout" in str(exc).lower() else "tesseract_error")
    except pytesseract.TesseractError:
        return skipped(lang, "tesseract_error")
    words, lines, confs = [], {}, []
    for i, raw in enumerate(d["text"]):
        text = clean_text(raw, 100)
        try:
            conf = float(d["conf"][i])
        except (TypeError, ValueError):
            continue
        if not text or conf < min_confidence or not re.search(r"\w", text):
            continue
        words.append({"text": text, "confidence": round(conf, 2), "left": round(int(d["left"][i]) * sx),
                      "top": round(int(d["top"][i]) * sy), "width": round(int(d["width"][i]) * sx),
                      "height": round(int(d["height"][i]) * sy)})
        confs.append(conf)
        lines.setdefault((d["block_num"][i], d["par_num"][i], d["line_num"][i]), []).append(text)
    full = "\n".join(" ".join(ws) for ws in lines.values())[:max_chars]
    return {"text": full, "words": words[:2000], "mean_confidence": round(sum(confs) / len(confs), 2) if confs else None,
            "language": lang, "skipped": False, "skip_reason": None}


# --- RapidOCR ---------------------------------------------------------------------------------------------------

def _load_rapid():
    import logging

    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, det_limit_type="max", print_verbose=False)
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return engine


_rapid = LazyModel(_load_rapid, "RapidOCR unavailable, tesseract reads every image")
_rapid_call_lock = threading.Lock()


def rapid_engine():
    """The RapidOCR pipeline, loaded once per process on first use from the wheel's bundled models (never
    downloaded), one onnxruntime thread; None when the package is not installed."""
    return _rapid.get()


def _language_model():
    """wordninja's English unigram model (126k words from Wikipedia, by frequency; MIT), or None."""
    try:
        import wordninja

        return wordninja.DEFAULT_LANGUAGE_MODEL
    except Exception:  # noqa: BLE001 - not installed: nothing is split
        return None


OTHER_LANGUAGES = ("fr", "es", "de", "it")
"""Languages tried, in this order, on a glued run English cannot split: pyspellchecker's word-frequency lists
(OpenSubtitles counts, MIT), accents stripped (OCR of capitals reads "ETE" for "ÉTÉ"), the SPLIT_MAX_RANK most
frequent words each."""
ELISION = {"fr": ("c", "d", "j", "l", "m", "n", "s", "t", "qu"), "it": ("d", "l", "un")}
"""French and Italian elided words before an apostrophe: "SOLDESD'ETE" -> "SOLDES D'ETE"."""
_foreign_lock = threading.Lock()
_foreign: dict[str, object] = {}


def _strip_accents(word: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


def _foreign_model(lang: str):
    """A wordninja model of one language's most frequent words (built once per process), or None."""
    with _foreign_lock:
        if lang not in _foreign:
            _foreign[lang] = None
            try:
                import gzip
                import io
                import json
                from importlib import resources

                import wordninja

                counts = json.loads(gzip.decompress(
                    (resources.files("spellchecker") / "resources" / f"{lang}.json.gz").read_bytes()))
                words: list[str] = []
                seen: set[str] = set()
                for word, _n in sorted(counts.items(), key=lambda kv: -kv[1]):
                    w = _strip_accents(word.lower())
                    if re.fullmatch(r"[a-z]+", w) and w not in seen:
                        seen.add(w)
                        words.append(w)
                        if len(words) >= SPLIT_MAX_RANK:
                            break
                _foreign[lang] = wordninja.LanguageModel(io.BytesIO(gzip.compress("\n".join(words).encode())))
            except Exception:  # noqa: BLE001 - pyspellchecker not installed: English only
                pass
        return _foreign[lang]


def _split_with(lm, run: str, single: set[str], max_cost: float | None = None) -> list[str] | None:
    """The run split into words of `lm` (each at most max_cost; one-letter words only from `single`), or None."""
    known = lm._wordcost
    parts = lm.split(run)
    if len(parts) > 1 and "".join(parts) == run and all(
            p.lower() in known and (max_cost is None or known[p.lower()] <= max_cost)
            and (len(p) > 1 or p.lower() in single) for p in parts):
        return parts
    return None


def split_glued_words(text: str) -> str:
    """'SUMMERSALE' -> 'SUMMER SALE', '50%OFFEVERYTHING' -> '50% OFF EVERYTHING', 'background.These' ->
    'background. These', 'TOUTAMOITIEPRIX' -> 'TOUT A MOITIE PRIX', "SOLDESD'ETE" -> "SOLDES D'ETE". A run of
    letters is split only when it is a word in none of the languages (English, then OTHER_LANGUAGES) and splits
    into common words of two letters or more ('a'/'I', and a language's one-letter words, aside) of one of
    them; anything else ('matpltlib') is kept as read."""
    lm = _language_model()
    if lm is None:
        return text
    known = lm._wordcost
    # wordninja's cost of the word of frequency rank r is log((r + 1) * log N): only the 25,000 most frequent
    # words may come out of a split (rarer ones are mostly foreign words cut at random: "TO UTA MOI TIE PRIX")
    max_cost = math.log((SPLIT_MAX_RANK + 1) * math.log(len(known)))
    text = re.sub(r"(?<=[\d%])(?=[A-Za-z]{4})", " ", text)
    text = re.sub(r"(?<=[a-z][.,;:!?])(?=[A-Z][a-z])", " ", text)

    def zero_to_o(m: re.Match) -> str:  # "T0" -> "TO", "G00D" -> "GOOD": capitals with zeros read for O
        word = m.group(0).replace("0", "O")
        return word if word.lower() in known else m.group(0)
    text = re.sub(r"\b(?=[A-Z0]*[A-Z])(?=[A-Z0]*0)[A-Z0]{2,}\b", zero_to_o, text)

    def others():
        for lang in OTHER_LANGUAGES:
            other = _foreign_model(lang)
            if other is not None:
                yield lang, other

    def split_run(run: str) -> str:
        low = run.lower()
        if len(run) < 5 or low in known:
            return run
        if any(low in other._wordcost for _lang, other in others()):
            return run  # a word, in another language
        # every language's split into its common words; the one with the fewest words (then the most frequent
        # ones) wins: "GRANDES OFERTAS DE VERANO" over a split into short words of another language
        splits = [(parts, lm) for parts in [_split_with(lm, run, {"a", "i"}, max_cost)] if parts]
        for _lang, other in others():
            parts = _split_with(other, run, {w for w in other._wordcost if len(w) == 1 and other._wordcost[w] < 5})
            # subtitle word lists hold many short fragments ("eso", "fer", "tas"): a foreign split is mostly
            # words of four letters or more, or it is a random cut
            if parts and 2 * sum(len(p) <= 3 for p in parts) <= len(parts):
                splits.append((parts, other))
        if not splits:
            return run
        best, _model = min(splits, key=lambda pm: (len(pm[0]), sum(pm[1]._wordcost[p.lower()] for p in pm[0])))
        return " ".join(best)

    def elided(left: str, right: str) -> str | None:
        """'SOLDESD' + 'ETE' -> "SOLDES D'ETE" when a language elides the end of `left` before `right`."""
        for lang, other in others():
            if right.lower() not in other._wordcost:
                continue
            for e in ELISION.get(lang, ()):
                head = left[: -len(e)]
                if left.lower().endswith(e) and len(head) >= 2:
                    split = split_run(head)
                    if head.lower() in other._wordcost or head.lower() in known or split != head:
                        return f"{split} {left[-len(e):]}'{right}"
        return None

    def repl(m: re.Match) -> str:
        token = m.group(0)
        if "'" in token:
            left, right = token.split("'", 1)
            if len(left) >= 4 and "'" not in right and left.lower() not in known:
                return elided(left, right) or f"{split_run(left)}'{right}"
            return token
        return split_run(token)
    return re.sub(r"[A-Za-z]+(?:'[A-Za-z]+)*", repl, text)


def run_rapidocr(img: Image.Image, *, lang: str = "eng", max_edge: int = 2000, min_confidence: float = 30.0,
                 max_chars: int = 4000, full_size: tuple[int, int] | None = None) -> dict | None:
    """Ocr record from RapidOCR (None when it is not installed). Line scores become word confidences (0-100);
    a line's box is shared among its words by their length."""
    engine = rapid_engine()
    if engine is None:
        return None
    rgb = flat_small(img, max_edge, "RGB")
    sx = full_size[0] / rgb.width if full_size else 1.0
    sy = full_size[1] / rgb.height if full_size else 1.0
    with _rapid_call_lock:  # RapidOCR keeps per-image state on the shared detector (its resize op): one at a time
        result, _ = engine(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), use_cls=False, box_thresh=BOX_THRESH,
                           return_word_box=True)
    gray = None
    read = []
    for line in result or []:
        box, raw, score = line[0], str(line[1]), line[2]
        if len(line) >= 5 and len(line[4]) == len(raw):  # its characters' boxes: a letter drawn as a mark?
            gray = np.asarray(rgb.convert("L")) if gray is None else gray
            drawn = drawn_letters(gray, raw, line[3])
            if drawn != raw:  # a wordmark with a drawn letter is a name: kept whole, not split into words
                read.append((box, drawn, score))
                continue
        read.append((box, split_glued_words(raw), score))
    result, columns = in_reading_order(read, rgb.width)
    words, lines, confs = [], [], []
    for box, raw, score in result:
        conf = float(score) * 100.0
        text = clean_text(raw, 400)
        if not text or conf < min_confidence or not re.search(r"\w", text):
            continue
        if re.fullmatch(r"(.)\1{2,}", text.replace(" ", "")):  # a row of dots or circles read as "00000"
            continue
        xs = [float(p[0]) for p in box]
        ys = [float(p[1]) for p in box]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        parts = text.split()
        total = sum(len(w) for w in parts) + len(parts) - 1
        x = x0
        for w in parts:
            width = (x1 - x0) * len(w) / max(total, 1)
            words.append({"text": w, "confidence": round(conf, 2), "left": round(x * sx), "top": round(y0 * sy),
                          "width": round(width * sx), "height": round((y1 - y0) * sy)})
            confs.append(conf)
            x += width + (x1 - x0) / max(total, 1)
        lines.append(" ".join(parts))
    return {"text": "\n".join(lines)[:max_chars], "words": words[:2000],
            "mean_confidence": round(sum(confs) / len(confs), 2) if confs else None,
            "language": lang, "skipped": False, "skip_reason": None, "columns": columns}


def drawn_letters(gray: np.ndarray, text: str, char_boxes: list) -> str:
    """`text` (one RapidOCR line) with an "o" where the wordmark draws it as a round mark: matplotlib's "o" is a
    polar chart, read "matpltlib". Between two letters whose boxes leave at least half a letter's room, a circle
    (OpenCV's HOUGH_GRADIENT_ALT, perfectness >= 0.8) of 0.2-0.6 times the letters' height, centred in that gap
    and in the middle half of the line, is read as the one round letter: "o" ("O" between capitals) when it is
    a mark of its own (`own_mark`): RapidOCR's letter boxes are of one width, so a wide "m" overhangs its box and
    its arch sits in the "gap" ("community" read right would become "comomunity"). A circle inside a letter's
    box is that letter's business (an "O" is read as one); a logo mark beside the word is not between two
    letters."""
    spans = [(min(float(p[0]) for p in b), max(float(p[0]) for p in b), min(float(p[1]) for p in b),
              max(float(p[1]) for p in b)) for b in char_boxes]
    gaps = [i for i in range(len(text) - 1) if text[i].isalpha() and text[i + 1].isalpha()]
    if not gaps:
        return text
    widths = sorted(x1 - x0 for x0, x1, _, _ in spans)
    heights = sorted(y1 - y0 for _, _, y0, y1 in spans)
    cell, tall = widths[len(widths) // 2], heights[len(heights) // 2]
    gaps = [i for i in gaps if spans[i + 1][0] - spans[i][1] >= 0.5 * cell]
    if not gaps or tall < 8:
        return text
    top = max(0, int(min(s[2] for s in spans) - 0.3 * tall))
    bottom = min(gray.shape[0], int(max(s[3] for s in spans) + 0.3 * tall))
    left = max(0, int(spans[0][0] - tall))
    crop = np.ascontiguousarray(gray[top:bottom, left:int(spans[-1][1] + tall)])
    if min(crop.shape) < 8:
        return text
    found = cv2.HoughCircles(crop, cv2.HOUGH_GRADIENT_ALT, 1.5, tall / 2, param1=300, param2=0.8,
                             minRadius=int(0.2 * tall), maxRadius=int(0.6 * tall) + 1)
    if found is None:
        return text
    labels = None
    out = list(text)
    for i in reversed(gaps):
        x0, x1 = spans[i][1], spans[i + 1][0]
        y0 = min(spans[i][2], spans[i + 1][2])
        y1 = max(spans[i][3], spans[i + 1][3])
        for cx, cy, r in found[0]:
            if not (x0 <= cx + left <= x1 and y0 + 0.25 * (y1 - y0) <= cy + top <= y1 - 0.25 * (y1 - y0)):
                continue
            labels = ink_components(crop) if labels is None else labels
            beside = ((spans[i][0] - left, x0 - left), (x1 - left, spans[i + 1][1] - left))
            if own_mark(labels, float(cx), float(cy), float(r), beside):
                out.insert(i + 1, "O" if text[i].isupper() and text[i + 1].isupper() else "o")
                break
    return "".join(out)


def ink_components(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label image, stats) of the ink of a grayscale crop: pixels >= INK_STEP from its ground (the median of
    its border), 8-connected."""
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.int16)
    ink = (np.abs(crop.astype(np.int16) - int(np.median(border))) >= INK_STEP).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    return labels, stats


MARK_MARGIN = 0.25
"""how far (times the radius) past a drawn letter's circle its own ink may reach (anti-aliasing, a ring's width)"""
MARK_SPAN = 0.7
"""its own ink must span at least this share of the circle's diameter, across and down"""


def own_mark(components: tuple[np.ndarray, np.ndarray], cx: float, cy: float, r: float,
             beside: tuple[tuple[float, float], tuple[float, float]]) -> bool:
    """Is the circle (cx, cy, r) on the crop a mark of its own, lying in the gap between the letter boxes
    `beside` ((x0, x1) of each, crop pixels)? Its own ink is the components on its outline (within
    max(2, r / 10) px of it) lying inside its square grown by MARK_MARGIN (a ring and what is drawn in it): it
    must span >= MARK_SPAN of the circle's diameter across and down, and lie mostly outside both letter boxes
    (less than half its width in either). A letter's arch or bowl found as a circle is part of a component
    running on beyond it (a wide "m" overhanging its box: "community" would become "comomunity"), a letter whose
    box is off by a little is still mostly in it, and a neighbouring letter set close to the mark may graze its
    outline without counting (matplotlib's "p" and "l")."""
    labels, stats = components
    h, w = labels.shape
    band = max(2.0, r / 10)
    reach = r + band
    y_lo, x_lo = max(0, int(cy - reach)), max(0, int(cx - reach))
    window = labels[y_lo:min(h, int(cy + reach) + 1), x_lo:min(w, int(cx + reach) + 1)]
    ys, xs = np.nonzero(window)
    dy, dx = ys + y_lo - cy, xs + x_lo - cx
    on = np.abs(np.hypot(dx, dy) - r) <= band
    lo_x, hi_x = cx - r * (1 + MARK_MARGIN), cx + r * (1 + MARK_MARGIN)
    lo_y, hi_y = cy - r * (1 + MARK_MARGIN), cy + r * (1 + MARK_MARGIN)
    own = []
    for k in np.unique(window[ys[on], xs[on]]):
        x, y, cw, ch = (int(v) for v in stats[k, :4])
        if lo_x <= x and x + cw <= hi_x and lo_y <= y and y + ch <= hi_y:
            own.append(k)
    if not own:
        return False
    x0 = min(int(stats[k, 0]) for k in own)
    x1 = max(int(stats[k, 0] + stats[k, 2]) for k in own)
    y0 = min(int(stats[k, 1]) for k in own)
    y1 = max(int(stats[k, 1] + stats[k, 3]) for k in own)
    if min(x1 - x0, y1 - y0) < MARK_SPAN * 2 * r:
        return False
    return all(min(x1, b1) - max(x0, b0) < 0.5 * (x1 - x0) for b0, b1 in beside)


def in_reading_order(lines: list, width: int) -> tuple[list, int]:
    """RapidOCR lines (box, text, score), sorted top to bottom, regrouped by column: when a vertical gutter
    (>= 2 % of the width, no line box crossing it) splits the lines into groups of >= 2 lines each, each column is
    read top to bottom, left column first. Returns (lines, number of columns)."""
    if len(lines) < 4:
        return lines, 1
    spans = sorted((min(float(p[0]) for p in ln[0]), max(float(p[0]) for p in ln[0]), i) for i, ln in enumerate(lines))
    groups: list[list[int]] = []
    right = -1.0
    for x0, x1, i in spans:
        if groups and x0 - right < 0.02 * width:
            groups[-1].append(i)
        else:
            groups.append([i])
        right = max(right, x1) if len(groups[-1]) > 1 else x1
    if len(groups) < 2 or any(len(g) < 2 for g in groups):
        return lines, 1

    def top(i: int) -> float:
        return min(float(p[1]) for p in lines[i][0])
    return [lines[i] for g in groups for i in sorted(g, key=top)], len(groups)


def read_text(img: Image.Image, *, engine: str = "auto", lang: str = "eng", max_edge: int = 2000,
              min_confidence: float = 30.0, timeout_s: float = 30.0, max_chars: int = 4000,
              full_size: tuple[int, int] | None = None) -> dict:
    """The OCR record of an image that passed the gate, by the engine policy in the module doc."""
    tess = dict(lang=lang, max_edge=max_edge, min_confidence=min_confidence, timeout_s=timeout_s,
                max_chars=max_chars, full_size=full_size)
    if engine == "tesseract":
        return run_ocr(img, **tess)
    rapid = run_rapidocr(img, lang=lang, max_edge=max_edge, min_confidence=min_confidence, max_chars=max_chars,
                         full_size=full_size)
    if rapid is None:
        return run_ocr(img, **tess)
    columns = rapid.pop("columns", 1)
    if engine == "auto" and columns == 1 and len(rapid["text"].splitlines()) >= DENSE_LINES:
        page = run_ocr(img, **tess)
        if page["skipped"] and page["skip_reason"] in DEGRADING:
            # a calm run might have kept tesseract's reading: RapidOCR's is kept, flagged (the stage pops the key)
            return {**rapid, "degraded": DEGRADING[page["skip_reason"]]}
        if not page["skipped"] and len(page["words"]) >= len(rapid["words"]):
            return page
    return rapid


TESSERACT_MISSING = "ocr incomplete: tesseract is not installed"
DEGRADING = {"timeout": "ocr timed out", "tesseract_error": "ocr failed (tesseract error)",
             "tesseract_unavailable": TESSERACT_MISSING}
"""skip reasons that mean the text was not read (not that there is none): the record is retried, then marked
degraded; tesseract_unavailable at once (the stage's SETTLED_REASONS: the same on every attempt), a dense page's
RapidOCR reading kept (trial 32 F6: it was silent). "disabled" and "no_text_detected" are not degraded."""


def tesseract_missing(cfg: Any) -> str | None:
    """What a worker (and `assetstream run`) says at start when the preprocess settings `cfg` would run tesseract and
    it is not on PATH; None when it is there or not used (OCR off, ocr_engine rapidocr)."""
    import shutil

    import pytesseract

    if not cfg.ocr_enabled or cfg.ocr_engine == "rapidocr":
        return None
    command = pytesseract.pytesseract.tesseract_cmd
    if shutil.which(command):
        return None
    alone = ("no image's text is read" if cfg.ocr_engine == "tesseract" else
             "dense text pages are read by RapidOCR alone")
    return (f"tesseract is not installed ({command!r} is not on PATH): {alone}, and their OCR is marked degraded "
            "(`degraded: ocr incomplete: tesseract is not installed`, sent to review); install it: "
            "apt-get install tesseract-ocr (`make run` does it as root)")


def timeout_for(size: tuple[int, int], base_s: float, ref_mpx: float = 1.0) -> float:
    """Tesseract's time limit for an image OCR reads at `size`: base_s per ref_mpx megapixels, never below base_s."""
    mpx = size[0] * size[1] / 1e6
    return base_s * max(1.0, mpx / ref_mpx)


def ocr_size(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    """The size OCR reads an image of `size` at (scaled down to max_edge)."""
    w, h = size
    scale = min(1.0, max_edge / max(w, h, 1))
    return max(1, round(w * scale)), max(1, round(h * scale))


def skipped(lang: str, reason: str) -> dict:
    return {"text": "", "words": [], "mean_confidence": None, "language": lang, "skipped": True,
            "skip_reason": reason}


def merged(reads: list[dict], lang: str, max_chars: int) -> dict:
    """One Ocr record from several frames' (a video's keyframes): each distinct line once, in the order first
    seen, with its words (their boxes in the pixels of the keyframe the line was first read in; each keyframe's
    own text is kept with the keyframe)."""
    lines: dict[str, list[dict]] = {}
    for rec in reads:
        text_lines = [ln for ln in (rec.get("text") or "").splitlines() if ln.split()]
        words = list(rec.get("words") or [])
        aligned = sum(len(ln.split()) for ln in text_lines) == len(words)
        at = 0
        for ln in text_lines:
            n = len(ln.split())
            lines.setdefault(" ".join(ln.split()), words[at:at + n] if aligned else [])
            at += n
    confs = [r["mean_confidence"] for r in reads if r.get("mean_confidence") is not None]
    if reads and all(r.get("skipped") for r in reads):
        return skipped(lang, reads[0].get("skip_reason") or "no_text_detected")
    text = "\n".join(lines)[:max_chars]
    kept = [w for ln, ws in lines.items() if ln in text for w in ws]
    return {"text": text, "words": kept[:2000], "language": lang, "skipped": False,
            "mean_confidence": round(sum(confs) / len(confs), 2) if confs else None, "skip_reason": None}
