"""Kill rate per module from the last `make mutate` (mutmut's mutants/**/*.py.meta files).

    python tools/mutation_summary.py [--survivors] [--only GLOB ...] [--root mutants]

A mutant counts as caught when a test failed (killed) or it ran past the timeout; "survived" and
"no tests" (no selected test reaches the mutated function) are the holes. Mutants not yet run
(a budget ran out) are listed as not checked and left out of the rate.
"""

import argparse
import fnmatch
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

CAUGHT = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout"}
HOLES = {0: "survived", 5: "no tests", 33: "no tests"}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    return CAUGHT.get(code) or HOLES.get(code) or ("skipped" if code == 34 else "other")


def load(root: Path, only: list[str]) -> dict[str, str]:
    out = {}
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            if not only or any(fnmatch.fnmatch(name, g) for g in only):
                out[name] = status(code)
    return out


def module_of(name: str) -> str:
    return name.split(".x_")[0].split(".xǁ")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("mutants"))
    parser.add_argument("--only", nargs="*", default=[], help="mutant name globs")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no {args.root}/ folder: run `make mutate` first", file=sys.stderr)
        return 2
    results = load(args.root, args.only)
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, s in results.items():
        by_module[module_of(name)][s] += 1
    total: Counter = Counter()
    print(
        f"{'module':36s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} {'no test':>7s}"
        f" {'unrun':>6s} {'kill rate':>9s}"
    )
    for module, c in sorted(by_module.items()):
        total.update(c)
        print(_row(module, c))
    print(_row("all", total))
    if args.survivors:
        for name, s in sorted(results.items()):
            if s in HOLES.values():
                print(f"{s:9s} {name}   (mutmut show {name})")
    return 0


def _row(label: str, c: Counter) -> str:
    """Kill rate = (killed + timeout) / (killed + timeout + survived + no tests)."""
    caught = c["killed"] + c["timeout"]
    holes = c["survived"] + c["no tests"]
    rate = f"{100 * caught / (caught + holes):.1f}%" if caught + holes else "-"
    return (
        f"{label:36s} {c['killed']:6d} {c['timeout']:7d} {c['survived']:8d} {c['no tests']:7d}"
        f" {c['not checked']:6d} {rate:>9s}"
    )


if __name__ == "__main__":
    sys.exit(main())
