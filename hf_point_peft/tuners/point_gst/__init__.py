"""PointGST (graph spectral adapter) as a peft method: `PointGSTConfig` + `PointGSTModel`."""

from .config import PointGSTConfig
from .layer import PointGSTBatchNorm, PointGSTBlock, PointGSTLayer, SpectralAdapter
from .model import PointGSTModel

__all__ = ["PointGSTBatchNorm", "PointGSTBlock", "PointGSTConfig", "PointGSTLayer", "PointGSTModel", "SpectralAdapter"]
