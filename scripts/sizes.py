"""List the largest modules and functions of a package (issue 29's before/after note).

    python scripts/sizes.py [ROOT ...] [--min 60]

Prints every module and every function (nested ones too) of at least --min lines, longest
first, as `lines  path[:function]`. Lines are counted from the `def` to the last line of the
body, as `ast` records them.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def sizes(root: Path, minimum: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines >= minimum:
            modules.append((lines, str(path)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length >= minimum:
                    functions.append((length, f"{path}:{node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", default=["firebreak"])
    parser.add_argument("--min", type=int, default=60, help="smallest length listed (lines)")
    args = parser.parse_args()
    for root in args.roots:
        modules, functions = sizes(Path(root), args.min)
        print(f"# modules of {root} >= {args.min} lines: {len(modules)}")
        for n, name in modules:
            print(f"{n:6d}  {name}")
        print(f"# functions of {root} >= {args.min} lines: {len(functions)}")
        for n, name in functions:
            print(f"{n:6d}  {name}")


if __name__ == "__main__":
    main()
