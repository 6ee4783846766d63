"""Files that ship inside the package: example topologies, the Kakao 2022 policy and ledger.

They are package data, so a plain `pip install firebreak` (no checkout) finds them; the
repository's `examples/` is a link to the same folder."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

EXAMPLES = Path(str(files("firebreak") / "examples"))


def example(name: str) -> Path:
    """The packaged example `name` (e.g. 'kakao-2022-policy.yaml')."""
    return EXAMPLES / name
