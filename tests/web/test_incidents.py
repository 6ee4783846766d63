"""The public record over real HTTP and in a real browser: /incidents in Korean and English at a
phone's width, its Atom feed (validated with xml.etree: no feed parser is installed here), what a
ledger file says (drills left out), credits from credit batches, and nothing written for an
anonymous visitor."""

import time
import xml.etree.ElementTree as ET

import httpx
import psycopg
import pytest

from tests.web.conftest import serve_app
from tests.web.test_browser import browser, shot  # noqa: F401 - the browser fixture

ATOM = "{http://www.w3.org/2005/Atom}"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def record(claims_db, tmp_path_factory):
    """An app whose ledger file holds a resolved incident of two services three days ago, an
    outage of maps going on now, and a drill (never shown); and a credit batch for the first."""
    d = tmp_path_factory.mktemp("record")
    now = time.time()
    first = now - 3 * 86400
    (d / "ledger.yaml").write_text(f"""outages:
  - {{service: messenger, start: {first}, end: {first + 5400}, site: pangyo}}
  - {{service: taxi, start: {first + 600}, end: {first + 3000}, site: pangyo}}
  - {{service: maps, start: {now - 1200}, end: null, site: ansan}}
  - {{service: mail, start: {now - 40 * 86400}, end: {now - 40 * 86400 + 600}, source: drill}}
""")
    credits = d / "credits"
    credits.mkdir()
    (credits / "credit-20261201T000000Z-abcdef.csv").write_text(
        f"account,amount,goodwill,incident,rule\nA1,1000,,{int(first)},paid-user\nA2,2000,,{int(first)},paid-user\n"
        f"A2,500,,{int(first)},paid-user\n")
    with serve_app(claims_db, d, FIREBREAK_LEDGER=str(d / "ledger.yaml"), FIREBREAK_CREDIT_DIR=str(credits)) as (url, _):
        yield {"url": url, "first": int(first), "dsn": claims_db}


def writes(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM review_audit)").fetchone()


def test_the_status_page_says_what_the_ledger_says_in_both_languages(record):
    before = writes(record["dsn"])
    en = httpx.get(record["url"] + "/incidents?lang=en", timeout=10)
    ko = httpx.get(record["url"] + "/incidents", timeout=10)
    assert en.status_code == ko.status_code == 200
    assert "set-cookie" not in en.headers and "set-cookie" not in ko.headers  # nothing written, not even a cookie
    assert writes(record["dsn"]) == before
    assert '<html lang="en">' in en.text and '<html lang="ko">' in ko.text
    assert "Some services are down." in en.text and "일부 서비스에 장애가 있습니다." in ko.text
    assert en.text.count('class="incident"') == 2  # the drill is not an incident
    assert "Messenger, Taxi" in en.text and "메신저, 택시" in ko.text
    assert "2 accounts credited, 3,500 won in total" in en.text and "2개 계정에 총 3,500원 보상" in ko.text
    assert "Ongoing" in en.text and "Down since" in en.text and "1 h 30 min" in en.text
    assert f'id="incident-{record["first"]}"' in en.text


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_feed_is_valid_atom_with_one_entry_per_incident(record, lang):
    r = httpx.get(record["url"] + f"/incidents.atom?lang={lang}", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)
    assert feed.tag == ATOM + "feed" and feed.get("{http://www.w3.org/XML/1998/namespace}lang") == lang
    for required in ("id", "title", "updated", "author"):  # RFC 4287, 4.1.1
        assert feed.find(ATOM + required) is not None, required
    entries = feed.findall(ATOM + "entry")
    assert len(entries) == 2
    ids = [e.findtext(ATOM + "id") for e in entries]
    assert len(set(ids)) == 2 and f"urn:firebreak:incident:{record['first']}" in ids
    for e in entries:
        for required in ("id", "title", "updated", "link", "content"):
            assert e.find(ATOM + required) is not None, required
        assert e.findtext(ATOM + "updated").endswith("Z")
    resolved = next(e for e in entries if e.findtext(ATOM + "id").endswith(str(record["first"])))
    text = resolved.findtext(ATOM + "content")
    assert ("3,500" in text) and (("Resolved" in resolved.findtext(ATOM + "title")) if lang == "en"
                                  else ("해결됨" in resolved.findtext(ATOM + "title")))


@pytest.mark.parametrize("lang, words", [("ko", ("서비스 상태", "지도", "장애 기록")),
                                         ("en", ("Service status", "Maps", "Incidents"))])
def test_the_status_page_reads_on_a_phone(browser, record, tmp_path, lang, words):  # noqa: F811
    page = browser.new_page(viewport=PHONE, locale="ko-KR" if lang == "ko" else "en-US")
    page.goto(record["url"] + f"/incidents?lang={lang}")
    assert page.locator("html").get_attribute("lang") == lang
    body = page.locator("main").inner_text()
    assert all(w in body for w in words)
    assert page.locator("#overall").is_visible()
    # every service's 90 bars fit the screen: nothing to scroll sideways
    assert page.locator("#svc-maps .bar").count() == 90
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = page.locator("#svc-maps .bars").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    # today's bar for maps is not green (it is out now); a day without outage is
    assert page.locator("#svc-maps .bar").last.get_attribute("class") != "bar day-ok"
    assert page.locator("#svc-pay .bar").last.get_attribute("class") == "bar day-ok"
    page.locator(".incident").first.scroll_into_view_if_needed()
    shot(page, f"incidents-{lang}.png", tmp_path)
    # the language switch works from the page
    page.get_by_role("link", name="English" if lang == "ko" else "한국어").click()
    assert page.locator("html").get_attribute("lang") == ("en" if lang == "ko" else "ko")
