"""The renderer as a pure function: what each host gets, that secrets stay in 0600 files, that the
files parse into the models the components read them with (no processes; the tools' own checks
are in tests/web/test_deploy_tools.py)."""

import json
import os
import textwrap

import pytest
import yaml

from firebreak.control.config import AgentConfig
from firebreak.deploy import components as c
from firebreak.deploy.inventory import load_inventory
from firebreak.deploy.render import render
from firebreak.deploy.secrets import etcd_roles, make_secrets, with_sites
from firebreak.deploy.units import exec_line, quote_arg
from tests.unit.test_deploy_inventory import CONTRACT


@pytest.fixture
def inv(tmp_path):
    p = tmp_path / "inventory.yml"
    p.write_text(textwrap.dedent(CONTRACT).lstrip("\n"))
    return load_inventory(p)


def _counter():
    n = iter(range(10_000))
    return lambda: f"secret-value-{next(n):04d}-xxxxxxxx"


@pytest.fixture
def secrets(inv):
    return make_secrets(inv.names, token=_counter())


@pytest.fixture
def files(inv, secrets):
    return render(inv, secrets)


def test_each_host_gets_what_its_roles_need(files):
    hosts = {}
    for path in files:
        host, rest = path.split("/", 1)
        hosts.setdefault(host, set()).add("/" + rest)
    db, web = hosts["gj-db1"], hosts["gj-web1"]
    assert {"/etc/firebreak/etcd.yml", "/etc/firebreak/patroni/firebreak/patroni.yml", "/etc/firebreak/haproxy.cfg",
            "/etc/firebreak/agent.yml", "/etc/systemd/system/firebreak-etcd.service",
            "/etc/systemd/system/firebreak-patroni-firebreak.service", "/etc/systemd/system/firebreak-db-door.service",
            "/etc/systemd/system/firebreak-agent.service", "/etc/sysusers.d/firebreak.conf",
            "/etc/tmpfiles.d/firebreak.conf"} <= db
    assert {"/etc/firebreak/caddy.json", "/etc/firebreak/claims.env", "/etc/firebreak/secrets/claims.env",
            "/etc/systemd/system/firebreak-door.service", "/etc/systemd/system/firebreak-claims.service"} <= web
    assert not any("caddy" in p or "claims" in p for p in db)
    assert not any(p.endswith(("etcd.yml", "agent.yml", "haproxy.cfg")) for p in web)
    assert set(hosts) == {"gj-db1", "gj-web1", "dj-db1", "dj-web1", "bs-db1", "bs-web1"}


def test_secrets_live_only_in_0600_files(files, secrets):
    values = [secrets.superuser, secrets.replication, secrets.app, secrets.patroni_api, secrets.app_admin,
              secrets.session, *secrets.etcd.values()]
    for path, f in files.items():
        found = [v for v in values if v in f.content]
        if found:
            assert f.mode == 0o600, (path, found)
        config = path.endswith((".yml", ".json", ".cfg"))
        if "/etc/systemd/system/" in path or config:
            assert not found, path
    # the agent's file names its secrets' files; they are the agent's alone
    assert files["gj-db1/etc/firebreak/secrets/agent-patroni-password"].mode == 0o600
    assert files["gj-db1/etc/firebreak/secrets/agent-patroni-password"].owner == "firebreak"
    assert files["gj-db1/etc/firebreak/secrets/agent-app-admin-token"].content.strip() == secrets.app_admin
    assert files["gj-db1/etc/firebreak/secrets/patroni.env"].mode == 0o600
    assert files["gj-web1/etc/firebreak/secrets/claims.pgpass"].mode == 0o600
    assert files["gj-db1/etc/firebreak/etcd/agent-gwangju/password"].content.strip() == secrets.etcd["agent-gwangju"]


def test_the_agent_file_is_a_valid_agent_config(files, secrets):
    for host, site in (("gj-db1", "gwangju"), ("dj-db1", "daejeon"), ("bs-db1", "busan")):
        cfg = AgentConfig.model_validate(yaml.safe_load(files[f"{host}/etc/firebreak/agent.yml"].content))
        assert cfg.site == site
        assert cfg.etcd[0] == cfg.sites[site].etcd           # its own site's member first
        assert cfg.etcd_access.endswith(f"agent-{site}/access.json")
        assert cfg.sites[site].etcd_probe.startswith("http://") and cfg.sites[site].etcd.startswith("https://")
        assert cfg.db_door is not None and cfg.db_door.admin == "unix//run/firebreak-db-door/admin.sock"
        assert cfg.door is None                             # the door is on the web host, not the agent's
        assert cfg.sites["daejeon"].app == "http://10.20.0.21:8080"
        assert not (cfg.app_admin_token or cfg.patroni_password)  # in files, not inline
        assert files[f"{host}{cfg.patroni_password_file}"].content.strip() == secrets.patroni_api
        assert files[f"{host}{cfg.app_admin_token_file}"].content.strip() == secrets.app_admin


def test_an_agent_beside_its_door_steers_it_through_a_group_socket(tmp_path):
    from tests.conftest import ROOT

    inv = load_inventory(ROOT / "deploy" / "inventory.example.yml")
    files = render(inv, make_secrets(inv.names, token=_counter()))
    cfg = AgentConfig.model_validate(yaml.safe_load(files["gj-1/etc/firebreak/agent.yml"].content))
    caddy = json.loads(files["gj-1/etc/firebreak/caddy.json"].content)
    assert cfg.door.admin == caddy["admin"]["listen"] == "unix//run/firebreak-door/admin.sock|0220"
    assert cfg.door.tls_listen == "10.10.0.11:443"
    unit = files["gj-1/etc/systemd/system/firebreak-agent.service"].content
    assert "SupplementaryGroups=caddy haproxy" in unit
    assert "stats socket /run/firebreak-db-door/admin.sock mode 660 level admin" in \
        files["gj-1/etc/firebreak/haproxy.cfg"].content


def test_patroni_has_the_lab_settings_and_failsafe_and_no_passwords(files, secrets):
    conf = yaml.safe_load(files["dj-db1/etc/firebreak/patroni/firebreak/patroni.yml"].content)
    dcs = conf["bootstrap"]["dcs"]
    assert dcs["failsafe_mode"] is True
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (c.PATRONI_TTL, c.PATRONI_LOOP_WAIT,
                                                                   c.PATRONI_RETRY_TIMEOUT)
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["parameters"]["max_slot_wal_keep_size"] == "1024MB"
    assert conf["name"] == "daejeon" and conf["scope"] == "firebreak"
    assert conf["etcd3"]["hosts"] == ["10.20.0.11:2379"] and conf["etcd3"]["protocol"] == "https"
    assert "password" not in conf["etcd3"] and "password" not in conf["restapi"]["authentication"]
    assert "host all all 10.20.0.21/32 scram-sha-256" in conf["postgresql"]["pg_hba"]  # its site's claims host
    env = files["dj-db1/etc/firebreak/secrets/patroni.env"].content
    assert f'PATRONI_SUPERUSER_PASSWORD="{secrets.superuser}"' in env
    assert f'PATRONI_ETCD3_PASSWORD="{secrets.etcd["patroni"]}"' in env
    # the WAL stream notices a silent peer and reconnects in seconds (PostgreSQL's defaults: minutes)
    params = dcs["postgresql"]["parameters"]
    assert (params["wal_sender_timeout"], params["wal_receiver_timeout"]) == ("5s", "5s")
    assert params["wal_retrieve_retry_interval"] == "200ms"


def test_etcd_is_locked_and_bounded(files):
    conf = yaml.safe_load(files["bs-db1/etc/firebreak/etcd.yml"].content)
    assert conf["name"] == "busan" and conf["pre-vote"] is True
    # a member back from a kill compares its data with its peers' before serving (etcd-io/etcd#13766):
    # etcd 3.5.1 reads the key ("initial-corrupt-check":true in its start-up line at log-level info)
    assert conf["experimental-initial-corrupt-check"] is True
    assert conf["initial-cluster"] == ("gwangju=https://10.10.0.11:2380,daejeon=https://10.20.0.11:2380,"
                                       "busan=https://10.30.0.11:2380")
    assert conf["client-transport-security"]["client-cert-auth"] is True
    assert conf["auth-token"].startswith("jwt,") and conf["quota-backend-bytes"] == c.ETCD_QUOTA
    assert conf["listen-metrics-urls"] == "http://10.30.0.11:2381"
    # the raft port has its own certificate and trusts only the peer CA
    assert conf["peer-transport-security"]["trusted-ca-file"] == "/etc/firebreak/pki/peer-ca.pem"
    assert conf["peer-transport-security"]["cert-file"] == "/etc/firebreak/pki/etcd-peer.pem"
    assert conf["client-transport-security"]["trusted-ca-file"] == "/etc/firebreak/pki/ca.pem"


def test_no_agent_host_holds_etcds_root_unless_asked(inv, files, secrets):
    assert not any("/etcd/root/" in p for p in files)
    cfg = AgentConfig.model_validate(yaml.safe_load(files["gj-db1/etc/firebreak/agent.yml"].content))
    assert cfg.etcd_admin_access is None
    asked = inv.settings.model_copy(update={"etcd": inv.settings.etcd.model_copy(update={"admin_on_agents": True})})
    with_root = render(type(inv)(inv.source, inv.sites, inv.clusters, asked), secrets)
    assert with_root["gj-db1/etc/firebreak/etcd/root/password"].mode == 0o600


def test_units_run_as_their_users_with_limits_restarts_and_hardening(files):
    units = {p: f.content for p, f in files.items() if "/etc/systemd/system/" in p}
    assert len(units) == 3 * 4 + 3 * 2   # etcd, patroni, db-door, agent; door, claims
    for path, text in units.items():
        for line in ("LimitNOFILE=65536", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                     "After=network-online.target", "WantedBy=multi-user.target"):
            assert line in text, (path, line)
        assert "\nUser=" in text and "\nRestart=" in text and "User=root" not in text
    agent = units["gj-db1/etc/systemd/system/firebreak-agent.service"]
    assert "Restart=always" in agent and "After=network-online.target firebreak-etcd.service " \
                                         "firebreak-db-door.service" in agent
    assert "ExecStart=/opt/firebreak/venv/bin/firebreak agent --config /etc/firebreak/agent.yml" in agent
    door = units["gj-web1/etc/systemd/system/firebreak-door.service"]
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in door and "User=caddy" in door
    claims = units["gj-web1/etc/systemd/system/firebreak-claims.service"]
    assert "EnvironmentFile=/etc/firebreak/secrets/claims.env" in claims
    assert "--bind 10.10.0.21:8080" in claims



def test_each_door_host_gets_the_per_source_connection_limit(files):
    """A flood from one address is capped by the kernel before the door (components.door_limit_nft):
    a file for the host's nftables.conf to include, for the door's ports, on door hosts only."""
    import shutil
    import subprocess
    limits = {p: f for p, f in files.items() if p.endswith("/etc/firebreak/door-limit.nft")}
    assert sorted(limits) == [f"{h}/etc/firebreak/door-limit.nft" for h in ("bs-web1", "dj-web1", "gj-web1")]
    text = limits["gj-web1/etc/firebreak/door-limit.nft"].content
    assert ("meta l4proto { tcp, udp } th dport { 80, 443 } ct state new add @sources4 "
            "{ ip saddr ct count over 96 } counter drop") in text
    assert "ip6 saddr & ffff:ffff:ffff:ffff:: ct count over 96" in text
    assert text.startswith("table inet firebreak_door_limit\ndelete table inet firebreak_door_limit\n")
    if os.geteuid() == 0 and shutil.which("nft"):  # nftables itself parses it (-c: nothing is changed)
        r = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_every_host_gets_its_kernel_settings_and_systemd_sysctl_applies_them(files, tmp_path):
    """One sysctl.d file a host (components.kernel_settings): the retransmission cap everywhere
    (etcd re-forms at a cut's heal, not at TCP's next try), tcp_migrate_req on door hosts only.
    systemd-sysctl skips a setting the kernel lacks and refuses a value it rejects."""
    import shutil
    import subprocess
    conf = {p.split("/", 1)[0]: f.content for p, f in files.items() if p.endswith("/etc/sysctl.d/90-firebreak.conf")}
    assert set(conf) == {"gj-db1", "gj-web1", "dj-db1", "dj-web1", "bs-db1", "bs-web1"}
    settings = {h: [line for line in text.splitlines() if not line.startswith("#")] for h, text in conf.items()}
    assert settings["gj-db1"] == ["net.ipv4.tcp_rto_max_ms = 1000"]
    assert settings["gj-web1"] == ["net.ipv4.tcp_rto_max_ms = 1000", "net.ipv4.tcp_migrate_req = 1"]
    tool = "/lib/systemd/systemd-sysctl"
    if os.geteuid() == 0 and shutil.which("unshare") and os.path.exists(tool):
        # systemd-sysctl itself reads it, in a network namespace of its own (the host's is untouched),
        # with a setting no kernel has beside ours: skipped, not an error (as tcp_rto_max_ms is
        # before Linux 6.15).
        path = tmp_path / "90-firebreak.conf"
        path.write_text(conf["gj-web1"] + "net.ipv4.tcp_no_such_setting = 1\n")
        script = (f"{tool} {path} && cat /proc/sys/net/ipv4/tcp_migrate_req && "
                  "(cat /proc/sys/net/ipv4/tcp_rto_max_ms 2>/dev/null || echo none)")
        r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        values = r.stdout.split()
        assert values[0] == "1"
        if os.path.exists("/proc/sys/net/ipv4/tcp_rto_max_ms"):   # Linux 6.15 or later
            assert values[1] == "1000"


def test_rendering_is_deterministic(inv, secrets):
    assert render(inv, secrets) == render(inv, secrets)


def test_a_new_site_adds_its_agent_user_and_changes_nothing_else(secrets):
    grown, added = with_sites(secrets, ["gwangju", "daejeon", "busan", "ulsan"], token=lambda: "n" * 24)
    assert added == ["agent-ulsan"]
    assert {k: v for k, v in grown.etcd.items() if k != "agent-ulsan"} == secrets.etcd
    assert set(etcd_roles(["a"])) == {"root", "patroni", "agent-a", "claims", "ops"}


def test_an_estate_door_serves_only_the_databases_that_declare_doors(tmp_path):
    (tmp_path / "estate.yaml").write_text(textwrap.dedent("""
        name: estate
        sites: [gwangju, daejeon, busan]
        services:
          users-db: {kind: database, replicas: {gwangju: 1, daejeon: 1, busan: 1}, primary: daejeon,
                     replication: sync, failover: auto, doors: true}
          pay-db: {kind: database, replicas: {gwangju: 1, busan: 1}, primary: busan, replication: sync,
                   failover: auto}
    """))
    p = tmp_path / "inventory.yml"
    p.write_text("topology: estate.yaml\n" + textwrap.dedent(CONTRACT).lstrip("\n"))
    inv = load_inventory(p)
    files = render(inv, make_secrets(inv.names, token=_counter()))
    haproxy = files["gj-db1/etc/firebreak/haproxy.cfg"].content
    # one cluster on the door: the plain backends, the names the agent steers when it applies one
    # cluster's routes (control/dbdoor.py DbDoorKeeper.apply); with two, each cluster's own
    assert "listen pg_rw" in haproxy and "bind 10.10.0.11:5433" in haproxy and "pay-db" not in haproxy
    cfg = AgentConfig.model_validate(yaml.safe_load(files["gj-db1/etc/firebreak/agent.yml"].content))
    assert set(cfg.db_door.clusters) == {"users-db"} and cfg.patroni_namespaces == ["/service/"]
    # daejeon has no pay-db member: no unit, no file for it there
    assert "dj-db1/etc/firebreak/patroni/pay-db/patroni.yml" not in files
    assert "bs-db1/etc/systemd/system/firebreak-patroni-pay-db.service" in files
    pay = yaml.safe_load(files["bs-db1/etc/firebreak/patroni/pay-db/patroni.yml"].content)
    assert pay["postgresql"]["listen"] == f"10.30.0.11:{5432 + 10}"   # the second cluster's ports


@pytest.mark.parametrize("arg, text", [
    ("/usr/bin/etcd", "/usr/bin/etcd"),
    ("a b", '"a b"'),
    ("50%", "50%%"),
    ("$HOME", "$$HOME"),
    ('say "hi"', '"say \\"hi\\""'),
    (";", '";"'),
    ("", '""'),
])
def test_exec_arguments_are_quoted_as_systemd_reads_them(arg, text):
    assert quote_arg(arg) == text
    assert exec_line(["/bin/x", arg]) == f"/bin/x {text}"


def test_dsn_keeps_the_password_out_and_names_the_passfile():
    d = c.dsn("claims", [("10.0.0.1", 5432), ("10.0.0.2", 5432)], "claims", passfile="/etc/x/pgpass")
    assert d.startswith("postgresql://claims@10.0.0.1:5432,10.0.0.2:5432/claims?")
    assert "target_session_attrs=read-write" in d and "passfile=/etc/x/pgpass" in d and "tcp_user_timeout=3000" in d
    assert c.pgpass_line("claims", "claims", "p:w") == "*:*:claims:claims:p\\:w\n"


# deploy/example/ is what `firebreak deploy render` writes for one host of the example inventory,
# every file but those that hold secrets (0600): kept equal to the renderer's output by this test (regenerate with
# `python -m tests.unit.test_deploy_render`).
EXAMPLE_HOST = "gj-1"
PLACEHOLDER = "<secret: firebreak deploy render writes it from secrets.yml>"


def example_files() -> dict[str, str]:
    from tests.conftest import ROOT

    inv = load_inventory(ROOT / "deploy" / "inventory.example.yml")
    secrets = make_secrets(inv.names, token=lambda: PLACEHOLDER).model_copy(update={"cluster_token": "example"})
    files = render(inv, secrets)
    out = {}
    for rel, f in files.items():
        host, path = rel.split("/", 1)
        if host == EXAMPLE_HOST and not f.secret:
            out[path] = f.content
    return out


def test_the_shipped_example_is_what_render_writes():
    from tests.conftest import ROOT

    base = ROOT / "deploy" / "example" / EXAMPLE_HOST
    shipped = {str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}
    assert shipped == example_files(), "regenerate: python -m tests.unit.test_deploy_render"


if __name__ == "__main__":
    from tests.conftest import ROOT

    base = ROOT / "deploy" / "example" / EXAMPLE_HOST
    for path, text in example_files().items():
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_text(text)


def _with_webhooks(tmp_path, mode=0o600, secret="0123456789abcdef0123456789abcdef"):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "partner.secret").write_text(secret + "\n")
    (hooks / "partner.secret").chmod(mode)
    (hooks / "webhooks.yml").write_text(
        "public_url: https://status.example.com/\n"
        "subscribers:\n  - {url: 'https://hooks.partner.example/firebreak', secret_file: partner.secret}\n"
        "timeout_s: 4\nlease_s: 30\n")
    p = tmp_path / "inventory.yml"
    p.write_text(textwrap.dedent(CONTRACT).lstrip("\n") + "settings:\n  claims: {webhooks: hooks/webhooks.yml}\n")
    return p


def test_webhook_subscribers_reach_every_claims_host_with_their_secrets_in_0600_files(tmp_path):
    from firebreak.claims.subscribers import WebhooksFile

    inv = load_inventory(_with_webhooks(tmp_path))
    files = render(inv, make_secrets(inv.names, token=_counter()))
    for host in ("gj-web1", "dj-web1", "bs-web1"):
        doc = yaml.safe_load(files[f"{host}/etc/firebreak/webhooks.yml"].content)
        parsed = WebhooksFile.model_validate(doc)   # what the service reads it with
        assert (parsed.public_url, parsed.timeout_s, parsed.lease_s) == ("https://status.example.com", 4, 30)
        sub = parsed.subscribers[0]
        assert sub.url == "https://hooks.partner.example/firebreak"
        secret = files[f"{host}{sub.secret_file}"]
        assert (secret.content.strip(), secret.mode, secret.owner) == (
            "0123456789abcdef0123456789abcdef", 0o600, "firebreak-claims")
        assert "0123456789abcdef" not in files[f"{host}/etc/firebreak/webhooks.yml"].content
        assert "FIREBREAK_WEBHOOKS=\"/etc/firebreak/webhooks.yml\"" in files[f"{host}/etc/firebreak/claims.env"].content
        tmpfiles = files[f"{host}/etc/tmpfiles.d/firebreak.conf"].content
        assert "d /etc/firebreak/secrets/webhooks 0700 firebreak-claims firebreak-claims -" in tmpfiles
    assert not any("webhooks" in p for p in files if p.startswith("gj-db1/"))
    # without the setting, nothing of it
    plain = render(load_inventory(_inventory_file(tmp_path)), make_secrets(inv.names, token=_counter()))
    assert not any("webhooks" in p or "WEBHOOKS" in f.content for p, f in plain.items())


def _inventory_file(tmp_path):
    p = tmp_path / "plain.yml"
    p.write_text(textwrap.dedent(CONTRACT).lstrip("\n"))
    return p


@pytest.mark.parametrize("mode,secret,reason", [
    (0o644, "0123456789abcdef0123456789abcdef", "readable by group or others"),
    (0o600, "short", "a secret needs 16 or more"),
])
def test_a_bad_webhooks_file_stops_the_render_with_the_field_named(tmp_path, mode, secret, reason):
    from firebreak.errors import InputError

    with pytest.raises(InputError) as e:
        load_inventory(_with_webhooks(tmp_path, mode, secret))
    text = "\n".join(str(p) for p in e.value.problems)
    assert "settings.claims.webhooks" in text and "subscribers[0].secret_file" in text and reason in text, text


def test_the_door_limit_is_the_inventorys_and_a_bad_one_names_its_field(tmp_path):
    from firebreak.errors import InputError
    p = tmp_path / "inventory.yml"
    base = textwrap.dedent(CONTRACT).lstrip("\n")
    p.write_text(base + "settings:\n  door: {connections_per_source: 4000}\n")
    inv = load_inventory(p)
    files = render(inv, make_secrets(inv.names, token=_counter()))
    assert "ct count over 4000" in files["gj-web1/etc/firebreak/door-limit.nft"].content
    p.write_text(base + "settings:\n  door: {connections_per_source: 0}\n")
    with pytest.raises(InputError) as e:
        load_inventory(p)
    assert "settings.door.connections_per_source" in "\n".join(str(x) for x in e.value.problems)


def test_a_front_door_on_haproxy_renders_its_file_its_unit_and_where_its_key_goes(tmp_path):
    """settings.door.kind: haproxy. The door host gets HAProxy's file (the lab's renderer), a unit
    running Debian's haproxy as its own user, the agent a door it steers by the runtime socket,
    and the key where HAProxy looks for it beside the certificate (firebreak pki puts it there)."""
    from firebreak.pki import plan
    p = tmp_path / "inventory.yml"
    p.write_text(textwrap.dedent(CONTRACT).lstrip("\n") + "settings:\n  door: {kind: haproxy}\n")
    inv = load_inventory(p)
    files = render(inv, make_secrets(inv.names, token=_counter()))
    web = {path.split("/", 1)[1]: f for path, f in files.items() if path.startswith("gj-web1/")}
    assert "etc/firebreak/caddy.json" not in web
    cfg = web["etc/firebreak/door-haproxy.cfg"].content
    assert "bind 10.10.0.21:443 ssl crt /etc/firebreak/pki/door.pem" in cfg
    assert "stats socket /run/firebreak-door/admin.sock mode 660 level admin" in cfg
    unit = web["etc/systemd/system/firebreak-door.service"].content
    assert "User=haproxy" in unit and "/usr/sbin/haproxy -Ws -f /etc/firebreak/door-haproxy.cfg" in unit
    assert 'u haproxy - "Firebreak door"' in web["etc/sysusers.d/firebreak.conf"].content
    assert "z /etc/firebreak/pki/door.pem.key 0600 haproxy haproxy -" in web["etc/tmpfiles.d/firebreak.conf"].content
    # an agent beside its door steers it by HAProxy's socket, in HAProxy's group
    from tests.conftest import ROOT
    example = yaml.safe_load((ROOT / "deploy" / "inventory.example.yml").read_text())
    example.setdefault("settings", {}).setdefault("door", {})["kind"] = "haproxy"
    (tmp_path / "example.yml").write_text(yaml.safe_dump(example))
    both = load_inventory(tmp_path / "example.yml")
    files = render(both, make_secrets(both.names, token=_counter()))
    agent = AgentConfig.model_validate(yaml.safe_load(files["gj-1/etc/firebreak/agent.yml"].content))
    assert agent.door.kind == "haproxy" and agent.door.admin == "unix//run/firebreak-door/admin.sock"
    assert "SupplementaryGroups=haproxy\n" in files["gj-1/etc/systemd/system/firebreak-agent.service"].content
    web1 = next(h for h in inv.hosts if h.name == "gj-web1")
    leaf = next(x for x in plan.host_leaves(inv, web1) if x.cert.endswith("/door.pem"))
    assert leaf.key == "/etc/firebreak/pki/door.pem.key" and leaf.owner == "haproxy"
