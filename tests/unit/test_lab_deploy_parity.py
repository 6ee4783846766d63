"""The lab runs what a real host gets: for the default lab's layout, every file the lab writes for a
site (patroni.yml, agent.yml, etcd's configuration, HAProxy's, Caddy's, the claims service's
environment) equals what `firebreak deploy render` writes for an inventory of the same sites,
addresses and ports, and every process it starts is its rendered unit's ExecStart line, but for
the few values that are truly the lab's own (where its files live, one HAProxy flag), each listed
below with its reason. A setting or a flag changed on one side only fails here: the two cannot
drift again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from firebreak.control.etcd import EtcdAccess
from firebreak.deploy.inventory import InventorySpec, build_inventory
from firebreak.deploy.render import render
from firebreak.deploy.secrets import DeploySecrets, etcd_roles
from firebreak.lab import config as lab
from firebreak.lab.layout import PORTS, make_layout

SITES = ["pangyo", "ansan", "siheung"]
LAYOUT = make_layout(Path("/lab"), "loopback", SITES, "abcd1234")
SECRETS = lab.Secrets(superuser="superuser-pw-0123", replication="replication-pw-01", app="app-db-pw-012345",
                      cluster_token="tok0", ops_token="op.x", patroni_api="patroni-api-pw-01",
                      app_admin="app-admin-token-01", session="session-secret-012")
ETCD_PATRONI_PW = "etcd-patroni-pw-012"


def inventory():
    """The default lab as an inventory: one host per site running everything, at the lab's
    addresses and ports, PostgreSQL open to the lab's network."""
    spec = InventorySpec.model_validate({
        "sites": {s.name: {"hosts": {f"{s.name}-1": {"address": s.address, "roles": [
            "etcd", "postgres", "agent", "door", "db-door", "claims"]}}} for s in LAYOUT.sites},
        "settings": {
            "ports": {"etcd": PORTS["etcd"], "etcd_peer": PORTS["etcd_peer"], "etcd_metrics": PORTS["etcd_health"],
                      "postgres": PORTS["postgres"], "patroni": PORTS["patroni"], "db_door": PORTS["db_door"],
                      "db_door_ro": PORTS["db_door_ro"], "door": PORTS["door"], "door_tls": PORTS["door_tls"],
                      "console": PORTS["console"], "claims": PORTS["app"], "claims_admin": PORTS["app_admin"]},
            "binaries": {"pg_bin_dir": "/pg/bin"},
            # the lab's agents hold etcd's root (one machine, one user)
            "etcd": {"admin_on_agents": True},
            "client_networks": lab.client_networks(LAYOUT)}})
    return build_inventory(spec, "lab")


@pytest.fixture(scope="module")
def rendered():
    inv = inventory()
    roles = etcd_roles(inv.names)
    secrets = DeploySecrets(superuser=SECRETS.superuser, replication=SECRETS.replication, app=SECRETS.app,
                            patroni_api=SECRETS.patroni_api, app_admin=SECRETS.app_admin, session=SECRETS.session,
                            cluster_token=SECRETS.cluster_token,
                            etcd={r: (ETCD_PATRONI_PW if r == "patroni" else f"etcd-{r}-password") for r in roles})
    return render(inv, secrets)


def leaves(value, at: str = "") -> dict[str, object]:
    """Every scalar in a document by its path (`a/b/0`)."""
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in leaves(sub, f"{at}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, sub in enumerate(value) for k, v in leaves(sub, f"{at}/{i}").items()}
    return {at: value}


def differing(lab_doc, real_doc) -> set[str]:
    a, b = leaves(lab_doc), leaves(real_doc)
    return {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}


def host_file(rendered, site: str, path: str) -> str:
    return rendered[f"{site}-1{path}"].content


@pytest.mark.parametrize("site", SITES)
def test_patroni_is_the_rendered_file_but_for_the_labs_directories_and_inline_passwords(rendered, site):
    s = LAYOUT.site(site)
    # the lab's Patroni uses the etcd client files a real host's does; where they live is the lab's
    access = EtcdAccess("/etc/firebreak/pki/ca.pem", "/etc/firebreak/etcd/patroni/client.pem",
                        "/etc/firebreak/etcd/patroni/client-key.pem", "patroni", ETCD_PATRONI_PW)
    mine = lab.patroni_config(LAYOUT, s, SECRETS, "/pg/bin", access)
    real = yaml.safe_load(host_file(rendered, site, "/etc/firebreak/patroni/firebreak/patroni.yml"))
    assert differing(mine, real) == {
        # where the lab keeps a site's data, socket and logs
        "/postgresql/data_dir", "/postgresql/pgpass", "/postgresql/parameters/unix_socket_directories",
        "/postgresql/parameters/log_directory",
        # the lab's one user runs every site's PostgreSQL: trust on its private socket directory,
        # where a real host has peer (the postgres user)
        "/bootstrap/pg_hba/0", "/postgresql/pg_hba/0",
        # passwords: inline in the lab's 0600 file, a real host's in Patroni's EnvironmentFile
        "/restapi/authentication/password", "/etcd3/password", "/postgresql/authentication/superuser/password",
        "/postgresql/authentication/replication/password"}
    # and what was measured in the lab is what a real host runs
    dcs = real["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 6)
    assert dcs["failsafe_mode"] is True and dcs["synchronous_mode"] is True
    assert real["postgresql"]["pg_hba"][1:] == mine["postgresql"]["pg_hba"][1:]  # scram-sha-256 on the network


@pytest.mark.parametrize("site", SITES)
def test_the_agent_is_the_rendered_file_but_for_the_labs_files_and_sockets(rendered, site):
    mine = lab.agent_config(LAYOUT, LAYOUT.site(site), SECRETS)
    real = yaml.safe_load(host_file(rendered, site, "/etc/firebreak/agent.yml"))
    assert differing(mine, real) == {
        # the lab's etcd identities live in its home
        "/etcd_access", "/etcd_ops_access", "/etcd_admin_access",
        # the lab's secrets inline (agent.yml 0600); a real host's in files named by agent.yml
        "/patroni_password", "/patroni_password_file", "/app_admin_token", "/app_admin_token_file",
        # sockets only the lab's user opens (Caddy's default mode); a real host's open to the group
        "/door/admin", "/db_door/admin",
        # the door's certificate from the lab's CA
        "/door/tls_cert", "/door/tls_key"}


def _etcd_paths_out(conf: dict) -> dict:
    """etcd's configuration with its file paths blanked (the lab's certificates live in its home)."""
    out = json.loads(json.dumps(conf))
    out["auth-token"] = re.sub(r"(pub|priv)-key=[^,]+", r"\1-key=PATH", out["auth-token"])
    return out


@pytest.mark.parametrize("site", SITES)
def test_etcd_is_the_rendered_file_but_for_the_labs_files_and_its_one_ca(rendered, site):
    mine = _etcd_paths_out(lab.etcd_config(LAYOUT, LAYOUT.site(site), SECRETS.cluster_token))
    real = _etcd_paths_out(yaml.safe_load(host_file(rendered, site, "/etc/firebreak/etcd.yml")))
    assert differing(mine, real) == {
        "/data-dir",
        *(f"/{link}-transport-security/{f}" for link in ("client", "peer") for f in ("cert-file", "key-file")),
        "/client-transport-security/trusted-ca-file",
        # the lab's one CA signs client and peer certificates alike (lab/access.py); a real host's
        # peer link trusts only the peer CA `firebreak pki` keeps for etcd members
        "/peer-transport-security/trusted-ca-file"}
    assert real["pre-vote"] is True and real["auth-token"].startswith("jwt,")


@pytest.mark.parametrize("site", SITES)
def test_the_database_door_is_the_rendered_file_but_for_its_socket(rendered, site):
    mine = lab.db_door_config_of(LAYOUT, LAYOUT.site(site)).splitlines()
    real = host_file(rendered, site, "/etc/firebreak/haproxy.cfg").splitlines()
    assert len(mine) == len(real)
    assert [(a, b) for a, b in zip(mine, real) if a != b] == [(
        f"    stats socket {LAYOUT.site(site).dir}/run/db-door.sock mode 600 level admin",
        "    stats socket /run/firebreak-db-door/admin.sock mode 660 level admin")]


@pytest.mark.parametrize("site", SITES)
def test_the_front_door_is_the_rendered_file_but_for_its_socket_and_certificate(rendered, site):
    mine = lab.door_config_of(LAYOUT, LAYOUT.site(site))
    real = json.loads(host_file(rendered, site, "/etc/firebreak/caddy.json"))
    assert differing(mine, real) == {"/admin/listen", "/apps/tls/certificates/load_files/0/certificate",
                                     "/apps/tls/certificates/load_files/0/key"}


def _env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        out[key] = value[1:-1].replace('\\"', '"').replace("\\$", "$").replace("\\\\", "\\")
    return out


def _dsn_without_secret(dsn: str) -> str:
    return re.sub(r"&passfile=[^&]*", "", re.sub(r"//([^:@/]+):[^@]*@", r"//\1@", dsn))


@pytest.mark.parametrize("site", SITES)
def test_the_claims_service_gets_the_rendered_environment_but_for_the_labs_extras(rendered, site):
    mine = lab.app_env(LAYOUT, LAYOUT.site(site), SECRETS)
    real = {**_env(host_file(rendered, site, "/etc/firebreak/claims.env")),
            **_env(host_file(rendered, site, "/etc/firebreak/secrets/claims.env"))}
    for key in ("FIREBREAK_DSN", "FIREBREAK_LOCAL_DSN", "FIREBREAK_ANY_DSN"):
        # the same hosts and connection settings; the password inline in the lab, a pgpass file on a host
        assert _dsn_without_secret(mine.pop(key)) == _dsn_without_secret(real.pop(key))
    assert differing(mine, real) == {
        "/FIREBREAK_ETCD_ACCESS",        # the lab's etcd identity lives in its home
        "/FIREBREAK_LEDGER",             # reports about 2022 are checked against its reconstruction
        "/FIREBREAK_PORTAL_RATE",        # every lab client comes from one address
        "/FIREBREAK_API_RATE"}


# ---- what the lab runs: each unit's ExecStart ---------------------------------------------------

# The lab's process for each rendered unit, and where the lab keeps each file that unit's
# ExecStart names: the lab's site directory instead of /etc (the files' contents are the tests
# above). Every other argument must be the unit's own.
LAB_PROCESS = {"firebreak-etcd.service": "etcd", "firebreak-patroni-firebreak.service": "patroni",
               "firebreak-claims.service": "app", "firebreak-agent.service": "agent",
               "firebreak-door.service": "door", "firebreak-db-door.service": "dbdoor"}
LAB_FILE = {"/etc/firebreak/etcd.yml": "etcd.yml", "/etc/firebreak/patroni/firebreak/patroni.yml": "patroni.yml",
            "/etc/firebreak/agent.yml": "agent.yml", "/etc/firebreak/caddy.json": "door.json",
            "/etc/firebreak/haproxy.cfg": "db-door.cfg"}
# HAProxy in the lab stays one process (-db) where a host's unit runs its master-worker mode
# with systemd's notify protocol (-Ws, as Debian's unit does): the lab pauses and kills a site's
# processes by PID, and a paused master would leave its worker serving.
LAB_FLAG = {("firebreak-db-door.service", "-Ws"): "-db"}


def exec_start(unit_text: str) -> list[str]:
    """The argv of a unit's ExecStart line, as systemd reads it (`%%` and `$$` are one character)."""
    import shlex

    line = next(x for x in unit_text.splitlines() if x.startswith("ExecStart="))
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line.removeprefix("ExecStart="))]


@pytest.mark.parametrize("site", SITES)
def test_the_lab_starts_each_component_as_its_rendered_unit_s_exec_start(rendered, site, tmp_path):
    import sys

    from firebreak.lab.components import argv_of

    layout = make_layout(tmp_path, "loopback", SITES, "abcd1234")
    s = layout.site(site)
    units = {p.rsplit("/", 1)[1]: f for p, f in rendered.items()
             if p.startswith(f"{site}-1/etc/systemd/system/") and p.endswith(".service")}
    assert set(units) == set(LAB_PROCESS), sorted(units)
    for unit, component in LAB_PROCESS.items():
        real = exec_start(units[unit].content)
        mine, _ = argv_of(layout, s, component, SECRETS, sys.executable)
        assert len(mine) == len(real), (unit, mine, real)
        # the program: the same one, from where this machine has it
        assert Path(mine[0]).name.startswith(Path(real[0]).name), (unit, mine[0], real[0])
        for lab_arg, real_arg in zip(mine[1:], real[1:]):
            if real_arg in LAB_FILE:
                assert lab_arg == str(s.dir / LAB_FILE[real_arg]), (unit, lab_arg, real_arg)
            elif (unit, real_arg) in LAB_FLAG:
                assert lab_arg == LAB_FLAG[(unit, real_arg)], (unit, lab_arg, real_arg)
            else:
                assert lab_arg == real_arg, (unit, mine, real)
