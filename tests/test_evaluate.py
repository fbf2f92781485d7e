"""``python -m gp3d.evaluate``: metric names, the JSON report and table, agreement with the
training callback's FID, class / truncation options, clear errors."""

import json
from pathlib import Path

import pytest
import torch

from gp3d.callbacks.fid import fid_of_generator
from gp3d.evaluate import MetricError, evaluate, main, parse_metric
from gp3d.inference.portable import load_generator
from gp3d.metrics.feature_net import load_feature_network
from gp3d.metrics.real_stats import real_stats

ALL = "fid50k_full,kid50k_full,is50k,pr50k3_full,nfs256"


def test_metric_names():
    assert parse_metric("fid50k_full") == parse_metric("fid50k_full")
    s = parse_metric("fid50k_full")
    assert (s.kind, s.num, s.full) == ("fid", 50000, True)
    assert (parse_metric("fid2k").num, parse_metric("fid2k").full) == (2000, False)
    pr = parse_metric("pr50k3_full")
    assert (pr.kind, pr.num, pr.k, pr.full) == ("pr", 50000, 3, True)
    assert parse_metric("nfs256").num == 256 and parse_metric("is50k").num == 50000
    assert parse_metric("kid50k_full", num_override=12).num == 12
    for bad in ("fid", "ppl2_wend", "is50k_full", "fid50k3", "nfs256_full"):
        with pytest.raises(MetricError, match="unknown metric"):
            parse_metric(bad)


def test_report_table_and_agreement_with_the_callback(tiny_run, tmp_path, capsys):
    out = tmp_path / "report.json"
    cache = tmp_path / "cache"
    args = [str(tiny_run["ckpt"]), "--metrics", ALL, "--num-samples", "12"]
    args += ["--feature-net", "random:16", "--cache-dir", str(cache), "--out", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    for name in ALL.split(","):
        assert name in table
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["data"]["same_as_training"] is True and report["truncation_psi"] == 1.0
    assert m["fid50k_full"]["value"] > 0 and m["fid50k_full"]["num_reals"] == 48  # all reals
    assert m["kid50k_full"]["num_reals"] == 48
    assert 1.0 <= m["is50k"]["value"] <= 10.0
    assert 0.0 <= m["pr50k3_full"]["precision"] <= 1.0 and 0.0 <= m["pr50k3_full"]["recall"] <= 1
    assert 1.0 <= m["nfs256"]["value"] <= 64.0
    # the training callback's computation gives the same FID on the same samples
    G = load_generator(tiny_run["ckpt"]).G
    net = load_feature_network("random:16")
    reals = real_stats(str(tiny_run["data"]), net, cache)
    counts = json.loads((Path(tiny_run["data"]) / "manifest.json").read_text())["class_counts"]
    ref = fid_of_generator(G, net, reals, 12, batch_size=4, class_counts=counts, seed=0)
    assert m["fid50k_full"]["value"] == pytest.approx(ref, rel=1e-6)


def test_class_and_truncation_options(tiny_run, tmp_path):
    kw = dict(feature_net="random:16", num_samples=8, cache_dir=str(tmp_path))
    base = evaluate(str(tiny_run["ckpt"]), ["fid8_full"], **kw)["metrics"]["fid8_full"]
    trunc = evaluate(str(tiny_run["ckpt"]), ["fid8_full"], truncation_psi=0.5, **kw)
    cls = evaluate(str(tiny_run["ckpt"]), ["fid8_full"], class_name="0", **kw)
    assert trunc["truncation_psi"] == 0.5
    assert trunc["metrics"]["fid8_full"]["value"] != pytest.approx(base["value"])
    counts = json.loads((Path(tiny_run["data"]) / "manifest.json").read_text())["class_counts"]
    assert cls["class_index"] == 0 and cls["metrics"]["fid8_full"]["num_reals"] == counts[0]
    with pytest.raises(ValueError, match="--class"):
        evaluate(str(tiny_run["ckpt"]), ["fid8"], class_name="unicorn", **kw)


def test_errors_and_inception_score_without_logits(tiny_run, tmp_path, capsys):
    assert main([str(tiny_run["ckpt"]), "--metrics", "fid50k_fool"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "nologits.pt"
    torch.jit.script(_Pool()).save(str(path))
    report = evaluate(str(tiny_run["ckpt"]), ["is8"], feature_net=str(path), num_samples=8)
    assert "no classifier logits" in report["metrics"]["is8"]["skipped"]


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
