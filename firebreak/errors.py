"""The small exception tree. Every message names the resource and the reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a user's input: where (file, field path, line) and why."""

    source: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}: " if self.path else f"{self.source}: "
        return where + self.reason


class FirebreakError(Exception):
    """Base of every error Firebreak raises on purpose (every class below derives from it)."""

    exit_code = 1


class InputError(FirebreakError):
    """A user's input (file, flag, form) is wrong. Nothing was changed. Exit status 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("input", "", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LabError(FirebreakError):
    """The lab could not do what was asked; the message names the component and its log."""


class DrillAborted(LabError):
    """A drill stopped before its end (Ctrl-C, an error); the message says what was healed."""

    def __init__(self, message: str, interrupted: bool = False):
        super().__init__(message)
        self.exit_code = 130 if interrupted else 1


class OpsError(FirebreakError):
    """An ops action was refused or failed; the message says why and what to do."""


class BadValue(FirebreakError):
    """A value read from etcd or Patroni does not parse into its type (a neighbour's bug, a
    newer version's format, a hand-made put). The reader ignores it, logs it once and counts it;
    the message names the field and the reason."""


class EtcdError(FirebreakError):
    """No etcd member answered, or etcd refused the request; the message names the call."""


class EtcdPermissionDenied(EtcdError):
    """etcd's authorisation refused the request: this role may not do that (any member would
    say the same)."""


class Denied(FirebreakError):
    """A console request was refused: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class AnswerUnknown(FirebreakError):
    """No database server answered a read: whether the thing exists is unknown (503, not 404)."""


class KeyReused(FirebreakError):
    """An idempotency key came back with a different request: refused, nothing stored."""


class Overloaded(FirebreakError):
    """The write queue is full: refused at once (503) rather than queued without bound."""


class ReportRefused(FirebreakError):
    """The database refused this report's values (a data or constraint error): rolled back,
    nothing stored; sending it again will not help (422)."""


class OutcomeUnknown(FirebreakError):
    """The database may or may not have kept the write; the client must retry with its key."""
