"""Are the classes recognisable? Accuracy of a real-data classifier on class-conditional samples.

"GAN-test" accuracy (Shmelkov et al., "How good is my GAN?", ECCV 2018): a classifier trained on
the *training* images labels generated images of each class; the fraction it labels as the class
they were generated for says whether G draws class-specific objects (chance = 1 / classes). The
same classifier's accuracy on the *held-out* real images is the ceiling. FID cannot say this: a
generator that draws one good average object for every class can score a fine FID.

The classifier is a small CNN on 32x32 RGB (the resolution the CPU recipe renders at), trained
deterministically from a seed and cached next to the training data, keyed by the split's
manifest, so every checkpoint of a run is scored by the same network.
"""

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gp3d.data.format import read_manifest

RESOLUTION = 32


class SmallClassifier(nn.Module):
    """conv-BN-ReLU x2 per stage at 32 -> 16 -> 8 -> 4 px, global average pool, linear."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                ]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, 32, 32] in [-1, 1] -> logits [B, classes]."""
        return self.head(self.features(x).mean(dim=(2, 3)))


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] (any H = W) -> [B, 3, 32, 32], clamped (area resampling)."""
    x = images.float().clamp(-1, 1)
    if x.shape[-1] != RESOLUTION:
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="area")
    return x


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 12,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> SmallClassifier:
    """Fit the classifier on real images [N, 3, H, W] in [-1, 1]; random x-flips (every class
    is mirror-symmetric up to its random yaw) and one-pixel shifts as augmentation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SmallClassifier(num_classes)
    x_all, y_all = to_classifier_input(images), labels.long()
    steps = epochs * ((len(x_all) + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for idx in order.split(batch_size):
            x = x_all[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: SmallClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Overall and per-class top-1 accuracy of ``net`` on images [N, 3, H, W] in [-1, 1]."""
    pred = torch.cat([net(to_classifier_input(x)).argmax(1) for x in images.split(256)])
    hit = (pred == labels).float()
    per_class = [
        float(hit[labels == k].mean()) if bool((labels == k).any()) else float("nan")
        for k in range(net.num_classes)
    ]
    return {"accuracy": float(hit.mean()), "per_class": per_class}


def _cache_key(data_path: Path, seed: int) -> str:
    manifest = json.dumps(read_manifest(data_path), sort_keys=True, default=str)
    return hashlib.sha256(f"{manifest}|{RESOLUTION}|{seed}".encode()).hexdigest()[:16]


def cached_classifier(
    data_path: str | os.PathLike, num_classes: int, seed: int = 0, max_images: int | None = None
) -> tuple[SmallClassifier, bool]:
    """The classifier for the training split at ``data_path``: loaded from
    ``<data_path>/../classifiers/<name>-<key>.pt`` when trained before, else trained on the
    split (its first ``max_images``) and saved atomically. Returns (net, was_cached)."""
    from gp3d.data.truth import load_ground_truth

    data_path = Path(data_path)
    key = _cache_key(data_path, seed)
    path = data_path.parent / "classifiers" / f"{data_path.name}-{key}.pt"
    if path.is_file():
        net = SmallClassifier(num_classes)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.eval(), True
    truth = load_ground_truth(data_path, max_samples=max_images, novel_views=False)
    if int(truth.label.max()) >= num_classes:
        raise ValueError(
            f"{data_path} has labels up to {int(truth.label.max())}, the generator {num_classes} classes"
        )
    net = train_classifier(truth.image, truth.label, num_classes, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return net, False


@torch.no_grad()
def render_per_class(G, per_class: int, batch_size: int = 16, seed: int = 0):
    """``per_class`` samples of every class at 32x32: EMA generator in eval mode, psi = 1, prior
    cameras through the camera generator (as the model samples). Returns (images, labels)."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    labels = torch.arange(G.c_dim).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    images = []
    with torch.random.fork_rng(devices=[device] if device.type != "cpu" else []):
        torch.manual_seed(seed)
        for lab in labels.split(batch_size):
            z = torch.randn(len(lab), G.z_dim, generator=gen).to(device)
            c = F.one_hot(lab, G.c_dim).float().to(device)
            prior = G.camera_prior.sample(len(lab), device=device)
            out = G(z, c, camera=prior, resolution=RESOLUTION, adapt_depth=False)
            images.append(out.rgb.float().cpu())
    G.train(was_training)
    return torch.cat(images), labels


def class_recognition_scores(G, data_path, heldout_images, heldout_labels, per_class: int = 20,
                             batch_size: int = 16, seed: int = 0) -> dict:  # fmt: skip
    """GAN-test accuracy of ``per_class`` samples per class, and the classifier's held-out
    real accuracy (its ceiling) and chance level."""
    net, cached = cached_classifier(data_path, G.c_dim, seed=seed)
    fakes, labels = render_per_class(G, per_class, batch_size, seed)
    fake = accuracy(net, fakes, labels)
    real = accuracy(net, heldout_images, heldout_labels)
    return {
        "class_accuracy": fake["accuracy"],
        "class_accuracy_per_class": fake["per_class"],
        "class_accuracy_true": real["accuracy"],
        "class_accuracy_chance": 1.0 / G.c_dim,
        "class_samples_per_class": per_class,
        "classifier_cached": cached,
    }
