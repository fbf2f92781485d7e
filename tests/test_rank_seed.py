"""DDP ranks draw different training randomness (latents, cameras, patches) from one seed."""

from types import SimpleNamespace

import torch

from gp3d.training.lit_module import GP3DLitModule


def _draws_after_setup(rank: int, world: int) -> torch.Tensor:
    torch.manual_seed(0)  # what seed_everything does on every rank
    trainer = SimpleNamespace(world_size=world, global_rank=rank)
    fake = SimpleNamespace(
        trainer=trainer, hparams=SimpleNamespace(compile=False, channels_last=False)
    )
    GP3DLitModule.setup(fake, "fit")
    return torch.randn(4)


def test_ranks_get_distinct_reproducible_streams_and_one_process_is_untouched():
    r0, r1 = _draws_after_setup(0, 2), _draws_after_setup(1, 2)
    assert not torch.equal(r0, r1)  # no duplicated fakes across ranks
    assert torch.equal(r1, _draws_after_setup(1, 2))  # reproducible per rank
    seeded = torch.Generator().manual_seed(0)
    assert torch.equal(_draws_after_setup(0, 1), torch.randn(4, generator=seeded))  # untouched
