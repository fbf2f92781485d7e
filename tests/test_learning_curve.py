"""tools/learning_curve.py: the kimg-0 point is the run's architecture at initialisation, every
checkpoint is scored, and ``--reuse`` reads a point's report of the same checkpoint instead of
rerunning benchmark3d (which is replaced by a recorder here; its maths is tested elsewhere)."""

import json
import shutil
from pathlib import Path

import torch

from tests.tiny_generator import save_tiny_generator
from tests.tool_loader import load_tool


def _tool(monkeypatch):
    mod = load_tool("learning_curve")
    calls = []

    def fake_benchmark(argv):  # depth correlation rises with kimg
        point, out = Path(argv[0]), Path(argv[argv.index("--out") + 1])
        calls.append(point.name)
        kimg = float(torch.load(point, map_location="cpu", weights_only=False)["meta"]["kimg"])
        out.mkdir(parents=True, exist_ok=True)
        report = {"checkpoint": str(point), "kimg": kimg, "unconditional": {"fid": 2.0 - kimg},
                  "reconstruction": {"depth_corr": kimg / 10}}  # fmt: skip
        (out / "benchmark3d.json").write_text(json.dumps(report))
        return 0

    monkeypatch.setattr(mod.benchmark3d, "main", fake_benchmark)
    return mod, calls


def test_learning_curve_scores_init_and_every_checkpoint_and_reuses(tmp_path, monkeypatch, capsys):
    mod, calls = _tool(monkeypatch)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    g = save_tiny_generator(tmp_path, tmp_path / "g.pt", c_dim=2)
    for kimg in (1, 2):
        payload = torch.load(g, map_location="cpu", weights_only=False)
        payload["meta"]["kimg"] = float(kimg)
        torch.save(payload, run / "checkpoints" / f"kimg{kimg:06d}.ckpt")
    assert mod.main([str(run), "--", "--num-invert", "1"]) == 0
    assert calls == ["init.pt", "kimg000001.ckpt", "kimg000002.ckpt"]
    rows = json.loads((run / "learning_curve" / "learning_curve.json").read_text())
    assert [r["kimg"] for r in rows] == [0.0, 1.0, 2.0]  # the init point is kimg 0
    init = torch.load(run / "learning_curve" / "init.pt", map_location="cpu", weights_only=False)
    trained = torch.load(g, map_location="cpu", weights_only=False)
    assert init["config"] == trained["config"]  # same architecture, fresh weights
    assert (run / "learning_curve.png").stat().st_size > 0
    assert "PTI depth correlation=0.1" in capsys.readouterr().out
    calls.clear()
    assert mod.main([str(run), "--reuse"]) == 0
    assert calls == []  # every point's report is of its own checkpoint
    # a point whose report is of another file is rerun
    shutil.copy(run / "checkpoints" / "kimg000002.ckpt", run / "checkpoints" / "kimg000003.ckpt")
    report = run / "learning_curve" / "kimg000001" / "benchmark3d.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), "checkpoint": "elsewhere"}))
    assert mod.main([str(run), "--reuse"]) == 0
    assert calls == ["kimg000001.ckpt", "kimg000003.ckpt"]
