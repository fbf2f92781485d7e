"""A test callback (added with `+callbacks.rank_dump=...`): at the end of fit every rank writes a
digest of G, D and G_ema, so a test can check the ranks ended with identical weights."""

import hashlib
import json
from pathlib import Path

from lightning import Callback


def digest(module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankDump(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        nets = {"G": pl_module.G, "D": pl_module.D, "G_ema": pl_module.G_ema}
        record = {k: digest(v) for k, v in nets.items()}
        record["nimg"] = int(pl_module.nimg)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
