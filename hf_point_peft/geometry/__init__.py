"""Pure tensor geometry for point clouds: sampling, grouping, curve keys, validation (imports only torch)."""

from .checks import validate_points
from .curves import curve_order, hilbert_index, hilbert_key, z_order_key
from .sampling import farthest_point_sample, gather_points, group_points, knn, pairwise_sq_distances

__all__ = [
    "curve_order",
    "farthest_point_sample",
    "gather_points",
    "group_points",
    "hilbert_index",
    "hilbert_key",
    "knn",
    "pairwise_sq_distances",
    "validate_points",
    "z_order_key",
]
