"""Seeds of the training RNG: per DDP rank, and after a resume.

Lightning restores weights, optimiser state and ``nimg`` but not torch's RNG state, and
``seed_everything`` gives every rank the same seed. Both are derived here so every (rank, resume
point) draws its own latents, prior cameras and patches, reproducibly.
"""

import hashlib


def rank_seed(seed: int, world_size: int, rank: int) -> int:
    """StyleGAN2's per-rank seed (seed * world + rank): distinct for every rank of one run."""
    return (seed * world_size + rank) % 2**63


def resume_seed(seed: int, nimg: int) -> int:
    """A seed for a run resumed at ``nimg`` images: a hash, so resuming at different points (or
    not at all) never repeats a stream, and resuming twice at the same point repeats it exactly."""
    digest = hashlib.sha256(f"gp3d-resume:{seed}:{nimg}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63
