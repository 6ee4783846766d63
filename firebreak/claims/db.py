"""The claims schema and its migrations: applied once, under an advisory lock, by `lab up`."""

from __future__ import annotations

import psycopg
from psycopg import sql

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
    CREATE TABLE reports (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        receipt text NOT NULL UNIQUE,
        idempotency_key text UNIQUE,
        reporter_kind text NOT NULL,
        service text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        claimed_amount bigint NOT NULL CHECK (claimed_amount >= 0),
        description text NOT NULL DEFAULT '',
        contact text NOT NULL,
        language text NOT NULL DEFAULT 'ko',
        site text NOT NULL,
        status text NOT NULL DEFAULT 'received',
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX reports_contact ON reports (contact, service);
    """),
    (2, """
    -- What the portal collects beyond the API's first version, what verification found, and
    -- what a reviewer decided. Verification results are stored so the queue does not recompute.
    ALTER TABLE reports
        ADD COLUMN plan_price bigint NOT NULL DEFAULT 0 CHECK (plan_price >= 0),
        ADD COLUMN evidence text[] NOT NULL DEFAULT '{}',
        ADD COLUMN verified_hours double precision,
        ADD COLUMN rule text,
        ADD COLUMN amount bigint,
        ADD COLUMN goodwill text,
        ADD COLUMN needs_review boolean,
        ADD COLUMN flags text[] NOT NULL DEFAULT '{}',
        ADD COLUMN reasons text[] NOT NULL DEFAULT '{}',
        ADD COLUMN decided_by text,
        ADD COLUMN decided_at timestamptz,
        ADD COLUMN note text NOT NULL DEFAULT '';
    CREATE INDEX reports_status ON reports (status, id);
    CREATE INDEX reports_receipt_contact ON reports (receipt, contact);
    CREATE TABLE reviewers (
        name text PRIMARY KEY,
        role text NOT NULL CHECK (role IN ('reviewer', 'approver', 'admin')),
        password_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE review_audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        who text NOT NULL,
        action text NOT NULL,
        report_ids bigint[] NOT NULL DEFAULT '{}',
        detail jsonb NOT NULL DEFAULT '{}',
        client text,
        site text,
        outcome text NOT NULL
    );
    """),
    (3, """
    -- An idempotency key is bound to the request it first came with: a digest of the validated
    -- report. The same key with another report is refused, never answered with the first one.
    ALTER TABLE reports ADD COLUMN request_digest text;
    """),
    (4, """
    -- The operator's accounts (`firebreak claims accounts load`): what payouts are priced from,
    -- instead of what a reporter types. Replaced whole by each load (a snapshot, not a delta).
    CREATE TABLE accounts (
        account text PRIMARY KEY,
        kind text NOT NULL,
        monthly_fee bigint CHECK (monthly_fee >= 0),
        services text[] NOT NULL,
        sales_per_hour bigint CHECK (sales_per_hour >= 0),
        loaded_at timestamptz NOT NULL DEFAULT now()
    );
    -- The account a report is for (optional; ReportIn.account): duplicates are found by account
    -- and overlapping window, whatever contact each report gives.
    ALTER TABLE reports ADD COLUMN account text;
    CREATE INDEX reports_account ON reports (account, service) WHERE account IS NOT NULL;
    """),
    (5, """
    -- Webhook deliveries (claims/notifier.py): every site's app runs a notifier, and the one whose
    -- INSERT ... ON CONFLICT DO NOTHING makes the row sends the event; an attempt that failed, or
    -- whose sender died (claimed_at older than the lease), is claimed again by bumping attempts.
    -- payload is the exact body signed and sent at every attempt.
    CREATE TABLE webhook_deliveries (
        subscriber text NOT NULL,
        event_id text NOT NULL,
        payload text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        claimed_at timestamptz NOT NULL DEFAULT now(),
        claimed_by text NOT NULL,
        attempts int NOT NULL DEFAULT 1,
        delivered_at timestamptz,
        abandoned_at timestamptz,
        last_error text,
        PRIMARY KEY (subscriber, event_id)
    );
    CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (claimed_at)
        WHERE delivered_at IS NULL AND abandoned_at IS NULL;
    """),
]
LOCK_ID = 0x46_42_4D_49  # "FBMI": one migrator at a time, whoever runs it


def ensure_database(superuser_dsn: str, app_password: str, dbname: str = "claims", owner: str = "claims") -> None:
    """Create the application role and database if missing (idempotent)."""
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner),
                                                                          sql.Literal(app_password)))
        else:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(owner), sql.Literal(app_password)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner)))


def migrate(dsn: str) -> list[int]:
    """Apply pending migrations; returns the versions applied. Safe to run concurrently."""
    applied = []
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, ddl in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(ddl)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied.append(version)
    return applied
