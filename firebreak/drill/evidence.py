"""What a drill keeps of a fault whose writes did not come back in time: what each PostgreSQL
server's connections were doing, from their process titles (lab.postgres_backends), which can be
read when the server has no connection slot left to ask pg_stat_activity. Pure: titles in,
counts out.

A chaos run (2026-12-04) had a primary refuse every connection for 80 s, its slots all taken,
and kept nothing that said by what: this is that evidence for the next time."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

# PostgreSQL's own processes, not connections.
AUXILIARY = ("logger", "io worker", "checkpointer", "background writer", "walwriter", "autovacuum launcher",
             "autovacuum worker", "logical replication launcher", "archiver", "startup", "walreceiver",
             "walsummarizer", "stats collector", "postmaster")
_PREFIX = re.compile(r"^postgres: (?:[^:]+: )?")     # "postgres: <cluster_name>: "
_CLIENT = re.compile(r" (?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:]*|\[local\])(?:\(\d+\))?(?= |$)")
_LSN = re.compile(r"\b[0-9A-F]+/[0-9A-F]+\b")


def backend_kind(title: str) -> str | None:
    """"<user> <database> <what it is doing>" for a connection's backend (its client's address and
    any WAL position left out, so alike ones count together), None for PostgreSQL's own processes."""
    rest = _PREFIX.sub("", title.strip(), count=1)
    if rest.startswith(AUXILIARY):
        return None
    rest = _LSN.sub("LSN", _CLIENT.sub("", rest, count=1))
    return " ".join(rest.split())


def summary(backends: Mapping[str, Iterable[str]], top: int = 6) -> dict[str, list[tuple[str, int]]]:
    """server -> its connections' kinds, most common first (at most `top`, then the rest together)."""
    out = {}
    for server, titles in backends.items():
        kinds = Counter(k for t in titles if (k := backend_kind(t)) is not None)
        common = kinds.most_common(top)
        rest = sum(kinds.values()) - sum(n for _, n in common)
        out[server] = common + ([("other", rest)] if rest else [])
    return out


def describe(summaries: Mapping[str, list[tuple[str, int]]]) -> str:
    """One line per server: "ansan/pgdata: 200 connections: 150 app claims INSERT waiting, ..."."""
    return "; ".join(f"{server}: {sum(n for _, n in kinds)} connections"
                     + (": " + ", ".join(f"{n} {k}" for k, n in kinds) if kinds else "")
                     for server, kinds in sorted(summaries.items()))
