"""Both kinds of front door on a real lab, HAProxy (the lab's default) and Caddy (`lab up --door
caddy`): reports through every site's door, over HTTP and HTTPS, each door on its own site's app
first, away from an evacuated site's app and home again on restore (HAProxy through its runtime
API: the same process all along)."""

import ssl

import httpx
import psutil
import pytest

from firebreak.drill.workload import seed_report
from firebreak.lab import lab
from firebreak.lab.state import lab_home, load_secrets
from tests.lab.conftest import wait_for
from tests.lab.test_ops_e2e import act, served_by

pytestmark = pytest.mark.lab


def test_haproxy_doors_serve_reports_and_follow_the_routing_table(running_lab):
    doors_serve_and_follow("haproxy")


@pytest.mark.lab_args("--door", "caddy")
def test_caddy_doors_serve_reports_and_follow_the_routing_table(lab_up):
    doors_serve_and_follow("caddy")


def doors_serve_and_follow(kind: str) -> None:
    st = wait_for(lambda: (lambda s: s if s["healthy"] else None)(lab.status()), 90, "a healthy lab")
    assert st["door_kind"] == kind
    names = list(st["sites"])
    doors = {n: st["sites"][n]["door"] for n in names}
    # the kind asked for answers on the door's port: its own process runs the door
    assert {psutil.Process(st["sites"][n]["processes"]["door"]["pid"]).name() for n in names} == {kind}
    # each door: its own site's app, and it says which door it is
    for n in names:
        r = httpx.get(doors[n] + "/healthz", timeout=5)
        assert r.status_code == 200 and r.headers["x-firebreak-door"] == n and r.headers["x-firebreak-site"] == n
    # a report through each door is stored and read back through another
    ids = [seed_report(doors[n]) for n in names]
    admin = load_secrets(lab_home()).app_admin
    for i, n in enumerate(names):
        other = doors[names[(i + 1) % len(names)]]
        got = httpx.get(f"{other}/api/reports/{ids[i]}", headers={"Authorization": f"Bearer {admin}"}, timeout=5)
        assert got.status_code == 200 and got.json()["id"] == ids[i]
    # HTTPS with the lab's CA: the same routes, and the app is told the scheme
    https = st["sites"][names[0]]["door_https"]
    r = httpx.get(https + "/healthz", verify=ssl.create_default_context(cafile=str(lab_home() / "pki" / "ca.pem")),
                  timeout=5)
    assert r.status_code == 200 and r.headers["x-firebreak-door"] == names[0]

    # an evacuation moves a door's traffic away without a reload; a restore brings it home
    token = load_secrets(lab_home()).ops_token
    console = st["sites"][names[0]]["console"]
    drained = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "replica")
    pid = st["sites"][drained]["processes"]["door"]["pid"]
    try:
        assert act(console, token, "evacuate", site=drained).status_code == 200
        wait_for(lambda: served_by(doors[drained]) != drained, 10, f"{drained}'s door to send its traffic away")
        assert all(served_by(doors[n]) == n for n in names if n != drained)
    finally:
        assert act(console, token, "restore", site=drained).status_code == 200
    wait_for(lambda: served_by(doors[drained]) == drained, 10, f"{drained}'s door to serve its own app again")
    assert lab.status()["sites"][drained]["processes"]["door"]["pid"] == pid  # the same door process all along
