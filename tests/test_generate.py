"""`python -m gp3d.generate`: grids, videos, meshes from a checkpoint or an export."""

import json
import math
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest
import trimesh
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from gp3d.generate import generate
from gp3d.inference.portable import export_generator

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
PAD = 2  # make_grid / tile padding


def compose_generate(overrides: list[str], out_dir: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("generate", overrides=overrides)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.out_dir = str(out_dir)
    return cfg


def grid_side(n_cells: int, cell: int) -> int:
    return n_cells * (cell + PAD) + PAD


FAST = ["resolution=12", "camera.num_samples=16", "class_mean_samples=8", "steps_multiplier=1"]


@pytest.mark.parametrize(
    "trajectory, frames", [("front_circle", 5), ("wiggle", 4), ("line", 3), ("points", None)]
)
def test_videos_and_grids_have_the_right_frames_and_sizes(trajectory, frames, tiny_run, tmp_path):
    extra = [] if frames is None else [f"trajectory.num_frames={frames}"]
    frames = frames or 3  # points: three yaw offsets
    cfg = compose_generate(
        [f"ckpt={tiny_run['ckpt']}", f"trajectory={trajectory}", "seeds=[0,1,2]", *FAST, *extra],
        tmp_path,
    )
    written = generate(cfg)
    (video,) = written["video"]
    assert video.name == f"{trajectory}_both_00.mp4"
    v = iio.imread(video)
    nrow = math.ceil(math.sqrt(3))  # 2 columns, 2 rows for 3 samples
    cell_h, cell_w = 12, 24  # both: rgb | depth side by side
    assert v.shape == (frames, grid_side(2, cell_h), nrow * (cell_w + PAD) + PAD, 3)
    assert iio.immeta(video)["fps"] == pytest.approx(30)
    (grid,) = written["image_grid"]
    img = iio.imread(grid)
    assert img.shape == (grid_side(3, cell_h), frames * (cell_w + PAD) + PAD, 3)
    index = json.loads((tmp_path / "samples.json").read_text())
    assert [(s["seed"], s["class"]) for s in index["samples"]] == [(0, 0), (1, 1), (2, 2)]
    assert not list(tmp_path.glob(".*tmp*"))


def test_classes_by_name_modes_grouping_meshes_and_exports(tiny_run, tmp_path):
    export = export_generator(tiny_run["ckpt"], tmp_path / "g.pt")
    from gp3d.inference.portable import load_generator

    names = load_generator(export).class_names
    cfg = compose_generate(
        [
            f"ckpt={export}",
            "trajectory=point",
            "seeds=[5,6]",
            f"classes=[1,{names[0]}]",
            "mode=depth",
            "per_grid=3",
            "batch_size=2",
            "outputs=[image_grid]",
            "mesh.enabled=true",
            "mesh.resolution=16",
            "mesh.threshold=-1000",  # below any density of this net: no surface
            "mesh.format=glb",
            *FAST,
        ],
        tmp_path / "out",
    )
    with pytest.raises(ValueError, match="no surface at threshold -1000"):
        generate(cfg)
    # a tiny random net has no meaningful surface: take a level inside its density range
    from gp3d.inference.mesh import cube_bounds, density_grid

    g = load_generator(export)
    planes = g.planes(g.latents([5]), [1], 0.7)
    grid = density_grid(lambda p: g.G.density(planes, p[None])[0, :, 0], 16, *cube_bounds(0.3))
    with open_dict(cfg):
        cfg.mesh.threshold = float((grid.min() + grid.max()) / 2)
        cfg.mesh.largest_component = True
    written = generate(cfg)
    assert written["video"] == [] and len(written["image_grid"]) == 2  # 4 samples, 3 per grid
    assert iio.imread(written["image_grid"][0]).shape[0] == grid_side(3, 12)
    assert iio.imread(written["image_grid"][1]).shape[0] == grid_side(1, 12)
    index = json.loads((tmp_path / "out" / "samples.json").read_text())["samples"]
    assert [(s["seed"], s["class"]) for s in index] == [(5, 1), (6, 1), (5, 0), (6, 0)]
    assert index[2]["class_name"] == names[0]
    assert len(written["mesh"]) == 4 and written["mesh"][0].name == "mesh_seed0005_class1.glb"
    assert len(trimesh.load(written["mesh"][0], force="mesh").faces) > 0


def test_bad_options_are_explained(tiny_run, tmp_path):
    base = [f"ckpt={tiny_run['ckpt']}", *FAST]
    with pytest.raises(ValueError, match="mode="):
        generate(compose_generate([*base, "mode=normals"], tmp_path))
    with pytest.raises(ValueError, match="unknown class 'zebra'"):
        generate(compose_generate([*base, "classes=[zebra]"], tmp_path))
    with pytest.raises(ValueError, match="no checkpoint given"):
        generate(compose_generate(FAST, tmp_path))
    for bad in ("per_grid=0", "batch_size=0", "resolution=0", "camera.num_samples=0"):
        with pytest.raises(ValueError, match="must be a positive integer"):
            generate(compose_generate([*base, bad], tmp_path))
    with pytest.raises(ValueError, match="chunk_rays=-1"):
        generate(compose_generate([*base, "chunk_rays=-1"], tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        generate(compose_generate(["ckpt=/nonexistent.ckpt", *FAST], tmp_path))


def test_command_line(tiny_run, tmp_path):
    cmd = [sys.executable, "-m", "gp3d.generate", f"ckpt={tiny_run['ckpt']}", "seeds=[1]"]
    cmd += [*FAST, "trajectory.num_frames=2", "mode=rgb", f"out_dir={tmp_path}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert iio.imread(tmp_path / "front_circle_rgb_00.mp4").shape == (2, 16, 16, 3)
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def test_depth_mostly_past_the_displayed_range_is_reported(tiny_run, tmp_path, caplog):
    def run(depth_range: str, mode: str = "both") -> list[str]:
        cfg = compose_generate(
            [f"ckpt={tiny_run['ckpt']}", "trajectory=point", "seeds=[0]", *FAST,
             f"depth_range={depth_range}", f"mode={mode}", "outputs=[image_grid]"],
            tmp_path / depth_range / mode,
        )  # fmt: skip
        caplog.clear()
        with caplog.at_level("WARNING", logger="gp3d.generate"):
            generate(cfg)
        return [r.getMessage() for r in caplog.records if "beyond the displayed range" in r.message]

    # every rendered depth is >= near = 0.75, so a range ending at 0.1 shows nothing but its end
    (msg,) = run("[0.0,0.1]")
    assert msg.startswith("100% of depth pixels") and "far_offset=0 or depth_range" in msg
    assert run("[0.0,100.0]") == []  # everything inside the range: no warning
    assert run("[0.0,0.1]", mode="rgb") == []  # depth not shown: nothing to say
