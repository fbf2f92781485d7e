"""gp3d: 3D generators trained on in-the-wild, non-aligned 2D image collections (3DGP re-implementation)."""

__version__ = "0.1.0"
