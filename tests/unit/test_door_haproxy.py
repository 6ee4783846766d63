"""The front door on HAProxy: its configuration (checked by the installed HAProxy itself) and the
runtime API commands that apply a routing order, as tables."""

import shutil
import subprocess

import pytest

from firebreak.control.door_haproxy import APPS, backends, commands, haproxy_config

SITES = ["pangyo", "ansan", "siheung"]
APPS_AT = {s: f"http://10.0.0.{i}:8080" for i, s in enumerate(SITES, 1)}


def config(**kw) -> str:
    args = dict(site="ansan", sites=SITES, apps=APPS_AT, listen="127.0.0.1:18555", admin_socket="/run/x/door.sock")
    return haproxy_config(**{**args, **kw})


def server_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]


def test_this_site_s_app_is_the_active_server_and_the_others_are_backups_in_the_sites_order():
    assert server_lines(config()) == ["server ansan 10.0.0.2:8080", "server pangyo 10.0.0.1:8080 backup",
                                      "server siheung 10.0.0.3:8080 backup"]


def test_a_client_s_forwarded_for_is_never_believed_and_the_door_names_itself():
    text = config()
    assert text.index("http-request del-header X-Forwarded-For") < text.index("option forwardfor")
    assert "http-response set-header X-Firebreak-Door ansan" in text
    # a request the app accepted is never sent again: no retry-on beyond the default (conn-failure)
    assert "retry-on" not in text


def test_an_estate_door_routes_each_service_by_its_prefix_and_answers_its_own_health_check():
    text = config(apps={}, services={"pay": {"pangyo": "http://10.0.0.1:9000", "siheung": "http://10.0.0.3:9000"},
                                     "chat": {"ansan": "http://10.0.0.2:9001"}})
    assert "use_backend svc_pay if { path_beg /s/pay/ }" in text
    assert "http-request replace-path ^/s/pay(/.*)$ \\1" in text
    assert 'string "door ok" if { path /healthz }' in text
    # a service with no instance here: every server a backup, the sites' order
    assert server_lines(text)[:2] == ["server pangyo 10.0.0.1:9000 backup", "server siheung 10.0.0.3:9000 backup"]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (make setup installs it)")
@pytest.mark.parametrize("kw", [{}, {"tls_pem": None, "threads": 1},
                                {"apps": {}, "services": {"pay": {"ansan": "http://10.0.0.2:9000"}}}])
def test_the_installed_haproxy_accepts_the_configuration_without_a_warning(tmp_path, kw):
    cfg = tmp_path / "door.cfg"
    cfg.write_text(config(admin_socket=str(tmp_path / "door.sock"), **kw))
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "WARNING" not in r.stderr + r.stdout


@pytest.mark.parametrize("order,ready", [
    # every site serving: all ready (HAProxy prefers the active one, this site's)
    (["ansan", "pangyo", "siheung"], {"ansan", "pangyo", "siheung"}),
    # this site drained: its server in maintenance, the backups take it in the sites' order
    (["pangyo", "siheung"], {"pangyo", "siheung"}),
    (["ansan"], {"ansan"}),
    # nothing serving: this site's own app still answers (a 502 says more than a closed door)
    ([], {"ansan"}),
])
def test_a_routing_order_puts_the_undrained_sites_ready_and_the_rest_in_maintenance(order, ready):
    bks = backends("ansan", SITES, APPS_AT)
    cmds = commands(bks, "ansan", order)
    assert sorted(cmds) == sorted(f"set server {APPS}/{s} state {'ready' if s in ready else 'maint'}" for s in SITES)
    # idempotent: the same order gives the same commands, whatever the door's state
    assert commands(bks, "ansan", order) == cmds


def test_an_agent_file_naming_an_haproxy_door_needs_its_runtime_socket():
    from pydantic import ValidationError

    from firebreak.control.config import DoorSettings

    ok = DoorSettings(kind="haproxy", listen="10.0.0.2:18000", admin="unix//run/firebreak/door.sock")
    assert ok.kind == "haproxy" and DoorSettings(listen="10.0.0.2:18000", admin="unix//x").kind == "caddy"
    with pytest.raises(ValidationError, match="door.admin: HAProxy's runtime API is a unix socket"):
        DoorSettings(kind="haproxy", listen="10.0.0.2:18000", admin="http://127.0.0.1:2019")
    with pytest.raises(ValidationError, match="kind"):
        DoorSettings(kind="nginx", listen="10.0.0.2:18000", admin="unix//x")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (make setup installs it)")
def test_haproxy_finds_the_door_s_key_beside_its_certificate_as_firebreak_pki_writes_it(tmp_path):
    """deploy render points HAProxy at door.pem and `firebreak pki` writes the key to door.pem.key
    (deploy.render.door_key): HAProxy loads it from there (its ssl-load-extra-files default)."""
    import datetime as dt

    from firebreak.pki import x509

    now = dt.datetime.now(dt.timezone.utc)
    ca = x509.make_ca("test CA", now=now, days=1)
    leaf = x509.issue(ca, common_name="door.ansan", ips=("127.0.0.1",), server=True, client=False, now=now, days=1)
    (tmp_path / "door.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "door.pem.key").write_bytes(leaf.key_pem)
    cfg = tmp_path / "door.cfg"
    cfg.write_text(config(admin_socket=str(tmp_path / "door.sock"), tls_pem=str(tmp_path / "door.pem"),
                          tls_listen="127.0.0.1:18556"))
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0 and "WARNING" not in r.stderr + r.stdout, r.stderr + r.stdout
    (tmp_path / "door.pem.key").unlink()   # without it, HAProxy refuses: the check is real
    assert subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True).returncode != 0


def test_a_service_with_no_instance_in_a_serving_site_is_served_by_every_instance_as_caddy_does():
    bks = backends("ansan", SITES, {}, services={"pay": {"pangyo": "http://10.0.0.1:9000",
                                                        "siheung": "http://10.0.0.3:9000"}})
    # pangyo and siheung drained: no serving site holds pay, and ansan has none of its own
    assert sorted(commands(bks, "ansan", ["ansan"])) == ["set server svc_pay/pangyo state ready",
                                                         "set server svc_pay/siheung state ready"]
    assert commands(bks, "ansan", ["ansan", "siheung"]) == ["set server svc_pay/pangyo state maint",
                                                            "set server svc_pay/siheung state ready"]


def test_a_connection_to_an_app_is_never_shared_so_the_door_closes_it_before_the_app_would():
    from firebreak.keepalive import APP_IDLE_S, DOOR_IDLE_S

    text = config()
    assert "http-reuse never" in text and f"timeout http-keep-alive {DOOR_IDLE_S}s" in text
    assert DOOR_IDLE_S < APP_IDLE_S
