"""Habits every command shares: --format text|json, confirmation for actions that move
primaries or traffic, shell completion, clear errors for bad flags."""

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("args", [("ops", "switchover", "ansan"), ("ops", "evacuate", "pangyo"),
                                  ("ops", "deploy", "v2")])
def test_actions_that_move_things_need_a_terminal_or_yes(args):
    r = run_cli(*args, "--console", "http://127.0.0.1:9", "--token", "x.y")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "pass --yes" in r.stderr and "Traceback" not in r.stderr


def test_with_yes_the_action_is_tried(tmp_path):
    r = run_cli("ops", "switchover", "ansan", "--yes", "--console", "http://127.0.0.1:9", "--token", "x.y")
    assert r.returncode == 1 and "switchover failed everywhere" in r.stderr


@pytest.mark.parametrize("words,cword,expected", [("firebreak dr", 1, "drill"), ("firebreak lab he", 2, "heal"),
                                                  ("firebreak ops st", 2, "status")])
def test_shell_completion_completes_commands(words, cword, expected):
    import os
    import subprocess

    from tests.conftest import FIREBREAK

    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(cword), _FIREBREAK_COMPLETE="complete_bash")
    r = subprocess.run([FIREBREAK], capture_output=True, text=True, env=env, timeout=30)
    assert expected in r.stdout.split()


@pytest.mark.parametrize("args", [("lab", "status"), ("ops", "status"), ("drill", "power-cut"),
                                  ("drill", "run"), ("lab", "heal"), ("check",), ("drill", "partition"),
                                  ("drill", "pause"), ("drill", "flap")])
def test_reporting_commands_take_format_text_or_json(args):
    r = run_cli(*args, "--help")
    assert r.returncode == 0 and "--format" in r.stdout and "text" in r.stdout and "json" in r.stdout


def test_a_bad_format_is_refused_with_the_flag_named():
    r = run_cli("lab", "status", "--format", "yaml")
    assert r.returncode == 2 and "--format" in r.stderr


def test_drill_objectives_are_checked_before_the_lab_is_asked(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\nobjectives: {max_write_gap_s: -1}\nsteps: [{fault: power-cut, site: primary}]\n")
    r = run_cli("drill", "run", str(f))
    assert r.returncode == 2 and "objectives.max_write_gap_s: must be more than 0" in r.stderr
