"""The topology loader: every kind of bad input names the field and the reason, all at once."""

import pytest

from firebreak.errors import InputError
from firebreak.topology import Failover, Kind, Replication, load_topology, topology_from_dict
from firebreak.topology.load import find_cycle

GOOD = """
name: example
sites: [pangyo, ansan, siheung]
services:
  login:
    replicas: {pangyo: 4}
    needs: 2
    depends_on: [users-db]
    recovery: [deploy]
  users-db:
    kind: database
    primary: pangyo
    replicas: {pangyo: 1, ansan: 1}
    replication: sync
    failover: auto
  coordination:
    kind: quorum
    replicas: {pangyo: 1, ansan: 1, siheung: 1}
  deploy:
    kind: ops-tool
    replicas: {pangyo: 1}
"""


def test_loads_the_documented_format(write):
    topo = load_topology(write("topo.yaml", GOOD))
    assert topo.sites == ("pangyo", "ansan", "siheung")
    login = topo.services["login"]
    assert (login.kind, login.needs, login.depends_on, login.recovery) == (Kind.SERVICE, 2, ("users-db",), ("deploy",))
    db = topo.services["users-db"]
    assert (db.kind, db.primary, db.replication, db.failover) == (Kind.DATABASE, "pangyo", Replication.SYNC, Failover.AUTO)
    assert topo.services["coordination"].total == 3


def test_database_defaults_are_the_pessimistic_ones():
    topo = topology_from_dict({"name": "x", "sites": ["a", "b"],
                               "services": {"db": {"kind": "database", "primary": "a", "replicas": {"a": 1, "b": 1}}}})
    assert topo.services["db"].replication == Replication.ASYNC
    assert topo.services["db"].failover == Failover.MANUAL


def test_model_is_read_only(write):
    topo = load_topology(write("topo.yaml", GOOD))
    with pytest.raises(TypeError):
        topo.services["new"] = topo.services["login"]


def problems(write, text: str, name: str = "topo.yaml") -> list[str]:
    with pytest.raises(InputError) as exc:
        load_topology(write(name, text), label=name)
    return [str(p) for p in exc.value.problems]


BAD = [
    # (what, yaml, expected line)
    ("unknown service with suggestion",
     GOOD.replace("depends_on: [users-db]", "depends_on: [user-db]"),
     "topo.yaml: services.login.depends_on[0]: unknown service 'user-db' (did you mean 'users-db'?)"),
    ("unknown site in replicas",
     GOOD.replace("replicas: {pangyo: 4}", "replicas: {pangyo: 4, pangyoo: 1}"),
     "topo.yaml: services.login.replicas.pangyoo: unknown site 'pangyoo' (did you mean 'pangyo'?)"),
    ("unknown recovery tool",
     GOOD.replace("recovery: [deploy]", "recovery: [console]"),
     "topo.yaml: services.login.recovery[0]: unknown service 'console'"),
    ("unknown field with suggestion",
     GOOD.replace("needs: 2", "need: 2"),
     "topo.yaml: services.login.need: unknown field (did you mean 'needs'?)"),
    ("unknown top-level field",
     GOOD.replace("name: example", "name: example\nsitez: []"),
     "topo.yaml: sitez: unknown field (did you mean 'sites'?)"),
    ("wrong type for needs",
     GOOD.replace("needs: 2", "needs: two"),
     "topo.yaml: services.login.needs: expected a whole number, got text 'two'"),
    ("wrong type for a count given as a string",
     GOOD.replace("replicas: {pangyo: 4}", "replicas: {pangyo: '4'}"),
     "topo.yaml: services.login.replicas.pangyo: expected a whole number, got text '4'"),
    ("sites not a list",
     GOOD.replace("sites: [pangyo, ansan, siheung]", "sites: pangyo"),
     "topo.yaml: sites: expected a list, got text 'pangyo'"),
    ("negative count",
     GOOD.replace("replicas: {pangyo: 4}", "replicas: {pangyo: -1}"),
     "topo.yaml: services.login.replicas.pangyo: must be 0 or more, got -1"),
    ("needs below one",
     GOOD.replace("needs: 2", "needs: 0"),
     "topo.yaml: services.login.needs: must be 1 or more, got 0"),
    ("bad kind with suggestion",
     GOOD.replace("kind: ops-tool", "kind: ops_tool"),
     "topo.yaml: services.deploy.kind: must be one of service, database, quorum, ops-tool; got 'ops_tool' (did you mean 'ops-tool'?)"),
    ("primary not among replicas",
     GOOD.replace("primary: pangyo", "primary: siheung"),
     "topo.yaml: services.users-db.primary: primary site 'siheung' is not among the database's replicas"),
    ("primary unknown site",
     GOOD.replace("primary: pangyo", "primary: pangyu"),
     "topo.yaml: services.users-db.primary: unknown site 'pangyu' (did you mean 'pangyo'?)"),
    ("database without a primary",
     GOOD.replace("    primary: pangyo\n", ""),
     "topo.yaml: services.users-db.primary: a database needs a primary site"),
    ("database-only field on a service",
     GOOD.replace("needs: 2", "needs: 2\n    primary: pangyo"),
     "topo.yaml: services.login.primary: only valid for kind 'database'"),
    ("no instances",
     GOOD.replace("replicas: {pangyo: 1}\n", "replicas: {pangyo: 0}\n"),
     "topo.yaml: services.deploy.replicas: no instances anywhere"),
    ("duplicate site",
     GOOD.replace("sites: [pangyo, ansan, siheung]", "sites: [pangyo, ansan, pangyo]"),
     "topo.yaml: sites[2]: site 'pangyo' is listed twice"),
    ("self dependency",
     GOOD.replace("depends_on: [users-db]", "depends_on: [login]"),
     "topo.yaml: services.login.depends_on[0]: 'login' cannot list itself"),
    ("missing name",
     GOOD.replace("name: example\n", ""),
     "topo.yaml: name: required field is missing"),
    ("quorum commit with standbys in one other site",
     GOOD.replace("replication: sync", "replication: quorum"),
     "topo.yaml: services.users-db.replication: quorum commit needs standbys in at least two sites besides the "
     "primary's (standbys in 1)"),
    ("duplicate key",
     GOOD.replace("    needs: 2\n", "    needs: 2\n    needs: 3\n"),
     "topo.yaml: services.login.needs: duplicate key (first on line 6, again on line 7)"),
]


@pytest.mark.parametrize("what,text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_field_and_reason(write, what, text, expected):
    got = problems(write, text)
    assert any(line.startswith(expected) for line in got), got


def test_dependency_cycle_is_named(write):
    text = GOOD.replace("  users-db:\n    kind: database",
                        "  users-db:\n    depends_on: [coordination]\n    kind: database").replace(
        "  coordination:\n    kind: quorum", "  coordination:\n    depends_on: [login]\n    kind: quorum")
    got = problems(write, text)
    assert len(got) == 1
    assert "dependency cycle: " in got[0]
    cycle = got[0].split("dependency cycle: ")[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"login", "users-db", "coordination"}


def test_yaml_syntax_error_names_the_line(write):
    got = problems(write, "name: x\nsites: [a, b\nservices: {}\n")
    assert len(got) == 1 and got[0].startswith("topo.yaml: line ")
    assert "YAML syntax error" in got[0]


def test_every_problem_reported_at_once(write):
    text = GOOD.replace("depends_on: [users-db]", "depends_on: [user-db]").replace("recovery: [deploy]", "recovery: [deplo]")
    assert len(problems(write, text)) == 2


@pytest.mark.parametrize("text,expected", [
    ("", "file is empty"),
    ("- a\n- b\n", "expected a YAML mapping at the top"),
])
def test_not_a_topology(write, text, expected):
    assert expected in problems(write, text)[0]


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as exc:
        load_topology(tmp_path / "nope.yaml")
    assert "file not found" in str(exc.value)


@pytest.mark.parametrize("graph,has_cycle", [
    ({"a": ["b"], "b": ["c"], "c": []}, False),
    ({"a": ["b"], "b": ["a"]}, True),
    ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, False),
    ({"a": ["b"], "b": ["c"], "c": ["d"], "d": ["b"]}, True),
    ({f"s{i}": [f"s{i + 1}"] for i in range(5000)} | {"s5000": []}, False),  # deep chain: no recursion limit
])
def test_find_cycle(graph, has_cycle):
    cycle = find_cycle(graph)
    assert (cycle is not None) == has_cycle
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in graph[a] for a, b in zip(cycle, cycle[1:]))


@pytest.mark.parametrize("site,service", [("Pangyo", "login"), ("pangyo", "../etc"), ("pan gyo", "login"),
                                          ("pangyo", "x" * 40), ("pangyo", "Login_DB")])
def test_names_that_would_become_unsafe_paths_are_refused(tmp_path, site, service):
    from firebreak.errors import InputError
    from firebreak.topology import topology_from_dict

    data = {"name": "t", "sites": [site, "ansan", "siheung"],
            "services": {service: {"replicas": {"ansan": 1}}}}
    with pytest.raises(InputError) as e:
        topology_from_dict(data, "t.yaml")
    assert any("must be 1-31 characters: lowercase letters, digits and '-'" in p.reason for p in e.value.problems)
