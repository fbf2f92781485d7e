"""CPU cost of the pipeline's networks at their real sizes (random weights: speed only).

Used by ``python -m data_prep.bench --networks``: seconds per image on one thread of

- depth: Depth-Anything-V2-Small's architecture (DINOv2-S/14 + DPT head, 24.8 M parameters) at
  518 x 686, the processor's size for a 4:3 ImageNet photo;
- teacher: timm ResNet-50 at 224 (``extract_features``);
- selection: timm InceptionV3 at 299 (the FID network's architecture, ``select_instances``).
"""

import time

import torch


def _seconds_per_image(model: torch.nn.Module, x: torch.Tensor, call, repeats: int) -> float:
    with torch.inference_mode():
        call(model, x)  # warm-up (allocations, kernel choice)
        t0 = time.perf_counter()
        for _ in range(repeats):
            call(model, x)
    return (time.perf_counter() - t0) / (repeats * x.shape[0])


def depth_anything_v2_small() -> torch.nn.Module:
    from transformers import AutoModelForDepthEstimation, DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        image_size=518, patch_size=14, reshape_hidden_states=False,
        out_features=["stage3", "stage6", "stage9", "stage12"],
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64, head_hidden_size=32,
    )  # fmt: skip
    return AutoModelForDepthEstimation.from_config(config).eval()


def network_costs(repeats: int = 2) -> list[tuple[str, float]]:
    """(name, seconds per image on one thread) for the three networks."""
    import timm

    torch.set_num_threads(1)
    rows = []
    depth = depth_anything_v2_small()
    rows.append(("depth: Depth-Anything-V2-Small arch, 518x686", _seconds_per_image(
        depth, torch.randn(1, 3, 518, 686), lambda m, x: m(pixel_values=x), repeats)))  # fmt: skip
    for name, size, label in (("resnet50", 224, "teacher"), ("inception_v3", 299, "selection")):
        net = timm.create_model(name, pretrained=False, num_classes=0).eval()
        x = torch.randn(4, 3, size, size)
        rows.append((f"{label}: timm {name}, {size}px", _seconds_per_image(
            net, x, lambda m, x: m(x), repeats)))  # fmt: skip
    return rows
