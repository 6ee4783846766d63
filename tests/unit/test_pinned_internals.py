"""The internals of pinned dependencies that Firebreak relies on, checked against what is
installed: if an upgrade changes one, this fails before a failover does."""

import json

import pytest


def test_patroni_keys_the_agent_rewrites():
    from patroni.dcs import AbstractDCS

    # The agent compare-and-deletes <namespace>/leader, reads <namespace>/sync and rewrites
    # <namespace>/members/<name> (control/agent.py); these are Patroni's names for them.
    assert (AbstractDCS._LEADER, AbstractDCS._SYNC, AbstractDCS._MEMBERS) == ("leader", "sync", "members/")
    # ... and writes <namespace>/failover as patronictl switchover does (failover.Switchover).
    assert AbstractDCS._FAILOVER == "failover"


@pytest.mark.parametrize("raw", ["", "{}", '{"scheduled_at":"2026-12-05T10:00:00+00:00"}', "[1]",
                                 '{"leader":"pg-pangyo"}', '{"member":"pg-ansan"}', "pg-pangyo:pg-ansan"])
def test_a_pending_switchover_is_what_patroni_reads_as_one(raw):
    """failover.pending_switchover decides whether the agent may write /failover (only over an
    empty one): it must read each value as Patroni's Failover.from_node does."""
    from patroni.dcs import Failover

    from firebreak.control.failover import pending_switchover
    assert pending_switchover(raw) is bool(Failover.from_node(7, raw))


def test_patroni_reads_the_switchover_the_agent_asks_for_and_clears_it_with_an_empty_object():
    """failover.Switchover names the leader and no candidate, so that Patroni checks that a
    standby can take over (with quorum votes under quorum commit), demotes the old primary with a
    clean shutdown first, and lets the standbys race by its own rules (a named candidate skips
    those). It clears the request by writing "{}", which the agent may then overwrite."""
    import importlib.util
    from pathlib import Path

    from patroni.dcs import AbstractDCS, Failover

    asked = Failover.from_node(7, json.dumps({"leader": "pg-pangyo"}, separators=(",", ":")))
    assert (asked.leader, asked.candidate, asked.scheduled_at) == ("pg-pangyo", None, None)
    written = []

    class Recorder:
        def set_failover_value(self, value, version=None):
            written.append(value)
            return True
    AbstractDCS.manual_failover(Recorder(), "", "")
    assert written == ["{}"]
    # Read, not imported: patroni.ha alone is a circular import outside Patroni's own start-up.
    module = Path(importlib.util.find_spec("patroni.ha").origin).read_text()
    start = module.index("def process_manual_failover_from_leader(")
    source = module[start:module.index("\n    def ", start + 1)]
    assert "elif self.is_failover_possible():" in source and "self.demote, ('graceful',)" in source
    start = module.index("def manual_failover_process_no_leader(")
    source = module[start:module.index("\n    def ", start + 1)]
    assert "if failover.leader:" in source and "return self._is_healthiest_node(members" in source


def test_patroni_wakes_its_loop_on_an_accepted_patch_of_its_config():
    """After dropping a dead synchronous standby, the agent PATCHes the primary's /config with its
    current ttl to have Patroni pick a living standby now, not at its next loop (agent.py
    _wake_primary); the config key's name is what clusters.py reads the ttl from."""
    import inspect

    import patroni.api
    from patroni.dcs import AbstractDCS

    assert AbstractDCS._CONFIG == "config"
    module = inspect.getsource(patroni.api)  # the handler is wrapped by an access check
    start = module.index("def do_PATCH_config(")
    source = module[start:module.index("\n    def ", start + 1)]
    assert "patch_config(data, request)" in source and "ha.wakeup()" in source
    assert source.index("ha.wakeup()") > source.index("if patch_config(data, request):")


def test_patroni_sync_key_format_is_what_the_agent_parses():
    from patroni.dcs import AbstractDCS

    from firebreak.control import failover  # noqa: F401 - the module whose input this is

    doc = json.loads(json.dumps(AbstractDCS.sync_state("pg-pangyo", ["pg-siheung", "pg-ansan"], None)))
    assert doc["leader"] == "pg-pangyo"
    assert doc["sync_standby"].split(",") == ["pg-ansan", "pg-siheung"]


def test_the_claims_pools_retry_steadily_and_psycopg_pool_is_left_alone():
    """claims/connection.py subclasses psycopg_pool's pool to retry every 0.25 s instead of
    backing off to 8 s and more; a rename in psycopg_pool would silently undo that. And nothing
    patches psycopg_pool for the rest of the process, even once the app is imported."""
    import inspect

    from psycopg_pool import AsyncConnectionPool
    from psycopg_pool.base import AttemptWithBackoff

    import firebreak.claims.app  # noqa: F401 - importing the app must patch nothing
    from firebreak.claims.connection import SteadyAttempt, SteadyPool

    assert (AttemptWithBackoff.INITIAL_DELAY, AttemptWithBackoff.DELAY_BACKOFF) == (1.0, 2.0)  # untouched
    assert list(inspect.signature(AsyncConnectionPool._add_connection).parameters) == ["self", "attempt", "growing"]
    a = SteadyAttempt(timeout=10)
    delays = []
    for now in range(4):
        a.update_delay(float(now))
        delays.append(a.delay)
    assert all(0.2 <= d <= 0.3 for d in delays), delays  # steady, with psycopg_pool's 10% jitter
    assert issubclass(SteadyPool, AsyncConnectionPool)


@pytest.mark.parametrize("module,major", [("patroni", 4), ("psycopg_pool", 3)])
def test_pinned_majors(module, major):
    from importlib.metadata import version

    assert int(version(module.replace("_", "-")).split(".")[0]) == major


def test_the_keys_that_mark_a_patroni_cluster_are_patronis_own_names():
    from patroni.dcs import AbstractDCS

    from firebreak.control.keys import PatroniKeys

    theirs = {AbstractDCS._LEADER, AbstractDCS._MEMBERS.rstrip("/"), AbstractDCS._CONFIG, AbstractDCS._INITIALIZE,
              AbstractDCS._SYNC, AbstractDCS._STATUS, AbstractDCS._HISTORY, AbstractDCS._FAILOVER,
              AbstractDCS._FAILSAFE}
    assert set(PatroniKeys.MARKERS) == theirs


def test_uvicorns_httptools_protocol_writes_through_the_transport_it_is_given():
    """claims/one_write.py hands uvicorn's protocol a transport that joins a response's writes:
    that works only while the protocol keeps and writes through the transport connection_made
    gets (head and body by separate writes, which is what is joined)."""
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    made = inspect.getsource(HttpToolsProtocol.connection_made)
    assert "self.transport = transport" in made and "FlowControl(transport)" in made
    send = inspect.getsource(RequestResponseCycle.send)
    assert send.count("self.transport.write(") >= 2
