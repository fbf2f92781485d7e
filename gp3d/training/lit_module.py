"""GP3DLitModule: the training orchestration (manual optimisation, spec 7.3 / 14).

One ``training_step`` = Gall -> Dmain -> Dreg (every ``r1_interval`` iterations) -> EMA update,
progress counted in images. The maths lives in losses.py, patches.py, schedules.py, blur.py.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn

from gp3d.models.discriminator import Discriminator
from gp3d.models.generator import Generator
from gp3d.training import schedules
from gp3d.training.blur import blur_images
from gp3d.training.camera_loss import CameraLoss
from gp3d.training.ddp import all_reduce_grads, average_over_ranks_, mean_over_ranks
from gp3d.training.ema import ema_update, make_ema_copy
from gp3d.training.fsdp import (
    any_rank,
    double_backward_safe,
    gathered,
    is_sharded,
    local,
    replicated,
    shard_networks,
)
from gp3d.training.grad_guard import GradGuard
from gp3d.training.losses import (
    class_loss,
    discriminator_loss,
    distillation_loss,
    generator_loss,
    r1_penalty,
)
from gp3d.training.patches import extract_patches, sample_patch_params
from gp3d.training.views import (
    check_view_config,
    draw_view_cameras,
    per_view_means,
    repeat_views,
    view_angle_spread,
    view_logit_spread,
    view_patches,
)
from gp3d.types import Batch, CameraParams, PatchParams
from gp3d.utils import seeding
from gp3d.utils.compile import compile_modules
from gp3d.utils.rng_state import collect_rng_states, restore_rng_states

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class GP3DLitModule(LightningModule):
    """Trains a 3D generator adversarially on patches of real RGB(-D) images.

    Args:
        generator / discriminator: the networks (built by Hydra).
        g_optimizer / d_optimizer: partial optimizer factories; D's lr and betas get the lazy-R1
            correction (spec 7.2).
        batch_size: global batch (images per iteration over all devices).
        total_kimg: training length in thousands of images.
        patch_resolution: side of rendered / real patches fed to D (64).
        patch_min_scale: smallest patch scale; None = patch_resolution / img_resolution.
        patch_beta: (start, end, anneal_kimg) of the Beta(1, b) patch-scale schedule.
        r1_gamma: R1 weight; None = auto, 0.0002 res^2 / batch (spec 7.1).
        r1_interval: lazy R1 every N iterations (16).
        blur_sigma: (init, fade_kimg) of the D-input blur; depth_blur_scale: extra depth blur (P6).
        nerf_noise: (init std, fade_kimg) of the density noise.
        use_depth: D sees RGB-D (3DGP) instead of RGB (EpiGRAF).
        kd_weight: (start, end, anneal_kimg) of the distillation weight; start 0 disables KD.
        kd_squared: squared L2 (paper) instead of the code's plain L2 norm (P3).
        camera_loss: camera-generator regularisers (3DGP); None when there is no camera generator.
        ema_kimg: EMA half-life in kimg; None = batch_size * 0.3125 (spec 7.5). ema_rampup: 0.05.
        compile: torch.compile G's synthesis and decoder for training (``compile_backend``;
            eager fallback, see ``gp3d.utils.compile``).
        channels_last: D's weights and inputs in channels-last (NHWC) memory format, which
            cuDNN's tensor-core convolutions prefer. D only: the synthesis network's modulated
            convolutions are one grouped conv over ``x.reshape(1, B * C, H, W)``, which turns a
            channels-last input back into a contiguous copy (``layers.modulated_conv2d``).
        num_views: renders per latent that D scores (multi-view discrimination, multiview_pti.md
            1.4, see ``views.py``); 1 = single-view training as before.
        view_distribution: "posterior" (camera generator on V prior draws), "prior" or
            "around" (``view_range`` = (yaw, pitch) half-ranges in radians around the latent's
            posterior mean over ``view_mean_samples`` draws).
        class_weight: weight of the AC-GAN auxiliary class loss (``losses.class_loss``; needs
            ``discriminator.class_head``); 0 = off, as in 3DGP.
        skip_nonfinite_grads: a step whose gradient holds NaN / Inf is skipped and counted
            (``grad_guard.py``); False = the original's element-wise NaN -> 0 (spec 7.2).
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        batch_size: int = 64,
        total_kimg: float = 25_000,
        patch_resolution: int = 64,
        patch_min_scale: float | None = None,
        patch_beta: tuple[float, float, float] = (0.001, 0.8, 10_000),
        r1_gamma: float | None = None,
        r1_interval: int = 16,
        blur_sigma: tuple[float, float] = (10.0, 200.0),
        depth_blur_scale: float | None = 30.0,
        nerf_noise: tuple[float, float] = (1.0, 5000.0),
        use_depth: bool = True,
        kd_weight: tuple[float, float, float] = (1.0, 0.0, 100_000),
        kd_squared: bool = False,
        camera_loss: CameraLoss | None = None,
        ema_kimg: float | None = None,
        ema_rampup: float | None = 0.05,
        compile: bool = False,
        compile_backend: str = "inductor",
        channels_last: bool = False,
        num_views: int = 1,
        view_distribution: str = "posterior",
        view_range: tuple[float, float] = (0.5, 0.25),
        view_mean_samples: int = 16,
        class_weight: float = 0.0,
        skip_nonfinite_grads: bool = True,
    ) -> None:
        super().__init__()
        check_view_config(num_views, view_distribution, view_mean_samples)
        self.automatic_optimization = False
        # Only plain values go into the checkpoint (it must load with torch.load(weights_only=True)).
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "camera_loss", "g_optimizer", "d_optimizer"],
            logger=False,
        )
        self.model_config: dict | None = None  # resolved model config, set by the entry point
        self.data_info: dict | None = None  # dataset path / classes / manifest hash, ditto
        self.G, self.D = generator, discriminator
        self.G_ema = make_ema_copy(generator)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.camera_loss = camera_loss
        self.grad_guard = GradGuard() if skip_nonfinite_grads else None
        self.compiled: list[str] = []  # the submodules compiled at fit setup
        res = generator.img_resolution
        self.patch_min_scale = patch_min_scale or patch_resolution / res
        self.r1_gamma = (
            r1_gamma if r1_gamma is not None else schedules.r1_gamma_auto(res, batch_size)
        )
        self.ema_kimg = ema_kimg if ema_kimg is not None else batch_size * 0.3125
        if class_weight > 0 and getattr(discriminator, "class_head", None) is None:
            raise ValueError(
                f"class_weight={class_weight} needs the discriminator's class head: set "
                "model.discriminator.class_head=true (or class_weight=0)"
            )
        if use_depth != (discriminator.in_channels == 4):
            raise ValueError(
                f"use_depth={use_depth} but the discriminator takes {discriminator.in_channels} "
                "channels; set model.discriminator.in_channels to 4 for RGB-D or 3 for RGB"
            )
        # Progress lives in buffers so it is saved in checkpoints and restored on resume.
        self.register_buffer("nimg", torch.zeros((), dtype=torch.long))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        # Host mirrors of the two buffers, read every step without a device-to-host copy; set
        # from the buffers once per fit (on_train_start), after a resume has restored them.
        self._host_nimg: int | None = None
        self._host_iteration = 0

    # --- progress & schedules --------------------------------------------------------------
    @property
    def kimg(self) -> float:
        nimg = self._host_nimg if self._host_nimg is not None else int(self.nimg.item())
        return nimg / 1000.0

    @property
    def uses_kd(self) -> bool:
        return self.hparams.kd_weight[0] > 0 or self.hparams.kd_weight[1] > 0

    def _schedule(self) -> dict[str, float]:
        k, hp = self.kimg, self.hparams
        return {
            "blur_sigma": schedules.blur_sigma(k, *hp.blur_sigma),
            "nerf_noise": schedules.nerf_noise_std(k, *hp.nerf_noise),
            "patch_beta": schedules.patch_beta(k, *hp.patch_beta),
            "kd_weight": schedules.linear_schedule(k, *hp.kd_weight),
        }

    # --- helpers -----------------------------------------------------------------------------
    def onehot(self, labels: torch.Tensor) -> torch.Tensor | None:
        c_dim = self.G.c_dim
        return F.one_hot(labels, c_dim).float() if c_dim > 0 else None

    def _patches(self, batch_size: int, beta: float) -> PatchParams:
        return sample_patch_params(batch_size, self.patch_min_scale, 1.0, beta, device=self.device)

    def _fake(
        self, batch: Batch, sched, update_emas: bool
    ) -> tuple[torch.Tensor, PatchParams, torch.Tensor | None, CameraParams]:
        """Render B x V fake patches as D input (latent-major: row b * V + v is view v of latent
        b, see ``views.py``); labels follow the data (a shuffled real batch). The tri-planes are
        synthesised once per latent and rendered V times."""
        b, v, hp = batch.image.shape[0], self.hparams.num_views, self.hparams
        z = torch.randn(b, self.G.z_dim, device=self.device)
        c = self.onehot(batch.label[torch.randperm(b, device=self.device)])
        patch = view_patches(self._patches(b * v, sched["patch_beta"]), v)
        # The draws in Generator.forward's order (ws, noise, cameras, rays): V = 1 is its step.
        planes = self.G.synthesis(self.G.map(z, c, update_emas=update_emas), noise_mode="random")
        cams = draw_view_cameras(
            self.G.camera_prior, self.G.camera_generator, z, c, v, hp.view_distribution,
            *hp.view_range, hp.view_mean_samples,
        )  # fmt: skip
        out = self.G.render(planes, cams, hp.patch_resolution, patch, sched["nerf_noise"], views=v)
        x = torch.cat([out.rgb, self.G.normalized_depth(out.depth)], 1) if hp.use_depth else out.rgb
        return x, patch, repeat_views(c, v), cams

    def _real(self, batch: Batch, sched) -> tuple[torch.Tensor, PatchParams]:
        x = torch.cat([batch.image, batch.depth], 1) if self.hparams.use_depth else batch.image
        patch = self._patches(x.shape[0], sched["patch_beta"])
        return extract_patches(x, patch, self.hparams.patch_resolution), patch

    def _run_d(self, x: torch.Tensor, patch: PatchParams, c, sched):
        x = blur_images(x, sched["blur_sigma"], self.hparams.depth_blur_scale)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.D(x, patch.to_tensor(), c)

    def _step(self, opt, module: nn.Module) -> None:
        # Only the network this phase steps is synchronised across ranks (PhaseDDPStrategy);
        # under FSDP its backward already reduce-scattered the gradients into this rank's shards.
        # (FSDP leaves scalar parameters unsharded: those are all-reduced here too).
        sharded = is_sharded(module)
        all_reduce_grads(replicated(module.parameters()))
        grads = [local(p.grad) for p in module.parameters() if p.grad is not None]
        grads = [g for g in grads if g.numel() > 0]  # FSDP: a row-less shard of a small weight
        if self.grad_guard is not None:  # DDP: same gradients on all ranks, same verdict
            name = "G" if module is self.G else "D"
            self.grad_guard(name, grads, any_rank if sharded else None)
        # NaN -> 0 and +-inf -> +-1e5, as the original does after its all-reduce (spec 7.2).
        for g in grads:
            torch.nan_to_num_(g, nan=0.0, posinf=1e5, neginf=-1e5)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # --- phases ------------------------------------------------------------------------------
    def _g_step(self, batch: Batch, sched, logs: dict) -> None:
        opt_g = self.optimizers()[0]
        self.toggle_optimizer(opt_g)
        with double_backward_safe(self.G.camera_generator):  # its Lipschitz penalty (FSDP)
            self._g_loss_backward(batch, sched, logs)
        self._step(opt_g, self.G)
        self.untoggle_optimizer(opt_g)

    def _g_loss_backward(self, batch: Batch, sched, logs: dict) -> None:
        x, patch, c, _ = self._fake(batch, sched, update_emas=False)
        out = self._run_d(x, patch, c, sched)
        loss = generator_loss(out.logits)  # a mean over all B x V renders = the views' mean
        logs["train/loss_G"] = loss.detach()
        if self.hparams.class_weight > 0:
            cls = class_loss(out.class_logits, c.argmax(dim=1))
            loss = loss + self.hparams.class_weight * cls
            logs["train/class_G"] = cls.detach()
        if self.camera_loss is not None and self.G.camera_generator is not None:
            cam_loss, cam_logs = self.camera_loss(self.G, self.kimg, self.device)
            loss = loss + cam_loss
            logs.update(cam_logs)
        self.manual_backward(loss)

    def _d_step(self, batch: Batch, sched, logs: dict) -> None:
        opt_d = self.optimizers()[1]
        self.toggle_optimizer(opt_d)
        with torch.no_grad():  # w_avg is tracked on this pass only (spec 1.1)
            fake, patch_f, c_f, cams = self._fake(batch, sched, update_emas=True)
        w_avg = getattr(self.G.mapping, "w_avg", None)
        if w_avg is not None:  # each rank tracked its own latents: keep G identical on all ranks
            average_over_ranks_([w_avg])
        # Every view's fake (multiview_pti.md 1.4 reading (a)): D learns the distribution G's loss
        # pushes on, all V views; the mean over B x V keeps the fake term's weight that of reals.
        logits_f = self._run_d(fake, patch_f, c_f, sched).logits
        if self.hparams.num_views > 1:
            logs.update(self._view_logs(logits_f.detach(), cams))
        real, patch_r = self._real(batch, sched)
        logits_r, kd_pred, cls_r = self._run_d(real, patch_r, self.onehot(batch.label), sched)
        loss = discriminator_loss(logits_r, logits_f)
        logs.update(
            {
                "train/loss_D": loss.detach(),
                "train/logits_real": logits_r.detach().mean(),
                "train/logits_fake": logits_f.detach().mean(),
            }
        )
        if kd_pred is not None and sched["kd_weight"] > 0:
            if batch.embedding is None:
                raise RuntimeError(
                    "KD is on but the batch has no teacher embeddings (data.use_embeddings)"
                )
            kd = distillation_loss(kd_pred, batch.embedding, patch_r.scale, self.hparams.kd_squared)
            loss = loss + sched["kd_weight"] * kd
            logs["train/kd"] = kd.detach()
        if self.hparams.class_weight > 0:  # real images only: the head stays a real-data classifier
            cls = class_loss(cls_r, batch.label)
            loss = loss + self.hparams.class_weight * cls
            logs["train/class_D"] = cls.detach()
        self.manual_backward(loss)
        self._step(opt_d, self.D)
        self.untoggle_optimizer(opt_d)

    def _view_logs(self, logits_f: torch.Tensor, cams: CameraParams) -> dict[str, torch.Tensor]:
        v = self.hparams.num_views
        logs = {f"train/logits_fake_view{i}": m for i, m in enumerate(per_view_means(logits_f, v))}
        logs["train/logits_fake_view_std"] = view_logit_spread(logits_f, v)
        logs["train/view_angle_spread"] = view_angle_spread(cams, v)
        return logs

    def _r1_step(self, batch: Batch, sched, logs: dict) -> None:
        opt_d = self.optimizers()[1]
        self.toggle_optimizer(opt_d)
        real, patch = self._real(batch, sched)
        real = real.detach().requires_grad_(True)
        with double_backward_safe(self.D):  # R1 differentiates through D twice (FSDP)
            logits, kd_pred, cls_pred = self._run_d(real, patch, self.onehot(batch.label), sched)
            penalty = r1_penalty(logits, real, self.r1_gamma)
            # "+ 0 * outputs" keeps every D parameter in the graph (DDP without unused-param
            # search).
            unused = sum(0.0 * t.sum() for t in (kd_pred, cls_pred) if t is not None)
            self.manual_backward(penalty * self.hparams.r1_interval + unused + 0.0 * logits.sum())
        self._step(opt_d, self.D)
        self.untoggle_optimizer(opt_d)
        logs["train/r1"] = penalty.detach()

    # --- Lightning hooks ---------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> None:
        if self._host_nimg is None:  # first step of this module outside fit (tests, benchmarks)
            self._sync_host_counters()
        sched = self._schedule()
        if self.G.depth_adaptor is not None:
            self.G.depth_adaptor.set_kimg(self.kimg)
        logs: dict[str, torch.Tensor | float] = {}
        self._g_step(batch, sched, logs)
        self._d_step(batch, sched, logs)
        if self._host_iteration % self.hparams.r1_interval == 0:
            self._r1_step(batch, sched, logs)
        global_batch = batch.image.shape[0] * self.trainer.world_size
        self._advance(global_batch)
        beta = schedules.ema_beta(
            self._host_nimg, global_batch, self.ema_kimg, self.hparams.ema_rampup
        )
        with gathered(self.G):  # FSDP: G_ema is a full replica (see fsdp.py)
            ema_update(self.G_ema, self.G, beta)
        logs.update(self.grad_guard.logs() if self.grad_guard is not None else {})
        logs = mean_over_ranks(logs)
        self.log("kimg", self.kimg, prog_bar=True, rank_zero_only=True)
        self.log_dict({k: v for k, v in logs.items()}, prog_bar=False, sync_dist=False)
        self.log_dict(
            {"progress/kimg": self.kimg, **{f"schedule/{k}": v for k, v in sched.items()}}
        )
        self.log("G", logs["train/loss_G"], prog_bar=True)
        self.log("D", logs["train/loss_D"], prog_bar=True)
        if self._host_nimg >= self.hparams.total_kimg * 1000:
            self.trainer.should_stop = True

    def _advance(self, global_batch: int) -> None:
        """Count one iteration of ``global_batch`` images (buffers for checkpoints, host mirrors
        for the step's own decisions)."""
        self.nimg += global_batch
        self.iteration += 1
        self._host_nimg += global_batch
        self._host_iteration += 1

    def _sync_host_counters(self) -> None:
        self._host_nimg = int(self.nimg.item())
        self._host_iteration = int(self.iteration.item())

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.channels_last:
            self.D.to(memory_format=torch.channels_last)  # 4-d weights only; a no-op on others
        if stage == "fit" and self.hparams.compile:
            parts = {"G.synthesis": self.G.synthesis, "G.decoder": self.G.decoder}
            self.compiled = compile_modules(parts, self.hparams.compile_backend)
        # seed_everything gives every DDP rank the same seed, so every rank would draw the same
        # latents, prior cameras and patches (duplicated fakes). Offset by the rank as StyleGAN2
        # does (seed * world + rank); the weights are already initialised, identically.
        world = self.trainer.world_size
        if stage == "fit" and world > 1:
            torch.manual_seed(
                seeding.rank_seed(torch.initial_seed(), world, self.trainer.global_rank)
            )

    def configure_model(self) -> None:
        """Shard G and D with FSDP2 under ``GP3DFSDPStrategy`` (the only strategy here that
        builds a device mesh); nothing otherwise. Lightning may call this hook again (a later
        fit / validate): the networks are sharded once."""
        mesh = self.device_mesh
        if mesh is None or is_sharded(self.D):
            return
        shard_networks(self.G, self.D, mesh["data_parallel"])

    def on_train_start(self) -> None:
        # A resumed run has its weights and nimg back (restored before this hook). A single process
        # also gets the RNG states saved with them (exact resume); DDP ranks get a seed of their
        # own (the checkpoint holds rank 0's states only), else they would replay kimg 0's draws.
        self._host_nimg = None  # the first step re-reads the (possibly restored) buffers
        nimg = int(self.nimg.item())
        rng, self._restored_rng = getattr(self, "_restored_rng", None), None
        if nimg > 0 and rng is not None and self.trainer.world_size == 1:
            restore_rng_states(rng)
        elif nimg > 0:
            torch.manual_seed(seeding.resume_seed(torch.initial_seed(), nimg))

    def configure_optimizers(self):
        opt_g = self.g_optimizer(params=_param_groups(self.G))
        base = getattr(self.d_optimizer, "keywords", {})
        lr, betas = schedules.lazy_reg_adam(
            base.get("lr", 0.002), tuple(base.get("betas", (0.0, 0.99))), self.hparams.r1_interval
        )
        opt_d = self.d_optimizer(params=_param_groups(self.D), lr=lr, betas=betas)
        return [opt_g, opt_d]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._host_nimg = None  # the buffers are about to change: re-read them before the next step
        self._restored_rng = checkpoint.get("gp3d_rng")  # applied in on_train_start

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gp3d_rng"] = collect_rng_states()  # saved between steps: exact resume
        if self.model_config is not None:  # lets tools rebuild the networks without Hydra
            checkpoint["gp3d_model_config"] = self.model_config
        if self.data_info is not None:  # lets evaluate/generate find the data and class names
            checkpoint["gp3d_data_info"] = self.data_info

    @torch.no_grad()
    def sample(self, z: torch.Tensor, c: torch.Tensor | None = None, **kwargs):
        """Render with the EMA generator (eval mode, const noise unless overridden)."""
        kwargs.setdefault("noise_mode", "const")
        return self.G_ema(z, c, **kwargs)


def _param_groups(net: nn.Module):
    """All parameters, or under FSDP the sharded ones and the replicated ones (``fsdp.replicated``)
    as two groups with the same settings."""
    if not is_sharded(net):
        return net.parameters()
    plain = {id(p) for p in replicated(net.parameters())}
    groups = [[p for p in net.parameters() if id(p) not in plain], replicated(net.parameters())]
    return [{"params": g} for g in groups if g]
