"""Layout statistics for the README's code map: files per folder, the longest functions, and the
package import graph (edges between gp3d / data_prep units, lazy imports included).

    python tools/code_stats.py [ROOT] [--top 10]
"""

import argparse
import ast
from collections import Counter, defaultdict
from pathlib import Path


def unit(module: str, root: Path) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (root / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=".")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    root = Path(args.root).resolve()
    files = [p for pkg in ("gp3d", "data_prep") for p in sorted((root / pkg).rglob("*.py"))]
    per_folder = Counter(str(p.parent.relative_to(root)) for p in files)
    funcs, edges = [], defaultdict(set)
    for p in files:
        tree = ast.parse(p.read_text())
        mod = ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                funcs.append((n, f"{p.relative_to(root)}:{node.lineno} {node.name}"))
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("gp3d", "data_prep"):
                    a, b = unit(mod, root), unit(name, root)
                    if a != b:
                        edges[a].add(b)
    print("files per folder:")
    for folder, n in sorted(per_folder.items()):
        print(f"  {n:3d}  {folder}/")
    print(f"longest functions (of {len(funcs)}):")
    for n, where in sorted(funcs, reverse=True)[: args.top]:
        print(f"  {n:4d}  {where}")
    cross = sorted(
        (a, b)
        for a in edges
        for b in edges[a]
        if a.startswith("gp3d") and b.startswith("data_prep")
    )
    print(f"gp3d -> data_prep edges: {len(cross)} {cross}")
    cycles = sorted(
        {tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())}
    )
    print(f"two-unit import cycles: {len(cycles)} {cycles}")


if __name__ == "__main__":
    main()
