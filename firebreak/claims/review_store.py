"""The reviewer console's SQL, in one place, every statement through the store's primary checks
and deadlines (Store.on_primary): a connection made before the primary moved is never used, and
a silent server costs the review deadline, not TCP's minutes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from firebreak.claims.ledger import Outage
from firebreak.claims.policy import Policy
from firebreak.claims.review import APPROVED_SQL, QUEUE_SQL, VERIFY_BATCH, BulkAsk
from firebreak.claims.store import Store
from firebreak.claims.verify import assess

WHERE = "status = %(status)s AND (%(kind)s = '' OR reporter_kind = %(kind)s)"
# What "approve all clean" approves: clean, awaiting a decision, of one kind (or all), and no
# report newer than the ones the reviewer was shown (`upto`, the newest id on their page).
CLEAN_SET = (f"status = 'verified' AND (%(kind)s = '' OR reporter_kind = %(kind)s) AND {QUEUE_SQL['clean']} "
             "AND id <= %(upto)s")


@dataclass(frozen=True)
class QueuePage:
    rows: list[dict]
    counts: dict[str, int]
    waiting: int


@dataclass(frozen=True)
class CleanSet:
    """What "approve all clean" would approve now: how many, their total, the newest id."""
    count: int
    total: int
    upto: int


async def _all(conn: Any, sql: str, params: Any = None) -> list[dict]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchall()


async def _one(conn: Any, sql: str, params: Any = None) -> dict | None:
    rows = await _all(conn, sql, params)
    return rows[0] if rows else None


class ReviewStore:
    def __init__(self, store: Store, site: str, deadline: float):
        self.store, self.site, self.deadline = store, site, deadline

    async def _run(self, work: Any) -> Any:
        return await self.store.on_primary(work, self.deadline)

    async def role_of(self, name: str) -> str | None:
        """A reviewer's role now (any server that answers: a read)."""
        row = await self.store.read_one("SELECT name, role FROM reviewers WHERE name = %s", (name,))
        return row["role"] if row else None

    async def credentials(self, name: str) -> tuple[str, str] | None:
        """(role, argon2 hash) of a reviewer, from the primary (a password just changed counts)."""
        row = await self._run(lambda c: _one(c, "SELECT role, password_hash FROM reviewers WHERE name = %s",
                                             (name,)))
        return (row["role"], row["password_hash"]) if row else None

    async def audit(self, client: str, actor: str, action: str, outcome: str, ids: list[int],
                    detail: dict) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO review_audit (who, action, report_ids, detail, client, site, outcome) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)", (actor, action, ids, Jsonb(detail), client, self.site, outcome)))

    async def queue(self, status: str, kind: str, queue: str) -> QueuePage:
        params = {"status": status, "kind": kind}
        counts_sql = ", ".join(f"count(*) FILTER (WHERE {cond}) AS \"{q}\"" for q, cond in QUEUE_SQL.items())

        async def work(c: Any) -> QueuePage:
            rows = await _all(c, "SELECT id, receipt, reporter_kind, service, claimed_amount, amount, goodwill, rule, "
                                 f"flags, needs_review, verified_hours, created_at FROM reports WHERE {WHERE} AND "
                                 f"{QUEUE_SQL[queue]} ORDER BY id LIMIT 200", params)
            counts = await _one(c, f"SELECT {counts_sql} FROM reports WHERE {WHERE}", params)
            waiting = await _one(c, "SELECT count(*) AS n FROM reports WHERE status = 'received'")
            return QueuePage(rows, counts or {}, waiting["n"] if waiting else 0)
        return await self._run(work)

    async def clean_set(self, kind: str, upto: int | None = None) -> CleanSet:
        row = await self._run(lambda c: _one(
            c, f"SELECT count(*) AS n, coalesce(sum(amount), 0) AS total, coalesce(max(id), 0) AS upto "
               f"FROM reports WHERE {CLEAN_SET}", {"kind": kind, "upto": upto if upto is not None else 2**62}))
        return CleanSet(row["n"], int(row["total"]), row["upto"])

    async def report(self, report_id: int) -> tuple[dict | None, list[dict]]:
        async def work(c: Any) -> tuple[dict | None, list[dict]]:
            row = await _one(c, "SELECT * FROM reports WHERE id = %s", (report_id,))
            history = await _all(c, "SELECT at, who, action, detail, outcome FROM review_audit "
                                    "WHERE %s = ANY(report_ids) ORDER BY id DESC LIMIT 50", (report_id,))
            return row, history
        return await self._run(work)

    async def add_note(self, report_id: int, who: str, note: str) -> bool:
        row = await self._run(lambda c: _one(c, "UPDATE reports SET note = note || %s WHERE id = %s RETURNING id",
                                             (f"[{who}] {note}\n", report_id)))
        return row is not None

    async def decide(self, report_id: int, status: str, who: str, amount: int | None, note: str) -> bool:
        """A decision on a report awaiting one; False when there is none (decided already, or none)."""
        row = await self._run(lambda c: _one(
            c, "UPDATE reports SET status = %s, decided_by = %s, decided_at = now(), amount = COALESCE(%s, amount), "
               "note = note || %s WHERE id = %s AND status IN ('verified', 'escalated') RETURNING id",
            (status, who, amount, f"[{who}] {note}\n" if note else "", report_id)))
        return row is not None

    async def approve_clean(self, who: str, kind: str, upto: int | None,
                            decide: Callable[[CleanSet], BulkAsk]) -> tuple[CleanSet, BulkAsk, list[int]]:
        """In one transaction: lock the clean set (up to `upto`), total it, ask `decide`, and
        approve exactly those rows if it says so. What is approved is what was totalled, even
        while the verifier adds clean reports and other reviewers decide."""
        params = {"who": who, "kind": kind, "upto": upto if upto is not None else 2**62}

        async def work(c: Any) -> tuple[CleanSet, BulkAsk, list[int]]:
            rows = await _all(c, f"SELECT id, amount FROM reports WHERE {CLEAN_SET} ORDER BY id FOR UPDATE", params)
            ids = [r["id"] for r in rows]
            clean = CleanSet(len(rows), sum(int(r["amount"] or 0) for r in rows), max(ids, default=0))
            ask = decide(clean)
            if ask.approve and ids:
                await c.execute("UPDATE reports SET status = 'approved', decided_by = %s, decided_at = now() "
                                "WHERE id = ANY(%s)", (who, ids))
            return clean, ask, ids if ask.approve else []
        return await self._run(work)

    async def approved(self) -> list[dict]:
        return await self._run(lambda c: _all(c, APPROVED_SQL))

    async def audit_log(self) -> list[dict]:
        return await self._run(lambda c: _all(
            c, "SELECT at, who, action, report_ids, detail, client, site, outcome FROM review_audit "
               "ORDER BY id DESC LIMIT 200"))

    async def verify_pending(self, policy: Policy, outages: list[Outage], limit: int = VERIFY_BATCH) -> int:
        """Price and flag reports nobody has verified yet (at most `limit`); returns how many.
        Fees and sales come from the account's row in the operator's accounts table, never from
        the report; a report duplicates an earlier one of the same account (or, without one, the
        same contact) and service whose window overlaps it, directly or through others
        (verify.first_of_claims, computed by PostgreSQL: FIRST_OF_CLAIM_SQL)."""
        async def work(c: Any) -> int:
            rows = await _all(c, PENDING_SQL, (limit,))
            if not rows:
                return 0
            by_account = [r for r in rows if r["account"] is not None]
            by_contact = [r for r in rows if r["account"] is None]
            firsts = {k["id"]: k["first"] for k in await _all(c, FIRST_OF_CLAIM_SQL, (
                [r["account"] for r in by_account], [r["service"] for r in by_account],
                [r["contact"] for r in by_contact], [r["service"] for r in by_contact], [r["id"] for r in rows]))}
            updates = []
            for r in rows:
                first = firsts.get(r["id"], r["id"])
                a = assess(policy, outages, reporter_kind=r["reporter_kind"], service=r["service"],
                           start=r["window_start"], end=r["window_end"], claimed_amount=r["claimed_amount"],
                           evidence=tuple(r["evidence"]),
                           duplicate=first != r["id"],
                           monthly_fee=r["monthly_fee"], sales_per_hour=r["sales_per_hour"])
                updates.append((a.hours, a.rule, a.amount, a.goodwill, a.review, list(a.flags), list(a.reasons),
                                r["id"]))
            await c.cursor().executemany(
                "UPDATE reports SET status = 'verified', verified_hours = %s, rule = %s, amount = %s, "
                "goodwill = %s, needs_review = %s, flags = %s, reasons = %s WHERE id = %s", updates)
            return len(updates)
        return await self._run(work)


PENDING_SQL = (
    "SELECT r.id, r.reporter_kind, r.service, r.window_start, r.window_end, r.claimed_amount, r.evidence, "
    "r.account, r.contact, "
    "a.monthly_fee, a.sales_per_hour "
    "FROM reports r LEFT JOIN accounts a ON a.account = r.account "
    "WHERE r.status = 'received' ORDER BY r.id LIMIT %s FOR UPDATE OF r SKIP LOCKED")
# Each pending report's claim, as verify.first_of_claims defines it, computed where the reports
# are: every report of the same accounts (or, without one, contacts: the 'account:'/'contact:'
# prefixes keep an account id from ever equalling a contact) and services (through the indexes on
# (account, service) and (contact, service)), sorted by start within each; a window opens a new
# claim unless it starts before the latest end so far; a claim's first is its lowest id. Only the
# pending reports' rows come back. Done in the app, the sweep and the fetch of every kin row held
# every app's event loop for seconds once one contact had a few thousand reports.
FIRST_OF_CLAIM_SQL = """
WITH kin AS (
    SELECT id, 'account:' || account AS who, service, window_start, window_end FROM reports
    WHERE account IS NOT NULL AND (account, service) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
    UNION ALL
    SELECT id, 'contact:' || contact AS who, service, window_start, window_end FROM reports
    WHERE account IS NULL AND (contact, service) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
), opened AS (
    SELECT id, who, service, window_start,
           CASE WHEN window_start < max(window_end) OVER (PARTITION BY who, service ORDER BY window_start, id
                                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                THEN 0 ELSE 1 END AS opens
    FROM kin
), numbered AS (
    SELECT id, who, service, sum(opens) OVER (PARTITION BY who, service ORDER BY window_start, id
                                              ROWS UNBOUNDED PRECEDING) AS claim
    FROM opened
), firsts AS (
    SELECT id, min(id) OVER (PARTITION BY who, service, claim) AS first FROM numbered
)
SELECT id, first FROM firsts WHERE id = ANY(%s::bigint[])
"""
