"""A drill answers SIGINT and SIGTERM by healing and exiting, even when started where SIGINT is
ignored (a background job of a script, nohup, some CI runners), as a 60-minute chaos drill was."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from firebreak.drill.harness import heal_on_sigterm
heal_on_sigterm()
try:
    print("ready", flush=True)  # inside the try: the signal may land before the sleep starts
    time.sleep(60)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_drill_started_with_sigint_ignored_still_stops_on_it(sig):
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(sig)
        assert p.stdout.readline().strip() == "interrupted"
    finally:
        p.kill()
        p.wait()
