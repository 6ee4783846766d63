import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIREBREAK = str(Path(sys.executable).parent / "firebreak")


@pytest.fixture
def write(tmp_path):
    """write('topo.yaml', yaml_text) -> path, dedented."""
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return p
    return _write


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([FIREBREAK, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
