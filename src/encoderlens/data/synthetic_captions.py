"""Synthetic captioned images: captions naming an entity and a real place, in a few languages.

    root/captions.csv   id, caption, entity, language, country, image
    root/images/<id>.jpg

Each caption names a real GeoNames city (population >= 10,000, from the offline table in
`encoderlens.data.places`); English captions often add the country's name, the others name the city
only, so the country has to be resolved through GeoNames. `country` is the ISO alpha-2 code of that
city ("NA" is Namibia, always present). `entity` is what the caption names and the image shows:
house, car or church, drawn as a simple shape among neutral distractors; "" when the caption names
no entity and the image shows none. `language` is an ISO 639-1 code: mostly "en", a few "es", "hi",
"el", "ja".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from encoderlens.data.images import save_jpeg
from encoderlens.data.places import country_name, sample_places

ENTITIES = ["house", "car", "church"]
COLOURS = {"red": (200, 40, 40), "white": (235, 235, 235), "blue": (40, 70, 200),
           "green": (40, 150, 60), "yellow": (230, 200, 40)}
# Templates per language; {e} is the entity word, {city}/{country} the place.
TEMPLATES = {
    "en": {"entity": ["A {adj} {e} in {city}, {country}.", "Photo of a {adj} {e} near {city}.",
                      "{city}, {country}: a {adj} {e} by the road.", "A {adj} {e} seen in {city}."],
           "none": ["View of {city}, {country}.", "A quiet afternoon in {city}."]},
    "es": {"entity": ["{e} en {city}."], "none": ["Vista de {city}."]},
    "hi": {"entity": ["{city} में एक {e}"], "none": ["{city} का दृश्य"]},
    "el": {"entity": ["Ένα {e} στην πόλη {city}."], "none": ["Θέα της πόλης {city}."]},
    "ja": {"entity": ["{city}の{e}"], "none": ["{city}の風景"]},
}
WORDS = {"es": {"house": "Una casa", "car": "Un coche", "church": "Una iglesia"},
         "hi": {"house": "घर", "car": "कार", "church": "चर्च"},
         "el": {"house": "σπίτι", "car": "αυτοκίνητο", "church": "εκκλησάκι"},
         "ja": {"house": "家", "car": "車", "church": "教会"}}


def _random_colour(rng, low=0, high=255):
    return tuple(int(v) for v in rng.integers(low, high + 1, 3))


def render_entity(rng, entity: str, colour, width: int = 192, height: int = 144) -> np.ndarray:
    """A simple scene with `entity` ("" for none) drawn at a random place and scale."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.55, 0.75))
    draw.rectangle([0, 0, width, horizon], fill=_random_colour(rng, 110, 230))
    draw.rectangle([0, horizon, width, height], fill=_random_colour(rng, 50, 160))
    for _ in range(int(rng.integers(3, 7))):  # neutral blobs: bushes, stones, clouds
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, 10)
        draw.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=_random_colour(rng))
    s = rng.uniform(0.7, 1.3) * height / 144
    x = rng.uniform(0.2, 0.8) * width
    y = horizon + rng.uniform(-0.05, 0.1) * height
    colour = colour if colour is not None else _random_colour(rng)
    if entity == "house":
        w, h = 50 * s, 34 * s
        draw.rectangle([x - w / 2, y - h, x + w / 2, y], fill=colour)
        draw.polygon([(x - w / 2 - 4 * s, y - h), (x, y - h - 22 * s), (x + w / 2 + 4 * s, y - h)],
                     fill=_random_colour(rng, 30, 140))
        draw.rectangle([x - 5 * s, y - 16 * s, x + 5 * s, y], fill=(60, 40, 30))
    elif entity == "car":
        w, h = 56 * s, 14 * s
        draw.rectangle([x - w / 2, y - h - 6 * s, x + w / 2, y - 6 * s], fill=colour)
        draw.polygon([(x - w / 4, y - h - 6 * s), (x - w / 6, y - h - 18 * s), (x + w / 5, y - h - 18 * s),
                      (x + w / 3, y - h - 6 * s)], fill=colour)
        for wx in (x - w / 3, x + w / 3):
            draw.ellipse([wx - 7 * s, y - 13 * s, wx + 7 * s, y + 1 * s], fill=(20, 20, 20))
    elif entity == "church":
        w, h = 44 * s, 30 * s
        draw.rectangle([x - w / 2, y - h, x + w / 2, y], fill=colour)
        draw.rectangle([x - w / 2, y - h - 30 * s, x - w / 2 + 14 * s, y - h], fill=colour)
        cx, top = x - w / 2 + 7 * s, y - h - 30 * s
        draw.line([(cx, top), (cx, top - 14 * s)], fill=(40, 40, 40), width=max(1, int(2 * s)))
        draw.line([(cx - 5 * s, top - 9 * s), (cx + 5 * s, top - 9 * s)], fill=(40, 40, 40),
                  width=max(1, int(2 * s)))
        draw.polygon([(x - w / 2 + 14 * s, y - h), (x + w / 4, y - h - 16 * s), (x + w / 2, y - h)],
                     fill=_random_colour(rng, 30, 140))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 6, (height, width, 3))
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def write_synthetic_captions(root, n_images: int = 60, seed: int = 0, width: int = 192,
                             height: int = 144) -> None:
    """Write a captioned-image dataset of `n_images` into `root` (deterministic per seed)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 3])
    places = sample_places(n_images, seed=seed, n_countries=max(1, n_images // 3), min_population=10_000)
    languages = rng.choice(["en", "es", "hi", "el", "ja"], size=n_images, p=[0.8, 0.05, 0.05, 0.05, 0.05])
    rows = []
    for i, place in enumerate(places.itertuples(index=False)):
        image_id = f"cap{i:05d}"
        language = str(languages[i])
        entity = ENTITIES[i % 3] if rng.random() < 0.85 else ""  # some images show no entity
        adjective = str(rng.choice(list(COLOURS) + ["small", "large"]))
        templates = TEMPLATES[language]["entity" if entity else "none"]
        template = templates[int(rng.integers(len(templates)))]
        word = WORDS.get(language, {}).get(entity, entity)
        caption = template.format(adj=adjective, e=word, city=place.name, country=country_name(place.cc))
        pixels = render_entity(np.random.default_rng([seed, 4, i]), entity, COLOURS.get(adjective),
                               width, height)
        save_jpeg(pixels, root / "images" / f"{image_id}.jpg")
        rows.append({"id": image_id, "caption": caption, "entity": entity, "language": language,
                     "country": place.cc, "image": f"images/{image_id}.jpg"})
    pd.DataFrame(rows, columns=["id", "caption", "entity", "language", "country", "image"]).to_csv(
        root / "captions.csv", index=False)
