"""Synthetic WikiChurches: church facades whose style shows only inside the annotated boxes.

Written in the layout of the real dataset (Zenodo 5166987), so `read_wikichurches` reads both:

    root/
      churches.json        {"<QID>": {"id", "name", "built_year" (int, [int, int] or null), "styles":
                              [QIDs], "country": {"id", "name"}, "location": {"lat", "lon"}}}:
                              no list of images, as in the real file
      image_meta.json      {"<QID>_wd<k>.jpg": {...}}: every image, keyed by file name (the real
                              values are per-image metadata whose fields no evidence shows; the
                              reader uses the keys only, so a small stand-in object is written)
      building_parts.json  {"meta": [{"name", "parents": [meta indices]}],
                            "annotations": {"<QID>_wd0.jpg": {"styles": [QIDs], "bbox_groups":
                               [{"group_label": meta index, "elements": [{"left", "top", "width",
                                 "height", "label": meta index}]}]}}}
      style_names.txt      "<QID> <name>" per line (one space, as the real file)
      images/<QID>_wd<k>.jpg

Boxes are fractions of the full image; like the real file, a few have small negative coordinates
(a window cut by the image edge). About half the images are annotated; the rest form the
style-labelled "pool" (listed in image_meta.json only), and some pool churches have a second image.

Why the style is only inside the boxes: every image is drawn in two independent random streams.
The layout stream (sky, wall, roof, tower, distractor ornaments, box positions, pixel noise) never
sees the style; the parts stream draws one window or portal inside each box, in the shape the style
prescribes (round arch: Romanesque, pointed arch: Gothic, rectangle under a triangular pediment:
Renaissance, oval or door under a broken curved pediment: Baroque). Re-rendering an image with
another style therefore changes no pixel outside its boxes, which the tests check exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from encoderlens.data.images import save_jpeg

STYLES = {"Q46261": "Romanesque", "Q176483": "Gothic", "Q236122": "Renaissance", "Q840829": "Baroque"}
GOTHIC_REVIVAL = "Q186363"  # listed before Gothic on some churches, as multi-style entries are real
# style_names.txt as the real file spells the names (a space after the id; names with spaces)
STYLE_NAMES = {**STYLES, GOTHIC_REVIVAL: "Gothic Revival Architecture"}
# (Wikidata id, name) as churches.json's "country" objects carry them
COUNTRIES = [("Q183", "Germany"), ("Q142", "France"), ("Q38", "Italy"), ("Q29", "Spain"),
             ("Q145", "United Kingdom"), ("Q31", "Belgium")]
SHAPES = {"Q46261": "round", "Q176483": "pointed", "Q236122": "pediment", "Q840829": "broken"}

# The building-part ontology (meta): generic groups first, then the style-specific parts.
META = [
    {"name": "Window", "parents": []},
    {"name": "Portal", "parents": []},
    {"name": "Round-arch window", "parents": [0]},
    {"name": "Round-arch portal", "parents": [1]},
    {"name": "Pointed-arch window", "parents": [0]},
    {"name": "Pointed-arch portal", "parents": [1]},
    {"name": "Pedimented window", "parents": [0]},
    {"name": "Pedimented portal", "parents": [1]},
    {"name": "Oval window", "parents": [0]},
    {"name": "Broken-pediment portal", "parents": [1]},
]
_PART_LABEL = {("round", "window"): 2, ("round", "portal"): 3, ("pointed", "window"): 4,
               ("pointed", "portal"): 5, ("pediment", "window"): 6, ("pediment", "portal"): 7,
               ("broken", "window"): 8, ("broken", "portal"): 9}


def _colour(rng, low, high):
    return tuple(int(v) for v in rng.integers(low, high + 1, size=3))


def _overlaps(a, b, margin=3):
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or
                a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _layout(rng, width, height, edge_box):
    """Everything style-independent: the facade drawing and the pixel boxes (x0, y0, x1, y1, kind)."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.84, 0.92))
    draw.rectangle([0, 0, width, horizon], fill=_colour(rng, 120, 230))          # sky
    draw.rectangle([0, horizon, width, height], fill=_colour(rng, 60, 150))      # ground
    left = -int(width * 0.05) if edge_box else int(width * rng.uniform(0.1, 0.22))
    right = int(width * rng.uniform(0.78, 0.92))
    top = int(height * rng.uniform(0.3, 0.4))
    wall, roof = _colour(rng, 140, 220), _colour(rng, 50, 130)
    apex = (int((left + right) / 2 + rng.uniform(-8, 8)), int(height * rng.uniform(0.04, 0.14)))
    draw.polygon([(left - 4, top), apex, (right + 4, top)], fill=roof)
    draw.rectangle([left, top, right, horizon], fill=wall)
    if rng.random() < 0.6:  # a tower on a random side, with a clock disc (a neutral round shape)
        tw = int(width * rng.uniform(0.09, 0.13))
        tx = right - tw if rng.random() < 0.5 else max(left, 0)
        draw.rectangle([tx, int(height * 0.02), tx + tw, top], fill=wall, outline=roof)
        cy, r = int(height * 0.12), tw // 4
        draw.ellipse([tx + tw // 2 - r, cy - r, tx + tw // 2 + r, cy + r], fill=_colour(rng, 200, 255))

    boxes = []
    pw, ph = int(width * rng.uniform(0.13, 0.17)), int(height * rng.uniform(0.27, 0.33))
    px = int((max(left, 0) + right) / 2 - pw / 2 + rng.uniform(-10, 10))
    boxes.append((px, horizon - ph, px + pw, horizon, "portal"))
    if edge_box:  # a window cut by the left or top image edge: the annotation goes negative
        ww, wh = int(width * rng.uniform(0.08, 0.11)), int(height * rng.uniform(0.18, 0.23))
        boxes.append((-int(rng.integers(2, 6)), top + 6, ww - 4, top + 6 + wh, "window"))
    n_windows = int(rng.integers(2, 5)) - int(edge_box)
    for _ in range(60):  # rejection sampling: windows on the wall, never touching each other
        if sum(b[4] == "window" for b in boxes) >= n_windows + int(edge_box):
            break
        ww, wh = int(width * rng.uniform(0.08, 0.11)), int(height * rng.uniform(0.18, 0.23))
        x0 = int(rng.uniform(max(left, 0) + 3, right - ww - 3))
        y0 = int(rng.uniform(top + 3, horizon - wh - 3))
        candidate = (x0, y0, x0 + ww, y0 + wh, "window")
        if not any(_overlaps(candidate, b) for b in boxes):
            boxes.append(candidate)

    # Distractors: neutral ornaments (string courses, blocks, light discs) drawn off the boxes, in
    # the same way for every style, so they carry no style information.
    for _ in range(int(rng.integers(4, 9))):
        kind = rng.integers(3)
        w, h = int(rng.integers(4, 14)), int(rng.integers(3, 9))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, horizon - h))
        shape = (x0, y0, x0 + w, y0 + h)
        if any(_overlaps(shape, b, margin=1) for b in boxes):
            continue
        fill = _colour(rng, 90, 255)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + max(2, h // 3)], fill=fill)
        elif kind == 1:
            draw.rectangle(shape, fill=fill)
        else:
            draw.ellipse(shape, fill=fill)
    noise = rng.normal(0, 6, size=(height, width, 3))
    return image, boxes, noise


def _arch(shape, x0, y0, x1, y1, n=14):
    """Polygon of an opening filling (x0, y0)-(x1, y1): round or pointed arch, rectangle, oval."""
    # Clip to the rectangle: rounding must never put an arch's apex one pixel outside its box.
    return [(min(max(x, x0), x1), min(max(y, y0), y1)) for x, y in _outline(shape, x0, y0, x1, y1, n)]


def _outline(shape, x0, y0, x1, y1, n):
    w, cx = x1 - x0, (x0 + x1) / 2
    if shape == "round":
        r = w / 2
        top = [(cx + r * math.cos(a), y0 + r - r * math.sin(a)) for a in np.linspace(math.pi, 0, n)]
        return top + [(x1, y1), (x0, y1)]
    if shape == "pointed":  # equilateral arch: each side an arc centred on the opposite springer
        rise = min(w * 0.866, (y1 - y0) * 0.7)
        ys, k = y0 + rise, rise / (w * 0.866)
        left = [(x1 + w * math.cos(a), ys - k * w * math.sin(a))
                for a in np.linspace(math.pi, 2 * math.pi / 3, n // 2)]
        right = [(x0 + w * math.cos(a), ys - k * w * math.sin(a))
                 for a in np.linspace(math.pi / 3, 0, n // 2)]
        return left + right + [(x1, y1), (x0, y1)]
    if shape == "oval":
        a, b, cy = w / 2, (y1 - y0) / 2, (y0 + y1) / 2
        return [(cx + a * math.cos(t), cy + b * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 2 * n)]
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _draw_part(draw, rng, style, box):
    """One window or portal of `style` strictly inside the pixel box (x0, y0, x1, y1, kind)."""
    x0, y0, x1, y1, kind = box
    x1, y1 = x1 - 1, y1 - 1  # PIL draws inclusive coordinates; keep every pixel inside the box
    frame = _colour(rng, 170, 255)
    inner = _colour(rng, 10, 70) if kind == "window" else _colour(rng, 40, 110)
    t = max(1, int((x1 - x0) * rng.uniform(0.1, 0.16)))
    shape = SHAPES[style]
    if shape in ("round", "pointed"):
        draw.polygon(_arch(shape, x0, y0, x1, y1), fill=frame)
        draw.polygon(_arch(shape, x0 + t, y0 + t, x1 - t, y1), fill=inner)
        return
    cap = y0 + int((y1 - y0) * rng.uniform(0.24, 0.3))  # the pediment's share of the box
    if shape == "pediment":
        draw.polygon([(x0, cap), ((x0 + x1) / 2, y0), (x1, cap)], fill=frame)
        draw.rectangle([x0 + 1, cap + 2, x1 - 1, y1], fill=frame)
        draw.rectangle([x0 + 1 + t, cap + 2 + t, x1 - 1 - t, y1], fill=inner)
        return
    # Baroque: two curved pediment halves broken in the middle, over an oval window or a door.
    span = 2 * (cap - y0)
    draw.arc([x0, y0, x1, y0 + span], 190, 255, fill=frame, width=max(2, t))
    draw.arc([x0, y0, x1, y0 + span], 285, 350, fill=frame, width=max(2, t))
    opening = "oval" if kind == "window" else "rect"
    draw.polygon(_arch(opening, x0, cap + 2, x1, y1), fill=frame)
    draw.polygon(_arch(opening, x0 + t, cap + 2 + t, x1 - t, y1 - (t if kind == "window" else 0)),
                 fill=inner)


def render_church(layout_seed, style: str, width: int = 192, height: int = 144,
                  edge_box: bool = False, parts_seed=None):
    """Draw one facade; returns (uint8 array (H, W, 3), pixel boxes [(x0, y0, x1, y1, kind)]).

    The layout depends on `layout_seed` only, the parts on `style` and `parts_seed`.
    """
    layout_rng = np.random.default_rng(layout_seed)
    if parts_seed is None:
        parts_seed = [*np.atleast_1d(layout_seed), 7]
    parts_rng = np.random.default_rng(parts_seed)
    image, boxes, noise = _layout(layout_rng, width, height, edge_box)
    draw = ImageDraw.Draw(image)
    for box in boxes:
        _draw_part(draw, parts_rng, style, box)
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).round().astype(np.uint8)
    return pixels, boxes


def _annotation(style, boxes, width, height):
    groups = {}
    for x0, y0, x1, y1, kind in boxes:
        element = {"left": x0 / width, "top": y0 / height, "width": (x1 - x0) / width,
                   "height": (y1 - y0) / height, "label": _PART_LABEL[(SHAPES[style], kind)]}
        groups.setdefault(kind, []).append(element)
    return [{"group_label": 0 if kind == "window" else 1, "elements": elements}
            for kind, elements in groups.items()]


def write_synthetic_churches(root, n_images: int = 40, seed: int = 0, width: int = 192,
                             height: int = 144, n_annotated: int | None = None) -> None:
    """Write a WikiChurches-format dataset of `n_images` images into `root` (deterministic per seed).

    `n_annotated` images (default: half, rounded up) get boxes in building_parts.json; the rest are
    the unannotated style-labelled pool.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_annotated = (n_images + 1) // 2 if n_annotated is None else min(n_annotated, n_images)
    style_ids = list(STYLES)
    # Styles balanced within the annotated set and within the pool, order shuffled.
    styles = [style_ids[i % 4] for i in rng.permutation(n_annotated)]
    styles += [style_ids[i % 4] for i in rng.permutation(n_images - n_annotated)]

    facts = np.random.default_rng([seed, 1])  # country and year: a stream of their own
    churches, annotations, image_meta = {}, {}, {}
    church_number, qid = 0, None
    for i in range(n_images):
        # Every fifth pool image is a second photo (wd1) of the church before it, as in the real
        # dataset, where one church can have several images.
        second = i > n_annotated and (i - n_annotated) % 5 == 4
        if second:
            styles[i] = styles[i - 1]
            file_name = f"{qid}_wd1.jpg"
        else:
            qid = f"Q{9_000_000 + 1000 * (seed % 1000) + church_number}"
            church_number += 1
            file_name = f"{qid}_wd0.jpg"
            style = styles[i]
            listed = [GOTHIC_REVIVAL, style] if style == "Q176483" and rng.random() < 0.3 else [style]
            country = COUNTRIES[int(facts.integers(len(COUNTRIES)))]
            year = int(facts.integers(1000, 1800))
            built = [year, year + int(facts.integers(20, 200))] if facts.random() < 0.15 else \
                (None if facts.random() < 0.5 else year)  # most real churches lack a year
            churches[qid] = {"id": qid, "name": f"Synthetic church {church_number}",
                             "built_year": built, "styles": listed,
                             "country": {"id": country[0], "name": country[1]},
                             "location": {"lat": round(float(rng.uniform(36, 58)), 6),
                                          "lon": round(float(rng.uniform(-8, 24)), 6)}}
        edge_box = i < n_annotated and i % 6 == 1
        pixels, boxes = render_church([seed, i], styles[i], width, height, edge_box=edge_box)
        save_jpeg(pixels, root / "images" / file_name)
        image_meta[file_name] = {"width": width, "height": height}
        if i < n_annotated:
            annotations[file_name] = {"styles": churches[qid]["styles"],
                                      "bbox_groups": _annotation(styles[i], boxes, width, height)}

    (root / "churches.json").write_text(json.dumps(churches, indent=1) + "\n")
    (root / "image_meta.json").write_text(json.dumps(image_meta, indent=1) + "\n")
    (root / "building_parts.json").write_text(
        json.dumps({"meta": META, "annotations": annotations}, indent=1) + "\n")
    (root / "style_names.txt").write_text("".join(f"{q} {name}\n" for q, name in STYLE_NAMES.items()))
