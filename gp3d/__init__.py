"""gp3d: 3D generators trained on in-the-wild, non-aligned 2D image collections (3DGP re-implementation)."""

__version__ = "0.1.0"

__all__ = ["InversionResult", "invert", "load_generator"]


def __getattr__(name: str):
    # Lazy, so that `import gp3d` stays light (no torch) until the loader is asked for.
    if name == "load_generator":
        from gp3d.inference.portable import load_generator

        return load_generator
    if name in ("invert", "InversionResult"):
        import gp3d.inversion

        return getattr(gp3d.inversion, name)
    raise AttributeError(f"module 'gp3d' has no attribute {name!r}")
