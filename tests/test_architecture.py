"""The layout's rules, checked on the source: gp3d never imports data_prep, and gp3d's packages
import only downwards in the layer order of the README's code map (no back edges, so no cycles).

Every import statement counts, also those inside functions: a lazy import is still an arrow.
"""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# gp3d's units by layer, lowest first. A unit is a subpackage or a top-level module; the
# top-level modules not listed under lower layers are the commands (`python -m gp3d.X`).
LAYERS = [
    {"gp3d", "gp3d.types", "gp3d.utils", "gp3d.config_checks"},
    {"gp3d.models", "gp3d.data"},
    {"gp3d.training", "gp3d.inference"},
    {"gp3d.metrics"},
    {"gp3d.callbacks", "gp3d.bench", "gp3d.inversion", "gp3d.viewer"},
    {"gp3d.eval3d", "gp3d.sweeps"},
]
LIBRARY = set().union(*LAYERS)


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "gp3d" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def layer_of(unit: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    return len(LAYERS)  # a command


def imports_of(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            # `from gp3d import training` names a unit, not the package root
            if node.module == "gp3d":
                out += [(node.lineno, f"gp3d.{a.name}") for a in node.names]
    return out


def gp3d_files() -> list[Path]:
    return sorted((ROOT / "gp3d").rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_gp3d_never_imports_data_prep():
    found = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in gp3d_files()
        for line, name in imports_of(p)
        if name.split(".")[0] == "data_prep"
    ]
    assert not found, (
        "gp3d must not import data_prep (use a data config's prepare node):\n" + "\n".join(found)
    )


def back_edges(files: list[Path], root: Path) -> list[str]:
    """Imports from a unit to one in the same or a higher layer. The package root
    (``gp3d/__init__.py``, the public facade with lazy attributes) may import anything, and anything
    may import the root (``gp3d.__version__``)."""
    bad = []
    for p in files:
        src = unit_of(".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"))
        if src == "gp3d":
            continue
        for line, name in imports_of(p):
            dst = unit_of(name)
            if not name.startswith("gp3d") or dst in (src, "gp3d"):
                continue
            if layer_of(dst) >= layer_of(src):
                bad.append(f"{p.relative_to(root)}:{line}: {src} (layer {layer_of(src)}) -> {dst}")
    return bad


def test_gp3d_imports_only_downwards():
    bad = back_edges(gp3d_files(), ROOT)
    assert not bad, "imports against the layer order (see README, Code map):\n" + "\n".join(bad)


def test_every_unit_has_a_layer():
    """A new subpackage must be placed in LAYERS (and the README's code map)."""
    packages = {f"gp3d.{p.name}" for p in (ROOT / "gp3d").iterdir() if (p / "__init__.py").exists()}
    assert packages <= LIBRARY, f"place {sorted(packages - LIBRARY)} in LAYERS"


@pytest.mark.parametrize(
    "module, line, ok",
    [
        ("gp3d/models/x.py", "from gp3d.training.losses import g_loss", False),  # up a layer
        ("gp3d/training/x.py", "from gp3d.inference.sampling import latents", False),  # sideways
        ("gp3d/training/x.py", "    import gp3d.train", False),  # a command, lazily
        ("gp3d/training/x.py", "from gp3d import metrics", False),  # a unit named via the root
        ("gp3d/training/x.py", "from gp3d.models.generator import Generator", True),
        ("gp3d/callbacks/x.py", "import gp3d", True),
        ("gp3d/generate.py", "from gp3d.callbacks import samples", True),
    ],
)
def test_back_edge_check_on_known_files(tmp_path, module, line, ok):
    path = tmp_path / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("def f():\n" + (line if line.startswith(" ") else "    " + line) + "\n")
    assert (back_edges([path], tmp_path) == []) == ok


def test_hydra_targets_point_at_existing_objects():
    """Config mirrors code: every `_target_` under conf/ names an importable object."""
    import importlib

    def walk(node, path, out):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "_target_" and isinstance(v, str):
                    out.add((path.relative_to(ROOT), v))
                walk(v, path, out)
        elif isinstance(node, list):
            for v in node:
                walk(v, path, out)

    targets: set = set()
    for path in (ROOT / "conf").rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()), path, targets)
    assert targets
    for path, target in sorted(targets):
        module, _, attr = target.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), f"{path}: {target} does not exist"
