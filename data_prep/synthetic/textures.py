"""Procedural textures (object space, so they stick to the object across views) and backgrounds.

All functions are vectorised over points/rays and gather per-scene parameters by scene index.
"""

import math

import torch

PATTERNS = ("solid", "stripes", "checker", "noise", "rings", "dots")
_TAU = 2 * math.pi


def _solid(p, f, a, ph):
    return 0.15 * (0.5 + 0.5 * torch.sin(_TAU * f * (p * a).sum(-1) + ph))


def _stripes(p, f, a, ph):
    return torch.sigmoid(6 * torch.sin(_TAU * f * (p * a).sum(-1) + ph))


def _checker(p, f, a, ph):
    q = torch.sin(_TAU * f[:, None] * p + ph[:, None]).prod(
        -1
    )  # the sign alternates like a 3D checker
    return torch.sigmoid(40 * q)


def _noise(p, f, a, ph):
    a2, a3 = a.roll(1, dims=-1), a.roll(2, dims=-1) * a.new_tensor([1.0, -1.0, 1.0])
    v = (p * a).sum(-1) + 0.3 * torch.sin(_TAU * 1.3 * f * (p * a2).sum(-1))  # warped domain
    s = torch.sin(_TAU * f * v + ph) + torch.sin(_TAU * 2.1 * f * (p * a3).sum(-1) + 2 * ph)
    return 0.5 + 0.25 * s


def _rings(p, f, a, ph):
    return torch.sigmoid(6 * torch.sin(_TAU * f * (p - 0.5 * a).norm(dim=-1) + ph))


def _dots(p, f, a, ph):
    q = torch.cos(_TAU * f[:, None] * (p + 0.25 * a)).prod(-1)
    return torch.sigmoid(20 * (q.abs() - 0.5))


_PATTERN_FNS = (_solid, _stripes, _checker, _noise, _rings, _dots)


def texture_weight(scenes, p: torch.Tensor, scene_idx: torch.Tensor) -> torch.Tensor:
    """Blend weight in [0, 1] of ``color_b`` over ``color_a`` at object-space points ``p [M, 3]``.

    ``scene_idx [M]`` says which scene of ``scenes`` (a ``synthetic_scenes.Scenes``) each
    point belongs to.
    """
    kind = scenes.pattern[scene_idx]
    w = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    for k, fn in enumerate(_PATTERN_FNS):
        m = kind == k
        if m.any():
            s = scene_idx[m]
            w[m] = fn(p[m], scenes.pattern_freq[s], scenes.pattern_axis[s], scenes.pattern_phase[s])
    return w.clamp(0, 1)


def background_color(scenes, dirs: torch.Tensor) -> torch.Tensor:
    """Procedural background ``[B, N, 3]`` in [0, 1] for world ray directions ``dirs [B, N, 3]``.

    A two-colour gradient along a random axis, modulated by a soft 3D sine pattern over the
    direction sphere (a stand-in for the cluttered backgrounds of real photos).
    """
    g = 0.5 + 0.5 * (dirs * scenes.bg_axis[:, None]).sum(-1, keepdim=True)
    base = (1 - g) * scenes.bg_color_a[:, None] + g * scenes.bg_color_b[:, None]
    arg = scenes.bg_freq[:, None, None] * dirs + scenes.bg_phase[:, None, None]
    pattern = torch.sin(arg).prod(-1, keepdim=True)
    return (base * (1 + 0.35 * pattern)).clamp(0, 1)
