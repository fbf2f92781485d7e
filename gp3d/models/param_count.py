"""Parameter counts per part of the generator and the discriminator (printed by ``gp3d.train``)."""

from torch import nn

# (row name, attribute of the generator); a part that is None (EpiGRAF) counts 0.
GENERATOR_PARTS = (
    ("mapping", "mapping"),
    ("synthesis", "synthesis"),
    ("decoder", "decoder"),
    ("camera generator", "camera_generator"),
    ("depth adaptor", "depth_adaptor"),
)


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(generator: nn.Module, discriminator: nn.Module) -> dict[str, int]:
    """{part: parameters} for G's parts, G in total and D."""
    counts = {
        name: count_parameters(getattr(generator, attr, None)) for name, attr in GENERATOR_PARTS
    }
    counts["G total"] = count_parameters(generator)
    counts["D"] = count_parameters(discriminator)
    return counts


def format_parameter_table(counts: dict[str, int]) -> str:
    """A two-column text table of :func:`parameter_counts` (exact counts and millions)."""
    width = max(len(k) for k in counts)
    rows = [f"{'part':<{width}}  {'parameters':>12}  {'M':>8}"]
    rows += [f"{k:<{width}}  {v:>12,}  {v / 1e6:>8.3f}" for k, v in counts.items()]
    return "\n".join(rows)
