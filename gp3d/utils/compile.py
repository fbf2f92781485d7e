"""Optional ``torch.compile`` of the generator's hot paths, with an eager fallback.

Compiled in place (``nn.Module.compile``): parameter names, checkpoints and the EMA copy are
unchanged. Only G's synthesis network and tri-plane decoder are compiled; D stays eager because
its R1 penalty differentiates D's gradient (double backward), which compiled graphs
(AOTAutograd) do not support.
"""

import warnings

import torch
from torch import nn


def compile_modules(modules: dict[str, nn.Module], backend: str = "inductor") -> list[str]:
    """Compile each module in place; returns the names compiled. A module that cannot be
    compiled (no compiler, unsupported platform) stays eager with a warning, and graphs that
    fail later, at their first call, fall back to eager too (dynamo's ``suppress_errors``)."""
    torch._dynamo.config.suppress_errors = True
    done = []
    for name, module in modules.items():
        try:
            module.compile(backend=backend)
        except Exception as err:  # torch.compile raises many types on unsupported setups
            warnings.warn(f"torch.compile of {name} failed ({err!r}); it runs eager", stacklevel=2)
        else:
            done.append(name)
    return done
