"""Adversarial, R1 and distillation losses as pure functions (spec 6.5, 7.1)."""

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: mean softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(
    real_logits: torch.Tensor | None, fake_logits: torch.Tensor | None
) -> torch.Tensor:
    """Logistic D loss: mean softplus(D(fake)) + mean softplus(-D(real)); either side may be None."""
    loss = torch.zeros(())
    if fake_logits is not None:
        loss = F.softplus(fake_logits).mean()
    if real_logits is not None:
        loss = loss.to(real_logits) + F.softplus(-real_logits).mean()
    return loss


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """(gamma / 2) * E[ sum_{c,h,w} (dD/dx)^2 ] over all input channels (RGB-D included)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return 0.5 * gamma * grad.square().flatten(1).sum(dim=1).mean()


def distillation_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    patch_scale: torch.Tensor | None = None,
    squared: bool = False,
) -> torch.Tensor:
    """Knowledge distillation of teacher features (spec 6.5, P3).

    Default (original code): the *un-squared* L2 distance per sample, weighted by
    s / mean(s) so small patches count less. ``squared=True`` is the paper's likely variant.
    """
    dist = (predicted - target).square().sum(dim=1)
    if not squared:
        dist = (dist + 1e-12).sqrt()  # eps keeps the gradient finite when prediction == target
    if patch_scale is not None:
        dist = dist * (patch_scale / patch_scale.mean())
    return dist.mean()


def class_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AC-GAN auxiliary classification loss (Odena et al. 2017): mean cross-entropy of D's class
    head. D minimises it on real images only, G on its fakes with the labels it was given, so
    D's head stays a classifier of real data that G's class-c images must satisfy."""
    return F.cross_entropy(class_logits.float(), labels)
