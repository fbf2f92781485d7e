from types import SimpleNamespace

import torch

from gp3d.callbacks.interval import crossed_kimg


def test_crossed_kimg_fires_once_per_interval_across_ranks():
    trainer = SimpleNamespace(world_size=2)
    batch = SimpleNamespace(image=torch.zeros(16, 3, 4, 4))  # 16 per rank -> 32 images per step
    fired = []
    for step in range(1, 200):
        module = SimpleNamespace(nimg=torch.tensor(step * 32))
        if crossed_kimg(trainer, module, batch, every_kimg=1.0):
            fired.append(step * 32)
    # the first step whose nimg reaches k * 1000, for k = 1..6 (nimg only takes multiples of 32)
    assert (
        fired
        == [-(-k * 1000 // 32) * 32 for k in range(1, 7)]
        == [1024, 2016, 3008, 4000, 5024, 6016]
    )
    module = SimpleNamespace(nimg=torch.tensor(1024))
    assert not crossed_kimg(trainer, module, batch, every_kimg=0)  # 0 = never
