"""The internals of pinned dependencies that Firebreak relies on, checked against what is
installed: if an upgrade changes one, this fails before a failover does."""

import json

import pytest


def test_patroni_keys_the_agent_rewrites():
    from patroni.dcs import AbstractDCS

    # The agent compare-and-deletes <namespace>/leader, reads <namespace>/sync and rewrites
    # <namespace>/members/<name> (control/agent.py); these are Patroni's names for them.
    assert (AbstractDCS._LEADER, AbstractDCS._SYNC, AbstractDCS._MEMBERS) == ("leader", "sync", "members/")


def test_patroni_sync_key_format_is_what_the_agent_parses():
    from patroni.dcs import AbstractDCS

    from firebreak.control import failover  # noqa: F401 - the module whose input this is

    doc = json.loads(json.dumps(AbstractDCS.sync_state("pg-pangyo", ["pg-siheung", "pg-ansan"], None)))
    assert doc["leader"] == "pg-pangyo"
    assert doc["sync_standby"].split(",") == ["pg-ansan", "pg-siheung"]


def test_psycopg_pool_backoff_knobs_still_exist():
    # claims/app.py shortens psycopg_pool's reconnect backoff; a rename would silently undo that.
    from psycopg_pool.base import AttemptWithBackoff

    assert isinstance(AttemptWithBackoff.INITIAL_DELAY, float)
    assert isinstance(AttemptWithBackoff.DELAY_BACKOFF, float)


@pytest.mark.parametrize("module,major", [("patroni", 4), ("psycopg_pool", 3)])
def test_pinned_majors(module, major):
    from importlib.metadata import version

    assert int(version(module.replace("_", "-")).split(".")[0]) == major
