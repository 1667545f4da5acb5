"""Print the pinned requirements of the `realrag` distribution (core + the named extras).

The images install these first, with `-c constraints.txt`, in a layer of their own, so that a code
change does not re-download torch; the package itself is installed afterwards from the same
pyproject.toml with the same constraints. Standard library only (it runs before anything else is
installed).

    python requirements_from_pyproject.py pyproject.toml [EXTRA ...]
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml defines {sorted(optional)}")
    lines = list(project["dependencies"])
    for extra in extras:
        lines.extend(optional[extra])
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    print("\n".join(requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
