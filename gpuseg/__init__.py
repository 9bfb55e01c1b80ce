"""gpuseg: trainable pixel classification on NVIDIA GPUs and CPUs.

Scribble a few pixels of each class; multiscale features (smoothed intensity,
edges, Hessian eigenvalues) and a random forest classify every pixel. The same
API and the same model files on the GPU (CuPy, cuCIM, cuML) and the CPU
(OpenCV, scikit-image, scikit-learn).
"""

__version__ = "0.1.0"

from .features import FeatureParams, multiscale_basic_features, multiscale_features
from .model_io import load
from .segmenter import Segmenter

__all__ = ["FeatureParams", "Segmenter", "load", "multiscale_basic_features", "multiscale_features", "__version__"]
