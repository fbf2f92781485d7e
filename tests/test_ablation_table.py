"""tools/ablation_table.py: runs named by their overrides, seeds aggregated, reports reused only
for the same checkpoint and options. benchmark3d itself is replaced by a recorder here (its maths
has its own tests in test_benchmark3d.py)."""

import json
from pathlib import Path

import pytest
import yaml

from tests.tool_loader import load_tool


@pytest.fixture
def table(monkeypatch):
    mod = load_tool("ablation_table")
    calls = []

    def fake_benchmark(argv):  # FID = the checkpoint's first byte, so seeds differ
        ckpt, out = Path(argv[0]), Path(argv[argv.index("--out") + 1])
        calls.append((ckpt.name, argv[4:]))
        out.mkdir(parents=True, exist_ok=True)
        fid = float(ckpt.read_bytes()[0])
        report = {"kimg": 10.0, "unconditional": {"fid": fid, "depth_w1": 0.1, "depth_w1_true": 0}}
        (out / "benchmark3d.json").write_text(json.dumps(report))
        return 0

    monkeypatch.setattr(mod.benchmark3d, "main", fake_benchmark)
    return mod, calls


def _run(sweep: Path, job: int, overrides: list[str], fid: int, seed: int | None = None) -> Path:
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if seed is not None:
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "kimg000005.ckpt").write_bytes(bytes([99]))
    (run / "checkpoints" / "kimg000010.ckpt").write_bytes(bytes([fid]))  # the newest is scored
    return run


def test_seeds_of_one_ablation_are_one_row_with_mean_and_half_range(tmp_path, table):
    mod, calls = table
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    _run(s0, 0, ["experiment=x", "ablation=multiview"], fid=10, seed=0)  # seed from config.yaml
    _run(s0, 1, ["experiment=x", "ablation=rgb_only"], fid=40)
    _run(s1, 0, ["ablation=multiview", "seed=1"], fid=20)  # seed from the override
    (s1 / "1" / ".hydra").mkdir(parents=True)  # unfinished: no checkpoint, skipped
    (s1 / "1" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["ablation=none"]))
    running = _run(s1, 2, ["ablation=no_adaptor"], fid=30)  # still training: skipped
    (running / "run.json").write_text(json.dumps({"status": "running"}))

    assert mod.main([str(s0), str(s1), "--", "--num-invert", "2"]) == 0
    assert sorted(c[0] for c in calls) == ["kimg000010.ckpt"] * 3
    assert all(c[1] == ["--num-invert", "2"] for c in calls)
    summary = json.loads((s0 / "ablation_table.json").read_text())
    rows = {g["name"]: g for g in summary["aggregate"]}
    assert rows["multiview"]["seeds"] == [0, 1]
    assert rows["multiview"]["columns"]["FID"] == {
        "mean": 15.0, "half_range": 5.0, "values": [10.0, 20.0]
    }  # fmt: skip
    assert rows["rgb_only"]["columns"]["FID"]["values"] == [40.0]
    md = (s0 / "ablation_table.md").read_text()
    assert "| multiview | 10 | 0,1 | " in md and "15 ± 5" in md
    assert "| rgb_only | 10 | 0 | " in md and "| 40 |" in md
    assert (s1 / "ablation_table" / "multiview@1" / "benchmark3d.json").is_file()


def test_reuse_only_for_the_same_checkpoint_and_options(tmp_path, table):
    mod, calls = table
    run = _run(tmp_path, 0, ["ablation=none"], fid=7)
    assert mod.main([str(tmp_path), "--reuse", "--", "--w-steps", "5"]) == 0
    assert mod.main([str(tmp_path), "--reuse", "--", "--w-steps", "5"]) == 0
    assert len(calls) == 1  # same file, same options: the report is read back
    assert mod.main([str(tmp_path), "--reuse", "--", "--w-steps", "6"]) == 0
    assert len(calls) == 2  # other options: scored again
    (run / "checkpoints" / "kimg000010.ckpt").write_bytes(bytes([8, 8]))  # the run went on
    assert mod.main([str(tmp_path), "--reuse", "--", "--w-steps", "6"]) == 0
    assert len(calls) == 3
    assert mod.main([str(tmp_path), "--", "--w-steps", "6"]) == 0  # no --reuse: always scored
    assert len(calls) == 4


def test_extra_runs_and_clear_errors(tmp_path, table, capsys):
    mod, calls = table
    _run(tmp_path, 0, ["ablation=multiview"], fid=3)
    other = tmp_path / "elsewhere.ckpt"
    other.write_bytes(bytes([5]))
    assert mod.main([str(tmp_path), "--run", f"none@2={other}"]) == 0
    rows = json.loads((tmp_path / "ablation_table.json").read_text())["runs"]
    assert [(r["name"], r["seed"]) for r in rows] == [("none", 2), ("multiview", 0)]
    assert mod.main([str(tmp_path), "--run", f"none={tmp_path / 'missing.ckpt'}"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert mod.main([str(tmp_path / "empty")]) == 2
