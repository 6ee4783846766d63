"""The public record and the public door on the real lab (issue 31), not run by the helper that
wrote it (the lab was in use):

- a site's power cut appears on every surviving site's status page and feed while it happens, in
  a real browser at a phone's width, and shows as resolved once the site is back; a webhook
  subscriber on the machine is told of it, signed, while it happens and again when it ends;
- through a site's public door, admin routes, metrics and the API's documentation are not there
  (404, counted), a non-ASCII Authorization header is never a 500, and the agent still reaches
  its app's admin listener (FIREBREAK_ADMIN_BIND; the lab's app_env and agent config must give
  the app one, see the claims helper's report)."""

import os
import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from firebreak.lab import lab
from firebreak.lab.state import lab_home, load_secrets
from tests.lab.conftest import wait_for
from tests.web.conftest import CHROMIUM_ARGS
from tests.web.receiver import Receiver

pytestmark = pytest.mark.lab
ATOM = "{http://www.w3.org/2005/Atom}"
PHONE = {"width": 390, "height": 844}


def healthy():
    st = lab.status()
    return st if st["healthy"] else None


def feed_titles(door: str) -> list[str]:
    feed = ET.fromstring(httpx.get(door + "/incidents.atom?lang=en", timeout=5).content)
    return [e.findtext(ATOM + "title") + " | " + (e.findtext(ATOM + "content") or "")
            for e in feed.findall(ATOM + "entry")]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is installed by `make setup`")
def test_a_site_loss_is_on_the_status_page_while_it_happens_and_resolved_after(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    # the synchronous standby's site: the primary stays, and the lab heals by itself
    victim = next(n for n, s in st["sites"].items() if s["postgres"]["role"] == "sync_standby")
    watcher = next(n for n in st["sites"] if n not in (victim, st["primary"]))
    # A subscriber as an operator adds one: the subscribers file, then the apps restarted
    receiver = Receiver(os.urandom(24).hex().encode(), host=st["host_address"])
    lab.subscribe([(receiver.url + "/hook", receiver.secret.decode())])
    try:
        status_page_and_subscriber(victim, st["sites"][watcher]["door"], receiver)
    finally:
        lab.subscribe([])
        receiver.server.shutdown()
    wait_for(healthy, 120, "every site healthy again")


def status_page_and_subscriber(victim: str, door: str, receiver: Receiver) -> None:
    from playwright.sync_api import sync_playwright

    lost = f"Site {victim} lost"

    def told(state: str) -> list[dict]:
        """the victim's loss as the subscriber was told of it (earlier incidents of this lab within
        the notifier's horizon are announced too: they began before the cut)"""
        return [g for g in receiver.at("/hook") if g["body"]["state"] == state and victim in g["body"]["sites"]
                and datetime.fromisoformat(g["body"]["start"]).timestamp() >= cut_at - 1]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=PHONE)

        def incident_shown(state: str) -> bool:
            page.goto(door + "/incidents?lang=en")
            return any(lost in a.inner_text() and state in a.inner_text()
                       for a in page.locator("article.incident").all())

        cut_at = time.time()
        lab.power_off(victim)
        try:
            wait_for(lambda: incident_shown("Ongoing"), 60, f"{victim}'s loss on the status page")
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert any(lost in t and "(Ongoing)" in t for t in feed_titles(door))
            opened = wait_for(lambda: told("open"), 30, f"the subscriber told of {victim}'s loss while it lasts")
        finally:
            lab.power_on(victim)
        wait_for(lambda: incident_shown("Resolved"), 120, f"{victim}'s loss resolved on the status page")
        assert any(lost in t and "(Resolved)" in t for t in feed_titles(door))
        page.goto(door + "/incidents")  # and in Korean
        assert any(f"{victim} 사이트 중단" in a.inner_text() for a in page.locator("article.incident").all())
        browser.close()
    resolved = wait_for(lambda: told("resolved"), 30, f"the subscriber told that {victim}'s loss ended")
    for g in opened + resolved:
        assert g["ok"], f"a delivery failed the subscriber's signature check: {g}"
    assert {g["body"]["incident"] for g in opened} == {g["body"]["incident"] for g in resolved}
    # at least once: an event sent again (a notifier that died after sending) is the same event
    bodies: dict[str, dict] = {}
    for g in opened + resolved:
        assert bodies.setdefault(g["event"], g["body"]) == g["body"], g


def test_the_public_door_serves_public_routes_only(running_lab):
    st = wait_for(healthy, 90, "a healthy lab")
    token = load_secrets(lab_home()).app_admin
    auth = {"Authorization": f"Bearer {token}"}
    for name, site in st["sites"].items():
        door = site["door"]
        for method, path in (("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"),
                             ("POST", "/admin/release"), ("POST", "/admin/primary-moved")):
            r = httpx.request(method, door + path, headers=auth, json={"version": "x"}, timeout=5)
            assert r.status_code == 404, (name, path, r.status_code)
        r = httpx.post(door + "/admin/primary-moved", headers={"Authorization": "Bearer 토큰".encode()}, timeout=5)
        assert r.status_code == 404
        assert httpx.get(door + "/healthz", timeout=5).status_code == 200
        assert httpx.get(door + "/incidents", timeout=5).status_code == 200
        admin = site.get("app_admin")
        assert admin, "the lab gives the app no admin listener yet (FIREBREAK_ADMIN_BIND in app_env)"
        assert httpx.post(admin + "/admin/primary-moved", headers=auth, timeout=5).status_code == 200
        metrics = httpx.get(admin + "/metrics", timeout=5).text
        assert re.search(r'firebreak_app_refusals_total\{route="admin",site="%s",why="not-public"\} [1-9]' % name,
                         metrics), metrics[-2000:]
