"""A test callback (added with `+callbacks.rank_dump=...`): at the end of fit every rank writes a
digest of G, D and G_ema, so a test can check the ranks ended with identical weights. FSDP-sharded
networks are gathered first (a collective: every rank gets the full tensors). With
``save_weights`` rank 0 also saves the gathered tensors, for comparisons between runs."""

import hashlib
import json
from pathlib import Path

import torch
from lightning import Callback
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from gp3d.training.fsdp import is_sharded


def full_state(module) -> dict[str, torch.Tensor]:
    if is_sharded(module):
        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
    return module.state_dict()


def digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankDump(Callback):
    def __init__(self, out_dir: str, save_weights: bool = False) -> None:
        self.out_dir, self.save_weights = Path(out_dir), save_weights

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        nets = {"G": pl_module.G, "D": pl_module.D, "G_ema": pl_module.G_ema}
        states = {k: full_state(v) for k, v in nets.items()}
        record: dict = {k: digest(v) for k, v in states.items()}
        record["nimg"] = int(pl_module.nimg)
        record["sharded"] = {k: is_sharded(v) for k, v in nets.items()}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        if self.save_weights and trainer.global_rank == 0:
            flat = {f"{k}.{n}": t.detach().cpu() for k, s in states.items() for n, t in s.items()}
            torch.save(flat, self.out_dir / "weights.pt")
