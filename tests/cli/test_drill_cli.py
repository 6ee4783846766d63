"""Bad drill scenarios are refused with clear errors before anything runs."""

import pytest

from tests.conftest import run_cli

CASES = [
    ("unknown fault", "name: x\nsteps:\n  - fault: power-cutt\n    site: pangyo\n",
     "bad.yaml: steps[0].fault: must be one of power-cut, isolate, degrade, ops-tools, partition, pause, flap, "
     "bad-value; got 'power-cutt' (did you mean 'power-cut'?)"),
    ("step without a kind", "name: x\nsteps:\n  - wiat: 3\n", "bad.yaml: steps[0]: a step needs one of: fault, heal, wait"),
    ("negative duration", "name: x\nsteps:\n  - fault: isolate\n    site: ansan\n    duration: -1\n",
     "bad.yaml: steps[0].duration: must be 0 or more, got -1"),
    ("no steps", "name: x\nsteps: []\n", "bad.yaml: steps: "),
    ("unknown field", "name: x\nclient: 3\nsteps:\n  - wait: 1\n", "bad.yaml: client: unknown field (did you mean 'clients'?)"),
    ("yaml syntax", "name: x\nsteps: [\n", "bad.yaml: line "),
    ("partition without a peer", "name: x\nsteps:\n  - fault: partition\n    site: pangyo\n",
     "bad.yaml: steps[0].peer: a partition cuts one link and needs the site at its other end"),
    ("partition of a site with itself", "name: x\nsteps:\n  - fault: partition\n    site: ansan\n    peer: ansan\n",
     "bad.yaml: steps[0].peer: a link joins two different sites; site and peer are both 'ansan'"),
    ("pause of an unknown component", "name: x\nsteps:\n  - fault: pause\n    site: ansan\n    component: postgress\n",
     "bad.yaml: steps[0].component: unknown component 'postgress' (did you mean 'postgres'?)"),
    ("flap without a period", "name: x\nsteps:\n  - wait: 1\n  - fault: flap\n    site: ansan\n",
     "bad.yaml: steps[1].period: a flap needs its period"),
    ("period on another fault", "name: x\nsteps:\n  - fault: isolate\n    site: ansan\n    period: 4\n",
     "bad.yaml: steps[0].period: applies only to fault: flap"),
    ("pause of no time", "name: x\nsteps:\n  - fault: pause\n    site: ansan\n    duration: 0\n",
     "bad.yaml: steps[0].duration: a pause always lasts its duration"),
    ("bad values for no time", "name: x\nsteps:\n  - fault: bad-value\n    site: ansan\n    duration: 0\n",
     "bad.yaml: steps[0].duration: a bad-value always lasts its duration"),
    ("a heal that settles for ever", "name: x\nsteps:\n  - heal: all\n    settle: 900\n",
     "bad.yaml: steps[0].settle: "),
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


def test_every_problem_of_a_scenario_is_named_at_once(tmp_path):
    """Validated whole: the second step's problem is reported beside the first's, and no lab is asked."""
    (tmp_path / "bad.yaml").write_text("name: x\nsteps:\n  - fault: partition\n    site: pangyo\n"
                                       "  - fault: flap\n    site: ansan\n    component: postgres\n")
    r = run_cli("drill", "run", "bad.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    for start in ("bad.yaml: steps[0].peer:", "bad.yaml: steps[1].component: applies only to fault: pause",
                  "bad.yaml: steps[1].period:"):
        assert any(line.startswith(start) for line in lines), r.stderr


GRAY_FLAGS = [
    (("partition", "--sites", "pangyo"), "--sites: expected two sites separated by a comma"),
    (("partition", "--sites", "pangyo,ansan,siheung"), "--sites: expected two sites separated by a comma"),
    (("partition", "--sites", "ansan,ansan"), "--sites: a link joins two different sites; got 'ansan' twice"),
    (("partition", "--sites", ",ansan"), "--sites: expected two sites separated by a comma"),
    (("pause", "--site", "ansan", "--component", "patroni"), "--component: unknown component 'patroni'"),
    (("flap", "--site", "ansan", "--period", "0.5"), "--period: must be at least 0.8 s, got 0.5"),
    (("flap", "--site", "ansan", "--period", "20", "--duration", "10"),
     "--period: a flap of period 20 s needs a duration of at least that, got 10 s"),
    (("flap", "--site", "ansan", "--period", "0"), "--period: must be above 0 seconds"),
]


@pytest.mark.parametrize("args,expected", GRAY_FLAGS, ids=[" ".join(a) for a, _ in GRAY_FLAGS])
def test_bad_gray_failure_flags_exit_2_before_any_lab_is_asked(args, expected):
    r = run_cli("drill", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr


def test_gray_failure_commands_need_their_contract_flags():
    for args, flag in ((("partition",), "--sites"), (("pause",), "--site"), (("flap", "--site", "ansan"), "--period")):
        r = run_cli("drill", *args)
        assert r.returncode == 2 and flag in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,expected", [
    (("cut", "ansan", "ansan"), "sites: a link joins two different sites; got 'ansan' twice"),
    (("pause", "ansan", "--component", "patroni"), "--component: unknown component 'patroni'"),
])
def test_bad_lab_fault_arguments_exit_2_before_any_lab_is_asked(tmp_path, args, expected):
    r = run_cli("lab", *args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and any(line.startswith(expected) for line in r.stderr.splitlines()), r.stderr


CHAOS_FLAGS = [
    (("--minutes", "0", "--seed", "1"), "--minutes"),
    (("--minutes", "-5", "--seed", "1"), "--minutes"),
    (("--minutes", "2.5", "--seed", "1"), "--minutes"),
    (("--minutes", "10", "--seed", "seven"), "--seed"),
    (("--minutes", "10", "--seed", "1.5"), "--seed"),
    (("--seed", "1"), "--minutes"),
    (("--minutes", "10"), "--seed"),
]


@pytest.mark.parametrize("args,flag", CHAOS_FLAGS, ids=[" ".join(a) for a, _ in CHAOS_FLAGS])
def test_bad_chaos_flags_exit_2_naming_the_flag_and_nothing_runs(tmp_path, args, flag):
    r = run_cli("drill", "chaos", *args, "--report", str(tmp_path / "reports"), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert flag in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "reports").exists()  # no drill began: its report directory comes first


def test_chaos_with_a_junit_file_in_no_directory_exits_2_before_the_lab_is_asked(tmp_path):
    r = run_cli("drill", "chaos", "--minutes", "5", "--seed", "1", "--junit", str(tmp_path / "no" / "j.xml"),
                "--report", str(tmp_path / "reports"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert any(line.startswith("--junit: directory") for line in r.stderr.splitlines()), r.stderr
    assert not (tmp_path / "reports").exists()
