"""The reviewer console's decisions and formats, without I/O: its queues, what a decision
does, how "approve all clean" decides to ask again, the payout export's cells, the summary of
anonymous refusals and the verifier's pace. The routes are in routes/review.py, the SQL in
review_store.py.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from firebreak.claims.verify import FLAGS

QUEUES = ("all", "clean", "needs-review") + FLAGS
DECISIONS = {"approve": "approved", "reject": "rejected", "escalate": "escalated", "note": None}
# A catching-up pass: small enough that intake resuming waits for at most one short pass (5,000
# reports took seconds of the app's and PostgreSQL's CPU, which the first reports of a burst
# after a quiet second paid for), with 0.05 s between passes.
VERIFY_BATCH = 500
EXPORT_COLUMNS = ("receipt", "reporter_kind", "service", "contact", "amount", "currency", "goodwill", "rule",
                  "decided_by", "decided_at")
QUEUE_SQL = {
    "all": "TRUE",
    "clean": "flags = '{}' AND NOT needs_review AND rule IS NOT NULL",
    "needs-review": "needs_review",
    **{f: f"'{f}' = ANY(flags)" for f in FLAGS},
}


# A cell a spreadsheet would read as a formula (OWASP's list): `=HYPERLINK(...)` in a contact
# field, or a real phone number `+82 ...`, which Excel turns into a formula or a number.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """Text that starts like a formula gets a leading apostrophe, which spreadsheets show as text
    and do not evaluate; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def export_csv(rows: list[dict], currency: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS)
    for r in rows:
        w.writerow([spreadsheet_safe(v) for v in (
            r["receipt"], r["reporter_kind"], r["service"], r["contact"], r["amount"] or 0, currency,
            r["goodwill"] or "", r["rule"] or "", r["decided_by"],
            r["decided_at"].isoformat() if r["decided_at"] else "")])
    return buf.getvalue()


APPROVED_SQL = ("SELECT receipt, reporter_kind, service, contact, amount, goodwill, rule, decided_by, decided_at "
                "FROM reports WHERE status = 'approved' ORDER BY decided_at, id")


class AnonymousTally:
    """Anonymous refusals, counted per action and source: the first is summarised at once, then
    at most one summary a minute, whatever the rate."""

    MAX_SOURCES = 1_000  # a count, not a list: distinct sources beyond this are not told apart

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.counts: dict[str, int] = {}
        self.sources: set[str] = set()
        self.since: float | None = None
        self.flushed = float("-inf")

    def note(self, action: str, source: str, now: float) -> dict | None:
        if self.since is None:
            self.since = now
        self.counts[action] = self.counts.get(action, 0) + 1
        if len(self.sources) < self.MAX_SOURCES:
            self.sources.add(source)
        if now - self.flushed < self.every:
            return None
        summary = {"count": sum(self.counts.values()), "actions": dict(sorted(self.counts.items())),
                   "sources": len(self.sources), "seconds": round(now - self.since, 1)}
        self.counts, self.sources, self.since, self.flushed = {}, set(), None, now
        return summary


VERIFY_EVERY = 2.0  # seconds between passes of the verifier over newly received reports
VERIFY_QUIET = 1.0  # intake idle this long: the verifier catches up at full speed
VERIFY_BUSY_BATCH = 50


def verify_batch(now: float, last_submit: float) -> int:
    """How many reports the next pass verifies. While reports are arriving (a flood, after an
    outage), verifying them competes with taking them: every verification is a second write of
    the report (a synchronous commit) and Python work in the app that answers the intake. So it
    takes a small share (VERIFY_BUSY_BATCH per pass, 25 a second per site) and catches up once
    intake has been quiet for VERIFY_QUIET; a reviewer sees a report as received meanwhile."""
    return VERIFY_BATCH if now - last_submit >= VERIFY_QUIET else VERIFY_BUSY_BATCH


@dataclass(frozen=True)
class BulkAsk:
    """What "approve all clean" does with what it was sent: approve, or ask again (and why)."""
    approve: bool
    reason: str = ""


def bulk_approval(count: int, total: int, confirm_over: int | None, confirmed_total: int | None) -> BulkAsk:
    """Above the policy's `approve_all_confirm_over`, one click is not enough: the reviewer is
    shown the count and the total and must confirm that very total; if the clean set changed
    since (a total other than the one confirmed), they are asked again with the new one."""
    if count == 0 or confirm_over is None or total <= confirm_over:
        return BulkAsk(True)
    if confirmed_total is None:
        return BulkAsk(False, f"the total {total:,} is over the policy's {confirm_over:,}: confirm it")
    if confirmed_total != total:
        return BulkAsk(False, f"the clean reports now total {total:,}, not the {confirmed_total:,} confirmed: "
                              "confirm the new total")
    return BulkAsk(True)
