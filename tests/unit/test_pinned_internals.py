"""The internals of pinned dependencies that Firebreak relies on, checked against what is
installed: if an upgrade changes one, this fails before a failover does."""

import json

import pytest


def test_patroni_keys_the_agent_rewrites():
    from patroni.dcs import AbstractDCS

    # The agent compare-and-deletes <namespace>/leader, reads <namespace>/sync and rewrites
    # <namespace>/members/<name> (control/agent.py); these are Patroni's names for them.
    assert (AbstractDCS._LEADER, AbstractDCS._SYNC, AbstractDCS._MEMBERS) == ("leader", "sync", "members/")


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


def test_patroni_keeps_a_primary_behind_the_clusters_timeline_from_the_key_and_demotes_it():
    """failover.fenced_history relies on these: a running primary without the key races for it
    only when its timeline is not behind the cluster's (read from /history), and otherwise
    follows, which demotes a primary at once; standbys check their timelines only with
    check_timeline; and the new primary rewrites a last history line that is not of five items."""
    import inspect

    from patroni.ha import Ha

    healthiest = inspect.getsource(Ha.is_healthiest_node)
    primary = healthiest[healthiest.index("if self.state_handler.is_primary():"):]
    assert "if my_timeline < self.cluster.timeline:" in primary and "return False" in primary
    assert "self.follow(" in inspect.getsource(Ha.process_unhealthy_cluster)
    follow = inspect.getsource(Ha.follow)
    assert "self.demote('immediate-nolock')" in follow
    race = inspect.getsource(Ha._is_healthiest_node)
    assert "self.check_timeline()" in race[:race.index("if my_timeline < cluster_timeline")]
    assert "len(cluster_history[-1]) != 5" in inspect.getsource(Ha.update_cluster_history)
    from patroni.config import Config
    assert "check_timeline" not in Config.get_default_config()  # off unless /config sets it
    # In maintenance mode a standby does not race (so the agents release nothing then)
    assert healthiest.index("if self.is_paused():\n            return False") > healthiest.index(
        "if self.state_handler.is_primary():")


def test_patroni_wins_a_free_key_back_in_update_lock_once_its_lease_is_gone():
    """Why a fenced release revokes the old primary's session only once another member holds the
    key (Agent._end_session): a Patroni that still reads the key as its own, its lease revoked,
    grants a new lease and creates the key if absent, without is_healthiest_node's timeline check."""
    import inspect

    import patroni.dcs.etcd3

    module = inspect.getsource(patroni.dcs.etcd3)  # the method is under a decorator without wraps
    start = module.index("def _update_leader(")
    update = module[start:module.index("\n    @", start)]
    assert "if self._lease and leader.session != self._lease:" in update
    assert "'target': 'CREATE', 'create_revision': '0'" in update
