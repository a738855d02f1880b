"""Great-circle distance, GeoScore and the distance-based geolocation metrics, as OSV-5M defines them.

Conventions:
- Coordinates are degrees, latitude in [-90, 90], longitude in any range (it only enters through
  sines and cosines, so 180 and -180 are the same meridian); arrays of points are (N, 2) (lat, lon).
- `haversine_km` is the haversine formula on a sphere of radius EARTH_RADIUS_KM = 6371 km, written
  with atan2 as OSV-5M's `metrics/utils.py` does (stable at 0 and at antipodes).
- `geoscore` is OSV-5M's GeoGuessr-style score of one prediction, 5000·exp(−d / 1492.7); the GeoScore
  of a set is the mean over its samples.
- Accuracy within r km counts distances strictly below r (OSV-5M: `haversine_distance < acc`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

EARTH_RADIUS_KM = 6371.0
GEOSCORE_MAX = 5000.0
GEOSCORE_SCALE_KM = 1492.7
MAX_DISTANCE_KM = np.pi * EARTH_RADIUS_KM  # half the circumference: antipodal points
DEFAULT_RADII_KM = (1.0, 25.0, 200.0, 750.0, 2500.0)


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between points given in degrees; arguments broadcast."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    a = np.clip(a, 0.0, 1.0)  # rounding can leave a a hair outside [0, 1]
    return 2 * EARTH_RADIUS_KM * np.arctan2(np.sqrt(a), np.sqrt(1 - a))


def haversine_latlon(a, b) -> np.ndarray:
    """`haversine_km` between (..., 2) arrays of (lat, lon) degrees."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return haversine_km(a[..., 0], a[..., 1], b[..., 0], b[..., 1])


def geoscore(distance_km) -> np.ndarray:
    """OSV-5M's score of one prediction at `distance_km`: 5000·exp(−d / 1492.7), in (0, 5000]."""
    return GEOSCORE_MAX * np.exp(-np.asarray(distance_km, dtype=np.float64) / GEOSCORE_SCALE_KM)


def latlon_to_unit(latlon) -> np.ndarray:
    """(N, 2) degrees → (N, 3) unit vectors (x towards (0, 0), z towards the north pole), float64.

    The chord between two unit vectors is 2·sin(θ/2) for central angle θ, monotone in the
    great-circle distance, so Euclidean nearest neighbours of these vectors are great-circle ones.
    """
    latlon = check_latlon(latlon)
    lat, lon = np.radians(latlon[:, 0]), np.radians(latlon[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def unit_to_latlon(xyz) -> np.ndarray:
    """(N, 3) vectors (any non-zero length) → (N, 2) (lat, lon) degrees, longitude in [-180, 180]."""
    xyz = np.asarray(xyz, dtype=np.float64)
    lat = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    return np.stack([lat, lon], axis=1)


def chord_to_km(chord) -> np.ndarray:
    """Great-circle km from the chord between unit vectors (see `latlon_to_unit`)."""
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2, 0.0, 1.0))


def check_latlon(latlon, name: str = "latlon") -> np.ndarray:
    """`latlon` as a float64 (N, 2) array of finite degrees with |lat| <= 90, or a ValueError."""
    array = np.asarray(latlon, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name}: expected an (N, 2) array of (latitude, longitude), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~np.isfinite(array).all(1))[0])} is not finite")
    if (np.abs(array[:, 0]) > 90).any():
        raise ValueError(f"{name}: row {int(np.flatnonzero(np.abs(array[:, 0]) > 90)[0])} has |latitude| > 90")
    return array


def geolocation_metrics(pred_latlon, true_latlon,
                        radii_km: Sequence[float] = DEFAULT_RADII_KM) -> dict[str, float]:
    """Distance metrics of predictions against the truth, both (N, 2) degrees.

    Keys: `n`; `mean_km`, `median_km` (haversine); `geoscore` (mean of `geoscore` per sample);
    `acc_{r}km` for r in `radii_km` (share with distance < r; r printed as an integer when it is one).
    """
    pred, true = check_latlon(pred_latlon, "pred_latlon"), check_latlon(true_latlon, "true_latlon")
    if pred.shape != true.shape:
        raise ValueError(f"pred_latlon {pred.shape} and true_latlon {true.shape} differ in shape")
    if len(pred) == 0:
        raise ValueError("no predictions to score")
    distance = haversine_latlon(pred, true)
    metrics = {
        "n": int(len(distance)),
        "mean_km": float(distance.mean()),
        "median_km": float(np.median(distance)),
        "geoscore": float(geoscore(distance).mean()),
    }
    for radius in radii_km:
        metrics[f"acc_{_radius_label(radius)}km"] = float((distance < radius).mean())
    return metrics


def _radius_label(radius: float) -> str:
    return str(int(radius)) if float(radius).is_integer() else str(radius)
