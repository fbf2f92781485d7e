"""Volume renderer: stratified coarse pass, importance-sampled fine pass, compositing (spec 2)."""

from collections.abc import Callable

import torch
from torch import nn

from gp3d.models.compositing import composite, density_activation
from gp3d.models.ray_samplers import importance_samples, ray_uniforms, stratified_samples

# field(points [B, M, 3]) -> (rgb [B, M, 3], raw density [B, M, 1])
Field = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class VolumeRenderer(nn.Module):
    """Renders rays through a radiance field with 3DGP's ImportanceRenderer semantics.

    Args:
        near: fixed near distance along every ray (0.75, spec 2.2).
        far: fixed far distance (1.25; inference pushes it by ``far_offset``).
        num_coarse: stratified samples per ray (32).
        num_fine: importance samples per ray (32); 0 disables the fine pass.
        coarse_weights_in_s_space: reproduce the original's quirk of computing the proposal
            weights with s-space deltas (P4). False uses metric deltas as EG3D does.
        chunk_rays: rays rendered per chunk (bounds memory at large resolutions; 0 = no chunking).
    """

    def __init__(
        self,
        near: float = 0.75,
        far: float = 1.25,
        num_coarse: int = 32,
        num_fine: int = 32,
        coarse_weights_in_s_space: bool = True,
        chunk_rays: int = 128 * 128,
    ) -> None:
        super().__init__()
        if not 0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        self.near, self.far = near, far
        self.num_coarse, self.num_fine = num_coarse, num_fine
        self.coarse_weights_in_s_space = coarse_weights_in_s_space
        self.chunk_rays = chunk_rays

    def forward(
        self,
        field: Field,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        density_noise_std: float = 0.0,
        cut_quantile: float | None = None,
        steps_multiplier: int = 1,
        far: float | None = None,
        seed: int | None = None,
        chunk_rays: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Render rays [B, N, 3] -> rgb [B, N, 3], depth [B, N, 1], opacity [B, N, 1].

        ``seed``: draw the stratified and importance-sampling jitter from a hash of
        (seed, ray index) instead of the global RNG, so the image does not depend on the chunk
        size (inference, tests). ``chunk_rays`` overrides the module's chunk size for this call.
        ``generator``: draw the stratified and importance uniforms from it instead of the global
        RNG (ignored with ``seed``), so a render can be replayed exactly.
        """
        b, n = origins.shape[:2]
        chunk_rays = self.chunk_rays if chunk_rays is None else chunk_rays
        chunk = chunk_rays if chunk_rays > 0 else n
        ray_ids = None
        if seed is not None:
            ray_ids = torch.arange(b * n, device=origins.device).reshape(b, n)
        outs = [
            self._render_chunk(
                field,
                origins[:, i : i + chunk],
                dirs[:, i : i + chunk],
                density_noise_std,
                cut_quantile,
                steps_multiplier,
                far if far is not None else self.far,
                None if ray_ids is None else (seed, ray_ids[:, i : i + chunk]),
                generator,
            )
            for i in range(0, n, chunk)
        ]
        return tuple(torch.cat(parts, dim=1) for parts in zip(*outs))

    def _evaluate(self, field: Field, origins, dirs, t, noise_std: float):
        points = origins[:, :, None] + dirs[:, :, None] * t[..., None]  # [B, N, S, 3]
        b, n, s, _ = points.shape
        rgb, raw = field(points.reshape(b, n * s, 3))
        if noise_std > 0:  # NeRF density noise, added in both passes (spec 1.6)
            raw = raw + torch.randn_like(raw) * noise_std
        return rgb.reshape(b, n, s, 3), raw.reshape(b, n, s, 1)

    def _render_chunk(
        self,
        field,
        origins,
        dirs,
        noise_std,
        cut_quantile,
        steps_multiplier,
        far,
        seeded=None,
        generator=None,
    ):
        near, span = self.near, far - self.near
        b, n, _ = origins.shape
        n_coarse, n_fine = self.num_coarse * steps_multiplier, self.num_fine * steps_multiplier
        u_coarse = u_fine = None
        if seeded is not None:
            seed, ids = seeded
            u_coarse = ray_uniforms(seed, 0, ids, n_coarse)
            u_fine = ray_uniforms(seed, 1, ids, n_fine) if n_fine > 0 else None
        elif generator is not None:  # same draw order as the global-RNG path
            dev = origins.device
            u_coarse = torch.rand(b, n, n_coarse, device=dev, generator=generator)
            u_fine = torch.rand(b, n, n_fine, device=dev, generator=generator) if n_fine else None
        s_coarse = stratified_samples((b, n), n_coarse, origins.device, u=u_coarse)
        t_coarse = near + s_coarse * span
        rgb_c, raw_c = self._evaluate(field, origins, dirs, t_coarse, noise_std)
        if self.num_fine == 0:
            sigma = density_activation(raw_c, cut_quantile)
            rgb, depth, opacity, _ = composite(rgb_c, sigma, t_coarse)
            return rgb, depth, opacity

        deltas_ref = s_coarse if self.coarse_weights_in_s_space else None
        sigma_c = density_activation(raw_c, cut_quantile)
        _, _, _, weights = composite(rgb_c, sigma_c, t_coarse, deltas_t=deltas_ref)
        s_fine = importance_samples(s_coarse, weights, n_fine, u=u_fine)
        t_fine = near + s_fine * span
        rgb_f, raw_f = self._evaluate(field, origins, dirs, t_fine, noise_std)

        t_all, order = torch.sort(torch.cat([t_coarse, t_fine], dim=-1), dim=-1)
        rgb_all = torch.cat([rgb_c, rgb_f], dim=-2).gather(
            -2, order[..., None].expand(-1, -1, -1, 3)
        )
        raw_all = torch.cat([raw_c, raw_f], dim=-2).gather(-2, order[..., None])
        sigma_all = density_activation(raw_all, cut_quantile)
        rgb, depth, opacity, _ = composite(rgb_all, sigma_all, t_all)
        return rgb, depth, opacity
