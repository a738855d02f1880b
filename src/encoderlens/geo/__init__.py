"""Where was this image taken? Distances and GeoScore, kNN geolocation, admin-level accuracy, geometry.

Pure functions over arrays and tables; coordinates are (lat, lon) degrees, distances great-circle km
on a 6371 km sphere. `distance` holds the OSV-5M metrics, `knn` geolocation by cosine retrieval
(faiss, imported on first use), `places_lookup` the nearest GeoNames place and admin-level accuracy,
`geometry` how embedding similarity relates to distance and how anisotropic the embeddings are.
Gallery sampling lives in `encoderlens.geo.gallery` and is imported from there.
"""

from .distance import (DEFAULT_RADII_KM, EARTH_RADIUS_KM, GEOSCORE_MAX, GEOSCORE_SCALE_KM, MAX_DISTANCE_KM,
                       chord_to_km, geolocation_metrics, geoscore, haversine_km, haversine_latlon,
                       latlon_to_unit, unit_to_latlon)
from .geometry import (DEFAULT_DISTANCE_BINS_KM, anisotropy, binned_cosine, cosine_vs_distance,
                       covariance_spectrum, effective_rank, mean_pairwise_cosine, pair_cosine,
                       pair_cosine_distance, participation_ratio, sample_pairs)
from .knn import build_index, knn_geolocate, knn_search, l2_normalise, split_gallery_queries, weighted_location
from .places_lookup import DEFAULT_ADMIN_LEVELS, PlaceIndex, admin_accuracy, nearest_places, predicted_places

__all__ = [
    "DEFAULT_ADMIN_LEVELS", "DEFAULT_DISTANCE_BINS_KM", "DEFAULT_RADII_KM", "EARTH_RADIUS_KM", "GEOSCORE_MAX",
    "GEOSCORE_SCALE_KM", "MAX_DISTANCE_KM", "PlaceIndex", "admin_accuracy", "anisotropy", "binned_cosine",
    "build_index", "chord_to_km", "cosine_vs_distance", "covariance_spectrum", "effective_rank",
    "geolocation_metrics", "geoscore", "haversine_km", "haversine_latlon", "knn_geolocate", "knn_search",
    "l2_normalise", "latlon_to_unit", "mean_pairwise_cosine", "nearest_places", "pair_cosine",
    "pair_cosine_distance", "participation_ratio", "predicted_places", "sample_pairs",
    "split_gallery_queries", "unit_to_latlon", "weighted_location",
]
