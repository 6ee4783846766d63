"""Bad drill scenarios are refused with clear errors before anything runs."""

import pytest

from tests.conftest import run_cli

CASES = [
    ("unknown fault", "name: x\nsteps:\n  - fault: power-cutt\n    site: pangyo\n",
     "bad.yaml: steps[0].fault: must be one of power-cut, isolate, degrade, ops-tools; got 'power-cutt' (did you mean 'power-cut'?)"),
    ("step without a kind", "name: x\nsteps:\n  - wiat: 3\n", "bad.yaml: steps[0]: a step needs one of: fault, heal, wait"),
    ("negative duration", "name: x\nsteps:\n  - fault: isolate\n    site: ansan\n    duration: -1\n",
     "bad.yaml: steps[0].duration: must be 0 or more, got -1"),
    ("no steps", "name: x\nsteps: []\n", "bad.yaml: steps: "),
    ("unknown field", "name: x\nclient: 3\nsteps:\n  - wait: 1\n", "bad.yaml: client: unknown field (did you mean 'clients'?)"),
    ("yaml syntax", "name: x\nsteps: [\n", "bad.yaml: line "),
]


@pytest.mark.parametrize("what,text,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_scenarios_exit_2(tmp_path, what, text, expected):
    (tmp_path / "bad.yaml").write_text(text)
    r = run_cli("drill", "run", "bad.yaml", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr


def test_bad_flags_exit_2():
    r = run_cli("drill", "power-cut")
    assert r.returncode == 2 and "--site" in r.stderr
    r = run_cli("drill", "degrade", "--site", "ansan", "--loss", "140")
    assert r.returncode == 2 and "Traceback" not in r.stderr
