"""The portal and the reviewer console in a real browser (Debian's chromium, driven by
Playwright): a report in Korean on a phone-sized screen, one in English, a reviewer who signs
in, approves, and downloads the payout CSV; and nothing for anyone who has not signed in.

Set FIREBREAK_SCREENSHOTS=docs to refresh the screenshots in docs/."""

import csv
import io
import os
from pathlib import Path

import pytest

from tests.web.conftest import CHROMIUM_ARGS
from tests.web.test_review import add_user

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                                reason="Debian's chromium is installed by `make setup`")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page, name, tmp_path):
    target = Path(os.environ.get("FIREBREAK_SCREENSHOTS") or tmp_path)
    page.screenshot(path=str(target / name), full_page=True)


def test_a_report_in_korean_on_a_phone(browser, claims_app, tmp_path):
    page = browser.new_page(viewport=PHONE, locale="ko-KR")
    page.goto(claims_app["url"] + "/")
    assert page.locator("html").get_attribute("lang") == "ko"
    page.get_by_label("신고자 유형").select_option("taxi_driver")
    page.get_by_label("피해를 입은 서비스").select_option("taxi")
    page.get_by_label("피해 시작 (한국 시간)").fill("2022-10-15T16:00")
    page.get_by_label("피해 종료 (한국 시간)").fill("2022-10-15T22:00")
    page.get_by_label("피해 금액 (원)").fill("280000")
    contact = page.get_by_label("연락처 (휴대전화 또는 이메일)")
    contact.fill("전화 주세요")
    contact.blur()
    # validation as you type, in Korean, before anything is sent
    assert "휴대전화 번호" in page.locator("#contact-error").inner_text()
    assert contact.get_attribute("aria-invalid") == "true"
    contact.fill("010-5555-6666")
    assert page.locator("#contact-error").inner_text() == ""
    page.get_by_label("영수증").check()
    page.get_by_label("피해 내용").fill("콜을 받지 못해 영업을 못 했습니다")
    shot(page, "portal-ko.png", tmp_path)
    page.get_by_role("button", name="접수하기").click()
    page.wait_for_selector("#receipt")
    assert "접수되었습니다" in page.content()
    receipt = page.locator("#receipt").inner_text()
    assert receipt.startswith("FB-")
    # and the status page finds it with the contact given
    page.get_by_role("link", name="처리 상태 확인").click()
    page.get_by_label("접수 번호").fill(receipt)
    page.get_by_label("연락처 (휴대전화 또는 이메일)").fill("010-5555-6666")
    page.get_by_role("button", name="확인하기").click()
    # received, or already verified in the background and awaiting review
    assert page.locator("#status").inner_text() in ("접수됨", "검토 대기")


def test_a_report_in_english_using_only_the_keyboard(browser, claims_app, tmp_path):
    page = browser.new_page(viewport=PHONE)
    page.goto(claims_app["url"] + "/")
    page.get_by_role("link", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("You are a").select_option("channel_shop")
    page.keyboard.press("Tab")
    page.get_by_label("Affected service").select_option("messenger")
    page.get_by_label("Damage started (Korea time)").fill("2022-10-15T15:30")
    page.get_by_label("Damage ended (Korea time)").fill("2022-10-15T10:00")
    page.keyboard.press("Tab")
    assert "after the start" in page.locator("#window_end-error").inner_text()
    page.get_by_label("Damage ended (Korea time)").fill("2022-10-15T23:30")
    page.get_by_label("Loss (won)").fill("450,000")
    page.get_by_label("Contact (mobile number or e-mail)").fill("shop-en@example.org")
    shot(page, "portal-en.png", tmp_path)
    page.get_by_label("Contact (mobile number or e-mail)").press("Enter")  # submit from the keyboard
    page.wait_for_selector("#receipt")
    assert "Your report is in" in page.content()


def test_a_reviewer_signs_in_approves_and_exports_the_payout(browser, claims_app, tmp_path):
    import httpx

    from tests.web.test_review import submit, wait_verified

    password = add_user(claims_app["dsn"], "browser-approver", "approver")
    # One clean report that pays money of its own: run alone, the queue has no other tests' reports.
    with httpx.Client(base_url=claims_app["url"]) as c:
        submit(c, contact=f"shop-browser-{tmp_path.name}@example.org")   # 250,000 claimed: pays 30,000
    wait_verified(claims_app["dsn"])
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    # not signed in: the console sends to the sign-in page, and a decision is refused
    page.goto(claims_app["url"] + "/review")
    assert page.url.endswith("/review/login")
    refused = page.request.post(claims_app["url"] + "/review/bulk-approve", form={"kind": ""})
    assert refused.status == 401
    page.get_by_label("Name").fill("browser-approver")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/review")
    page.get_by_role("link", name="clean", exact=False).first.click()
    shot(page, "review-queue.png", tmp_path)
    rows = page.locator("tbody tr")
    assert rows.count() >= 1

    def pays(row) -> bool:  # its "Policy value" cell is an amount of money above 0
        value = row.locator("td").nth(5).inner_text().replace(",", "").strip()
        return value.isdigit() and int(value) > 0
    # The app is the session's: the API fuzz tests' reports share the queue, and one may come
    # first that pays nothing (a free user's goodwill item; CI of 2026-12-05 drew one). The export
    # is checked against a report that pays money.
    paying = [rows.nth(i) for i in range(rows.count()) if pays(rows.nth(i))]
    assert paying, "no clean report in the queue pays money"
    link = paying[0].locator("a")
    receipt = link.inner_text()
    link.click()
    page.get_by_label("Note").fill("checked against the ledger")
    page.get_by_role("button", name="Approve").click()
    assert "(approved)" in page.locator("h1").inner_text()
    with page.expect_download() as dl:
        page.get_by_role("link", name="Export payouts (CSV)").click()
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    paid = {r["receipt"]: r for r in csv.DictReader(io.StringIO(text))}
    assert receipt in paid and int(paid[receipt]["amount"]) > 0 and paid[receipt]["decided_by"] == "browser-approver"
    ctx.close()


def test_approve_all_clean_shows_the_total_and_asks_again_above_the_policys_bar(browser, claims_db, tmp_path):
    """A policy whose bar is 50,000 won; three clean 30,000-won reports of one kind: the queue's
    button shows the total, the click asks again with the count and total, and the confirmation
    approves exactly the reports that were shown, not one that became clean meanwhile."""
    import re

    import httpx
    import psycopg

    from firebreak.resources import example
    from tests.conftest import ROOT
    from tests.web.conftest import serve_app
    from tests.web.test_review import submit, wait_verified

    policy = tmp_path / "policy.yaml"
    text = example("kakao-2022-policy.yaml").read_text()
    policy.write_text(re.sub(r"(?m)^approve_all_confirm_over: .*$", "approve_all_confirm_over: 50000", text))
    kind = "other_partner"

    def clean_set() -> dict[int, int]:
        with psycopg.connect(claims_db) as conn:
            return dict(conn.execute(
                "SELECT id, amount FROM reports WHERE status = 'verified' AND reporter_kind = %s AND flags = '{}' "
                "AND NOT needs_review AND rule IS NOT NULL", (kind,)).fetchall())

    with serve_app(claims_db, tmp_path, FIREBREAK_POLICY=str(policy), FIREBREAK_PORTAL_RATE="600",
                   FIREBREAK_LEDGER=str(ROOT / "examples" / "ledger-2022.yaml")) as (url, _):
        with httpx.Client(base_url=url) as c:
            for i in range(3):
                submit(c, reporter_kind=kind, contact=f"partner{i}-{tmp_path.name}@example.org")
        wait_verified(claims_db)
        shown = clean_set()
        total = sum(shown.values())
        assert len(shown) >= 3 and total > 50_000
        password = add_user(claims_db, "bulk-approver", "approver")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/review/login")
        page.get_by_label("Name").fill("bulk-approver")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/review")
        page.goto(url + f"/review?queue=clean&kind={kind}")
        button = page.locator("#bulk-approve")
        assert f"Approve all {len(shown)} clean report(s) of kind {kind}: {total:,} KRW" in button.inner_text()
        button.click()
        # asked again: the count and the total, above the policy's bar
        page.wait_for_selector("#confirm-approve")
        assert page.locator("#confirm-count").inner_text() == str(len(shown))
        assert page.locator("#confirm-amount").inner_text() == f"{total:,} KRW"
        assert "50,000" in page.locator("#confirm-total").inner_text()
        shot(page, "review-confirm.png", tmp_path)
        assert set(clean_set()) == set(shown)  # nothing approved yet
        with httpx.Client(base_url=url) as c:  # meanwhile, another report becomes clean
            late = submit(c, reporter_kind=kind, contact=f"late-{tmp_path.name}@example.org")
        wait_verified(claims_db)
        page.locator("#confirm-approve").click()
        page.wait_for_url("**/review?queue=clean*")
    with psycopg.connect(claims_db) as conn:
        status = dict(conn.execute("SELECT id, status FROM reports WHERE id = ANY(%s)", (list(shown),)).fetchall())
        late_status = conn.execute("SELECT status FROM reports WHERE receipt = %s", (late,)).fetchone()[0]
        audit = conn.execute("SELECT outcome, detail FROM review_audit WHERE who = 'bulk-approver' "
                             "AND action = 'bulk-approve' ORDER BY id").fetchall()
    assert set(status.values()) == {"approved"}
    assert late_status == "verified"  # not shown, not approved
    assert [o for o, _ in audit] == ["asked to confirm", "ok"]
    assert audit[1][1]["total"] == total and audit[1][1]["count"] == len(shown)
