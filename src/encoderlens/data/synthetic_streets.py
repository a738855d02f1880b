"""Synthetic OSV-5M: street scenes at real GeoNames places, in OSV-5M's own file layout.

    root/test.csv                   the 32 OSV-5M columns, in OSV-5M's order (`OSV5M_COLUMNS`)
    root/images/test/00/<id>.jpg

Places come from the offline GeoNames table (`encoderlens.data.places`), stratified over countries,
with Namibia always among them: country = ISO alpha-2, region = admin1, sub-region = admin2
(often empty, as in the real file), city = place name. Namibia is spelt both ways the real files
have it: "NA", and "NMB" (osv5m's fix_namimbia.py) on every other Namibian row, keys included.
The `unique_*` keys are written as OSV-5M writes them (`encoderlens.data.osv5m.build_key`): the
literal "NaN" for a missing coarser part ("Waitangi_NaN_Chatham Islands_NZ"), "" for a missing
level. `cell` is the text "(lon_bin, lat_bin)", e.g. "(61, 28)". The other columns get plausible
values: climate a Köppen-Geiger code (1-30) that follows latitude, land_cover and soil small integer
codes, drive_side 1 for left-hand traffic.

Appearance carries the location, each cue mixed with noise so that it must be learnt:
- latitude: sky colour and light (deep blue and bright near the equator, pale and dim towards the
  poles) and the sun's side (right in the northern hemisphere, left in the southern);
- country: a country-specific pair of colours on roadside houses and a sign;
- continent: yellow centre lines in the Americas, white elsewhere;
- climate: ground colour (green tropics, sand deserts, olive temperate, grey-green cold, snow polar);
- drive_side: the lane of the car and of the sign.

Planted answers (`planted=True`, the demo's default): cues a random, untrained encoder's features
carry, so that every street-view study has a known answer to recover (`PLANTED` holds the settings,
`geo.planted` checks them against the study outputs):
- country: a colour cast over the whole image towards the country's colour, shifted slightly per
  region (random convolutions and patch embeddings respond to global colour); it masks the subtler
  cues above, which `planted=False` keeps on their own;
- a hard scene attribute (`land_cover` 8): fog over the whole image washes the cast out, so kNN
  failures concentrate there;
- a weak region (the African countries): a cast of a fifth of the strength, so a regional gap shows.
"""

from __future__ import annotations

import colorsys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from encoderlens.data.images import save_jpeg
from encoderlens.data.osv5m import build_key
from encoderlens.data.places import countries, sample_places

# The real test.csv's 32 columns in the real order, as the dataset's own hub loader (osv5m.py) prints
# its header; the quadtree_10_<n> columns are cells of adaptive quadtrees (at most n training images
# per cell), written here as regular quadtrees of a depth that falls with n (QUADTREE_DEPTHS).
OSV5M_COLUMNS = [
    "id", "latitude", "longitude", "thumb_original_url", "country", "sequence", "captured_at",
    "lon_bin", "lat_bin", "cell", "region", "sub-region", "city", "land_cover", "road_index",
    "drive_side", "climate", "soil", "dist_sea", "quadtree_10_5000", "quadtree_10_25000",
    "quadtree_10_1000", "quadtree_10_50000", "quadtree_10_12500", "quadtree_10_500", "quadtree_10_2500",
    "unique_region", "unique_sub-region", "unique_city", "unique_country", "creator_username", "creator_id",
]
QUADTREE_DEPTHS = {500: 7, 1000: 6, 2500: 5, 5000: 5, 12500: 4, 25000: 3, 50000: 3}
LEFT_HAND_TRAFFIC = set(
    "AG AI AU BB BD BM BN BS BT BW CC CK CX CY DM FJ FK GB GD GG GY HK ID IE IM IN JE JM JP KE KI "
    "KN KY LC LK LS MO MS MT MU MV MW MY MZ NA NF NP NR NU NZ PG PK PN SB SC SG SH SR SZ TC TH TK TL "
    "TO TT TV TZ UG VC VG VI WS ZA ZM ZW".split())
N_BINS = 100
# Köppen-Geiger main groups with their codes (Beck et al. 2018 numbering) and a ground colour.
CLIMATE_GROUPS = {
    "A": ([1, 2, 3], (45, 125, 45)),
    "B": ([4, 5, 6, 7], (205, 175, 115)),
    "C": ([8, 9, 11, 12, 14, 15], (115, 140, 70)),
    "D": ([17, 21, 25, 26, 27], (90, 105, 85)),
    "E": ([29, 30], (215, 218, 225)),
}
_GROUP_OF_CODE = {code: g for g, (codes, _) in CLIMATE_GROUPS.items() for code in codes}


def _climate(abs_lat: float, rng) -> int:
    """A Köppen code whose group follows latitude, with the exceptions real maps have."""
    a = abs_lat + rng.normal(0, 5)
    weights = ({"A": .7, "B": .2, "C": .1} if a < 15 else
               {"A": .1, "B": .5, "C": .4} if a < 35 else
               {"B": .05, "C": .6, "D": .35} if a < 55 else {"D": .7, "E": .3})
    group = rng.choice(list(weights), p=list(weights.values()))
    return int(rng.choice(CLIMATE_GROUPS[group][0]))


def country_colours(cc: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two saturated colours fixed per country code (a stable hash, not Python's salted hash)."""
    h = zlib.crc32(cc.encode())
    hues = ((h % 360) / 360, ((h >> 9) % 360) / 360)
    return tuple(tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.85)) for hue in hues)


def _mix(a, b, t):
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


def render_street(rng, latitude: float, cc: str, climate: int, drive_side: int, americas: bool,
                  width: int = 192, height: int = 144) -> np.ndarray:
    """One street scene as an (H, W, 3) uint8 array."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * rng.uniform(0.38, 0.52))
    t = float(np.clip(abs(latitude) / 65 + rng.normal(0, 0.15), 0, 1))
    light = 1.05 - 0.35 * t + rng.normal(0, 0.05)
    sky = _mix((80, 145, 240), (178, 186, 198), t)
    for y in range(horizon):  # vertical gradient, lighter at the horizon
        draw.line([(0, y), (width, y)], fill=_mix(sky, (235, 238, 240), 0.45 * y / max(horizon, 1)))
    if rng.random() < 0.7:
        north = latitude >= 0
        sx = width * (rng.uniform(0.6, 0.95) if north else rng.uniform(0.05, 0.4))
        sy = horizon * (0.15 + 0.6 * t) * rng.uniform(0.8, 1.1)
        r = width * 0.05
        draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 245, 200))

    ground = _mix(CLIMATE_GROUPS[_GROUP_OF_CODE[climate]][1], tuple(rng.integers(0, 256, 3)), 0.25)
    draw.rectangle([0, horizon, width, height], fill=ground)

    # Roadside houses in the country's colours, mixed with random colour.
    colour_a, colour_b = country_colours(cc)
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(width * rng.uniform(0.12, 0.25)), int(height * rng.uniform(0.1, 0.2))
        x0 = int(rng.uniform(-w / 2, width - w / 2))
        wall = _mix(colour_a, tuple(rng.integers(0, 256, 3)), rng.uniform(0.2, 0.5))
        roof = _mix(colour_b, tuple(rng.integers(0, 256, 3)), rng.uniform(0.2, 0.5))
        draw.rectangle([x0, horizon - h, x0 + w, horizon + 2], fill=wall)
        draw.polygon([(x0 - 2, horizon - h), (x0 + w / 2, horizon - h * 1.5), (x0 + w + 2, horizon - h)],
                     fill=roof)

    # The road, converging on a vanishing point.
    vx = width / 2 + rng.normal(0, width * 0.06)
    half = width * rng.uniform(0.4, 0.55)
    paved = rng.random() < 0.85
    surface = tuple(int(v) for v in (rng.integers(55, 115, 3) if paved else (135, 105, 70)))
    draw.polygon([(vx - 2, horizon), (vx + 2, horizon), (width / 2 + half, height),
                  (width / 2 - half, height)], fill=surface)
    line = (235, 190, 40) if americas else (240, 240, 240)
    for k in range(6):  # dashed centre line, dashes shrinking with distance
        f0, f1 = (k + 0.2) / 6, (k + 0.6) / 6
        y0, y1 = horizon + f0 * (height - horizon), horizon + f1 * (height - horizon)
        x0, x1 = vx + f0 * (width / 2 - vx), vx + f1 * (width / 2 - vx)
        draw.line([(x0, y0), (x1, y1)], fill=line, width=max(1, int(1 + 2 * f1)))

    # The car keeps to the driving side (most of the time), the sign stands on that side.
    side = (-1 if drive_side else 1) * (1 if rng.random() < 0.85 else -1)
    f = rng.uniform(0.45, 0.85)
    cy = horizon + f * (height - horizon)
    cx = vx + f * (width / 2 - vx) + side * f * half * 0.5
    cw, ch = width * 0.18 * f, height * 0.1 * f
    car = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle([cx - cw / 2, cy - ch, cx + cw / 2, cy], fill=car)
    draw.rectangle([cx - cw / 3, cy - ch * 1.5, cx + cw / 3, cy - ch], fill=(40, 45, 55))
    px = width / 2 + (-1 if drive_side else 1) * half * rng.uniform(0.9, 1.2) * 0.9
    py = horizon + (height - horizon) * rng.uniform(0.3, 0.6)
    draw.line([(px, py), (px, py - height * 0.2)], fill=(90, 90, 90), width=2)
    sw, sh = width * 0.06, height * 0.04
    draw.rectangle([px - sw, py - height * 0.2 - 2 * sh, px + sw, py - height * 0.2 - sh], fill=colour_a)
    draw.rectangle([px - sw, py - height * 0.2 - sh, px + sw, py - height * 0.2], fill=colour_b)

    for _ in range(int(rng.integers(0, 5))):  # trees: distractors that say nothing of the place
        tx, ty = rng.uniform(0, width), horizon + rng.uniform(-5, 10)
        r = rng.uniform(4, 12)
        draw.ellipse([tx - r, ty - 2 * r, tx + r, ty], fill=tuple(int(v) for v in rng.integers(20, 120, 3)))

    pixels = np.asarray(image, dtype=np.float64) * light + rng.normal(0, 8, (height, width, 3))
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


PLANTED = {
    "cast": 0.55,                          # share of the country colour blended into every pixel
    "region_hue_shift": 0.04,              # per-region hue offset of the cast (of the hue circle)
    "hard_attribute": ("land_cover", 8),   # images of this attribute value are fogged
    "fog": 0.8,                            # share of flat grey over a fogged image
    "weak_continent": "AF",                # GeoNames continent code whose cast is weakened
    "weak_cast_factor": 0.2,
}


def planted_cast(cc: str, region: str) -> tuple[int, int, int]:
    """The country's cast colour, its hue shifted by a stable per-region offset."""
    h = zlib.crc32(cc.encode())
    shift = ((zlib.crc32(f"{cc}/{region}".encode()) % 1000) / 1000 - 0.5) * 2 * PLANTED["region_hue_shift"]
    hue = ((h % 360) / 360 + shift) % 1.0
    value = 0.55 + 0.4 * ((h >> 12) % 100) / 100
    return tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.9, value))


def plant(pixels: np.ndarray, cast: tuple[int, int, int], strength: float, fogged: bool,
          rng: np.random.Generator) -> np.ndarray:
    """Blend the cast colour into the image, then (for the hard attribute) fog over it."""
    image = pixels.astype(np.float64)
    image = (1 - strength) * image + strength * np.asarray(cast, dtype=np.float64)
    if fogged:
        grey = 150 + rng.normal(0, 20)
        image = (1 - PLANTED["fog"]) * image + PLANTED["fog"] * grey + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def _quadtree_cell(lat: float, lon: float, depth: int = 6) -> int:
    """Index of the (lat, lon) leaf of a regular quadtree of the given depth."""
    cell, south, north, west, east = 0, -90.0, 90.0, -180.0, 180.0
    for _ in range(depth):
        mid_lat, mid_lon = (south + north) / 2, (west + east) / 2
        quadrant = 2 * (lat >= mid_lat) + (lon >= mid_lon)
        cell = 4 * cell + int(quadrant)
        south, north = (mid_lat, north) if lat >= mid_lat else (south, mid_lat)
        west, east = (mid_lon, east) if lon >= mid_lon else (west, mid_lon)
    return cell


def write_synthetic_streets(root, n_images: int = 120, seed: int = 0, width: int = 192,
                            height: int = 144, n_countries: int | None = None, planted: bool = True) -> None:
    """Write an OSV-5M-format test split of `n_images` images into `root` (deterministic per seed).

    About four images per country unless `n_countries` says otherwise; with `planted` the images
    carry the planted answers (module docstring).
    """
    root = Path(root)
    image_dir = root / "images" / "test" / "00"
    image_dir.mkdir(parents=True, exist_ok=True)
    n_countries = max(1, n_images // 4) if n_countries is None else n_countries
    places = sample_places(n_images, seed=seed, n_countries=n_countries)
    continent = dict(zip(countries()["cc"], countries()["continent"]))
    rng = np.random.default_rng([seed, 1])
    ids = []  # Mapillary-like 15-digit integer ids, unique
    while len(ids) < n_images:
        candidate = int(rng.integers(10**14, 10**15))
        if candidate not in ids:
            ids.append(candidate)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))

    rows = []
    namibian = 0
    for i, place in enumerate(places.itertuples(index=False)):
        lat = float(np.clip(place.latitude + rng.normal(0, 0.02), -89.9, 89.9))
        lon = float((place.longitude + rng.normal(0, 0.02) + 180) % 360 - 180)
        climate = _climate(abs(lat), rng)
        drive_side = int(place.cc in LEFT_HAND_TRAFFIC)
        lon_bin = min(int((lon + 180) / 360 * N_BINS), N_BINS - 1)
        lat_bin = min(int((lat + 90) / 180 * N_BINS), N_BINS - 1)
        image_id = ids[i]
        sub, region, city = place.admin2, place.admin1, place.name
        cc = place.cc
        if cc == "NA":  # every other Namibian row as fix_namimbia.py spells it
            cc = "NMB" if namibian % 2 else "NA"
            namibian += 1
        names = pd.DataFrame({"city": [city], "sub-region": [sub], "region": [region], "country": [cc]})
        creator = int(rng.integers(10**5, 10**8))
        rows.append({
            "id": image_id, "latitude": round(lat, 6), "longitude": round(lon, 6),
            "thumb_original_url": f"https://synthetic.invalid/osv5m/{image_id}/thumb_original.jpg",
            "country": cc, "sequence": "".join(rng.choice(alphabet, 22)),
            "captured_at": int(rng.integers(1_400_000_000_000, 1_700_000_000_000)),
            "lon_bin": lon_bin, "lat_bin": lat_bin, "cell": f"({lon_bin}, {lat_bin})",
            "land_cover": int(rng.integers(1, 9)), "road_index": round(float(rng.gamma(2.0, 1.0)), 3),
            "drive_side": drive_side, "climate": climate, "soil": int(rng.integers(1, 13)),
            "dist_sea": round(float(rng.exponential(120.0)), 2),
            "region": region, "sub-region": sub, "city": city,
            "unique_city": build_key(names, "city").iloc[0],
            "unique_sub-region": build_key(names, "sub-region").iloc[0],
            "unique_region": build_key(names, "region").iloc[0], "unique_country": cc,
            **{f"quadtree_10_{n}": _quadtree_cell(lat, lon, depth) for n, depth in QUADTREE_DEPTHS.items()},
            "creator_username": f"mapper{creator % 10_000:04d}", "creator_id": creator,
        })
        scene_rng = np.random.default_rng([seed, 2, i])
        pixels = render_street(scene_rng, lat, place.cc, climate,
                               drive_side, continent.get(place.cc) in ("NA", "SA"), width, height)
        if planted:
            column, hard_value = PLANTED["hard_attribute"]
            weak = continent.get(place.cc) == PLANTED["weak_continent"]
            strength = PLANTED["cast"] * (PLANTED["weak_cast_factor"] if weak else 1.0)
            pixels = plant(pixels, planted_cast(place.cc, region), strength, rows[-1][column] == hard_value,
                           scene_rng)
        save_jpeg(pixels, image_dir / f"{image_id}.jpg")
    pd.DataFrame(rows, columns=OSV5M_COLUMNS).to_csv(root / "test.csv", index=False)
