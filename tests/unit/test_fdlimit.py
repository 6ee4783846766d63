"""Servers raise their soft limit on open files to the hard one at start (firebreak/fdlimit.py)."""

import resource
import subprocess
import sys


def run_with_soft_limit(soft: int, code: str) -> str:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))).stdout


def test_the_soft_limit_is_raised_to_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = run_with_soft_limit(256, "import resource\nfrom firebreak.fdlimit import raise_open_files_limit\n"
                                   "print(*raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    assert out.split() == ["256", str(hard), str(hard)]


def test_a_process_already_at_its_hard_limit_is_left_alone():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = run_with_soft_limit(hard, "from firebreak.fdlimit import raise_open_files_limit\n"
                                    "print(*raise_open_files_limit())")
    assert out.split() == [str(hard), str(hard)]
