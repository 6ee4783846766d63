"""The inventory: the contract's shape is accepted as it is; each bad inventory is refused with one
line naming the field and the reason (table of cases, no processes)."""

import textwrap

import pytest
import yaml

from firebreak.deploy.inventory import load_inventory
from firebreak.errors import InputError

# The contract shape, with the daejeon and busan sites filled in the same way.
CONTRACT = """
sites:
  gwangju:
    hosts:
      gj-db1:  {address: 10.10.0.11, roles: [etcd, postgres, agent, db-door]}
      gj-web1: {address: 10.10.0.21, roles: [door, claims]}
  daejeon:
    hosts:
      dj-db1:  {address: 10.20.0.11, roles: [etcd, postgres, agent, db-door]}
      dj-web1: {address: 10.20.0.21, roles: [door, claims]}
  busan:
    hosts:
      bs-db1:  {address: 10.30.0.11, roles: [etcd, postgres, agent, db-door]}
      bs-web1: {address: 10.30.0.21, roles: [door, claims]}
"""


def _load(tmp_path, text, name="inventory.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_inventory(p)


def _problems(tmp_path, text):
    with pytest.raises(InputError) as e:
        _load(tmp_path, text)
    return [str(p) for p in e.value.problems]


def test_the_contract_shape_is_accepted(tmp_path):
    inv = _load(tmp_path, CONTRACT)
    assert inv.names == ["gwangju", "daejeon", "busan"]
    assert [h.name for h in inv.hosts] == ["gj-db1", "gj-web1", "dj-db1", "dj-web1", "bs-db1", "bs-web1"]
    assert inv.site("gwangju").one("door").name == "gj-web1"
    assert [c.scope for c in inv.clusters] == ["firebreak"] and inv.clusters[0].sites == ("gwangju", "daejeon", "busan")
    # the door is not beside its site's agent: allowed, and said
    assert any("gj-web1" in n and "without its agent" in n for n in inv.notes)


def test_the_shipped_example_is_accepted():
    from tests.conftest import ROOT

    inv = load_inventory(ROOT / "deploy" / "inventory.example.yml")
    assert len(inv.sites) == 3 and not inv.notes


BAD = [
    ("typo'd role", ("gj-db1:  {address: 10.10.0.11, roles: [etcd, postgres, agent, db-door]}",
                     "gj-db1:  {address: 10.10.0.11, roles: [etcd, postgress, agent, db-door]}"),
     "sites.gwangju.hosts.gj-db1.roles[1]", "did you mean 'postgres'"),
    ("duplicate address", ("dj-web1: {address: 10.20.0.21,", "dj-web1: {address: 10.10.0.21,"),
     "sites.daejeon.hosts.dj-web1.address", "also the address of host 'gj-web1'"),
    ("a site with no etcd member", ("bs-db1:  {address: 10.30.0.11, roles: [etcd, postgres,",
                                    "bs-db1:  {address: 10.30.0.11, roles: [postgres,"),
     "sites.busan.hosts", "site 'busan' has no etcd host"),
    ("unknown host key", ("gj-web1: {address: 10.10.0.21, roles", "gj-web1: {adress: 10.10.0.21, roles"),
     "sites.gwangju.hosts.gj-web1.adress", "did you mean 'address'"),
    ("address not an IP", ("gj-web1: {address: 10.10.0.21,", "gj-web1: {address: web1.example,"),
     "sites.gwangju.hosts.gj-web1.address", "not an IP address"),
    ("two etcd members in a site", ("gj-web1: {address: 10.10.0.21, roles: [door, claims]}",
                                    "gj-web1: {address: 10.10.0.21, roles: [door, claims, etcd]}"),
     "sites.gwangju.hosts.gj-web1.roles", "'etcd' is also on host 'gj-db1'"),
    ("a site without an agent", ("dj-db1:  {address: 10.20.0.11, roles: [etcd, postgres, agent, db-door]}",
                                 "dj-db1:  {address: 10.20.0.11, roles: [etcd, postgres, db-door]}"),
     "sites.daejeon.hosts", "has no agent host"),
    ("a host in two sites", ("bs-web1: {address: 10.30.0.21", "gj-web1: {address: 10.30.0.21"),
     "sites.busan.hosts.gj-web1", "also in site 'gwangju'"),
    ("a role listed twice", ("roles: [door, claims]}\n  daejeon", "roles: [door, claims, door]}\n  daejeon"),
     "sites.gwangju.hosts.gj-web1.roles[2]", "listed twice"),
    ("a bad site name", ("  busan:", "  Busan:"), "sites.Busan", "site name 'Busan'"),
    ("an unknown top-level key", ("sites:\n", "site:\n"), "site", "unknown field"),
]


@pytest.mark.parametrize("case, edit, field, reason", BAD, ids=[b[0] for b in BAD])
def test_bad_inventories_name_the_field(tmp_path, case, edit, field, reason):
    text = textwrap.dedent(CONTRACT).lstrip("\n")
    old, new = edit
    assert old in text, case
    problems = _problems(tmp_path, text.replace(old, new, 1))
    hit = [p for p in problems if f": {field}: " in p or p.endswith(f": {field}")]
    assert hit, problems
    assert any(reason in p for p in hit), problems
    assert all(p.startswith(str(tmp_path / "inventory.yml")) for p in problems)


def test_two_sites_are_refused(tmp_path):
    text = textwrap.dedent(CONTRACT).lstrip("\n")
    text = text[:text.index("  busan:")]
    assert any("sites: 2 site(s); at least 3" in p for p in _problems(tmp_path, text))


def test_a_topology_gives_one_cluster_per_database_with_its_doors(tmp_path):
    (tmp_path / "estate.yaml").write_text(textwrap.dedent("""
        name: estate
        sites: [gwangju, daejeon, busan]
        services:
          users-db: {kind: database, replicas: {gwangju: 1, daejeon: 1, busan: 1}, primary: daejeon,
                     replication: sync, failover: auto, doors: true}
          pay-db: {kind: database, replicas: {gwangju: 1, busan: 1}, primary: busan, replication: sync,
                   failover: auto}
    """))
    inv = _load(tmp_path, "topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    assert [(c.scope, c.primary, c.sites, c.doors) for c in inv.clusters] == [
        ("users-db", "daejeon", ("daejeon", "gwangju", "busan"), True),
        ("pay-db", "busan", ("busan", "gwangju"), False)]
    assert [c.scope for c in inv.door_clusters] == ["users-db"]


@pytest.mark.parametrize("replication,mode", [("sync", True), ("quorum", "quorum"), ("async", False)])
def test_a_databases_replication_is_patronis_synchronous_mode(tmp_path, replication, mode):
    """As the lab runs it (lab/plan.py): quorum commit is Patroni 4's synchronous_mode: quorum,
    not plain asynchronous replication."""
    from firebreak.deploy.render import render
    from firebreak.deploy.secrets import make_secrets

    (tmp_path / "estate.yaml").write_text(textwrap.dedent(f"""
        name: estate
        sites: [gwangju, daejeon, busan]
        services:
          users-db: {{kind: database, replicas: {{gwangju: 1, daejeon: 1, busan: 1}}, primary: daejeon,
                     replication: {replication}, failover: auto, doors: true}}
    """))
    inv = _load(tmp_path, "topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    assert inv.clusters[0].sync == mode
    files = render(inv, make_secrets(inv.names, token=lambda: "x" * 24))
    patroni = yaml.safe_load(files["gj-db1/etc/firebreak/patroni/users-db/patroni.yml"].content)
    assert patroni["bootstrap"]["dcs"]["synchronous_mode"] == mode


def test_a_topology_with_other_sites_is_refused(tmp_path):
    (tmp_path / "estate.yaml").write_text("name: e\nsites: [gwangju, daejeon, ulsan]\nservices:\n"
                                          "  db: {kind: database, replicas: {gwangju: 1}, primary: gwangju}\n")
    problems = _problems(tmp_path, "topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    assert any(": topology: " in p and "no hosts for ulsan" in p and "not in the topology: busan" in p
               for p in problems), problems


def test_a_missing_topology_file_is_named(tmp_path):
    problems = _problems(tmp_path, "topology: nowhere.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    assert any(": topology: " in p and "file not found" in p for p in problems), problems


def test_db_doors_without_any_database_declaring_them_are_refused(tmp_path):
    (tmp_path / "estate.yaml").write_text("name: e\nsites: [gwangju, daejeon, busan]\nservices:\n"
                                          "  db: {kind: database, replicas: {gwangju: 1, daejeon: 1}, "
                                          "primary: gwangju, replication: sync, failover: auto}\n")
    problems = _problems(tmp_path, "topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    assert any("no database declares doors: true" in p for p in problems), problems


def test_quorum_commit_with_standbys_in_one_other_site_is_refused_as_check_and_the_lab_refuse_it(tmp_path):
    (tmp_path / "estate.yaml").write_text("name: e\nsites: [gwangju, daejeon, busan]\nservices:\n"
                                          "  db: {kind: database, replicas: {gwangju: 1, daejeon: 2}, "
                                          "primary: gwangju, replication: quorum, failover: auto}\n")
    problems = _problems(tmp_path, "topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    # refused where every reader of a topology refuses it (topology/load.py), naming the field
    assert any("estate.yaml: services.db.replication: quorum commit needs standbys in at least two sites" in p
               and "declare replication: sync" in p for p in problems), problems
