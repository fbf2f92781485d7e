"""The process's global RNG states (torch CPU / CUDA, numpy, Python) as checkpoint content.

Saved so a resumed single-process run draws exactly the latents, cameras and patches the
uninterrupted run would have drawn. Stored as tensors and plain Python values only, so the
checkpoint still loads with ``torch.load(weights_only=True)``.
"""

import random
from typing import Any

import numpy as np
import torch


def collect_rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state itself
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(version), list(state), gauss],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = states["numpy"]
    state_np = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    np.random.set_state(state_np)  # noqa: NPY002 - the global state itself
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
