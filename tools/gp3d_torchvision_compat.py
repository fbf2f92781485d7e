"""Make the registry's torchvision importable next to a CPU-only torch build.

Installed by ``make setup`` together with ``gp3d_torchvision_compat.pth`` into the virtualenv's
site-packages, so it runs at interpreter start-up. It only installs an import hook: nothing
happens (and torch is not imported) until something imports ``torchvision``.

Why: torchvision 0.28.0 on PyPI is a CUDA build. With the CPU torch its compiled extension does
not load, yet ``torchvision/_meta_registrations.py`` still calls ``register_fake`` for
``torchvision::nms`` / ``torchvision::qnms`` and the import dies with
``RuntimeError: operator torchvision::nms does not exist`` (see shared/guides/environment.md).
Lightning, timm, torchmetrics and torch-fidelity all import torchvision, so they die too.

Fix: right before torchvision is first imported, try to load its extension ourselves. If it
loads (GPU machines, matching builds) we do nothing else. If it does not, we declare the two
operator schemas so the meta registrations succeed; only ``torchvision.ops.nms`` and the
``torchvision.io`` codecs stay unusable, which gp3d never calls (it uses PIL / imageio).
"""

import importlib.abc
import importlib.util
import os
import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARY = None  # keep the torch.library.Library alive, or its definitions are dropped


def apply(package_dir: str) -> bool:
    """Declare the missing schemas if torchvision's extension cannot load. Returns True if it did."""
    global _LIBRARY
    import torch

    names = os.listdir(package_dir)
    ext = next((f for f in names if f.startswith("_C.") and f.endswith((".so", ".pyd"))), None)
    if ext is not None:
        try:
            torch.ops.load_library(os.path.join(package_dir, ext))
            return False  # the real extension works: nothing to do
        except (OSError, RuntimeError):
            pass
    if _LIBRARY is not None:
        return False
    try:
        _ = torch.ops.torchvision.nms.default  # already declared by someone else
        return False
    except (AttributeError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _LIBRARY.define(schema)
    return True


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)  # one shot; also avoids recursion below
        spec = importlib.util.find_spec("torchvision")
        if spec is not None and spec.submodule_search_locations:
            try:
                apply(list(spec.submodule_search_locations)[0])
            except Exception as err:  # never break start-up; torchvision will raise its own error
                print(f"gp3d torchvision compat hook failed: {err!r}", file=sys.stderr)
        return spec


def install() -> None:
    if not any(isinstance(f, _Hook) for f in sys.meta_path) and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _Hook())
