"""The public portal's form handling, without I/O: Korea time, field errors in the person's
language, and the form's values as a report. The routes are in routes/portal.py.

A form carries a signed key made when it was shown. The key is the report's idempotency key:
a person who taps "submit" again after a site was lost mid-request (or whose first tap timed
out) gets the same receipt, never a second report.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from firebreak.claims.i18n import t

KST = timezone(timedelta(hours=9))  # Korea has no daylight saving time
FORM_MAX_AGE = 24 * 3600

# Which message a server-side error on a field gets, in the person's language.
FIELD_MESSAGE = {"claimed_amount": "err.amount", "plan_price": "err.amount", "contact": "err.contact",
                 "window_end": "err.window"}


def parse_local(value: str) -> datetime | str:
    """A datetime-local value ('2022-10-15T15:20') read as Korea time; bad input passes through
    for the model to refuse with a field error."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return dt if dt.tzinfo else dt.replace(tzinfo=KST)


def form_errors(exc: ValidationError, lang: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        name = loc[0] if loc else "form"
        if e["type"] == "missing" or (e["type"] == "string_too_short" and name != "contact"):
            errors.setdefault(name, t("required", lang))
        elif name in FIELD_MESSAGE:
            errors.setdefault(name, t(FIELD_MESSAGE[name], lang))
        elif not loc or e["type"] == "value_error":
            errors.setdefault("window_end", t("err.window", lang))
        else:
            errors.setdefault(name, e["msg"])
    return errors


def report_fields(values: dict[str, Any], lang: str) -> dict[str, Any]:
    """The form's values as ReportIn's fields (times in Korea time, amounts without commas)."""
    data: dict[str, Any] = {k: values.get(k, "") for k in ("reporter_kind", "service", "description", "contact")}
    data.update(window_start=parse_local(values.get("window_start", "")),
                window_end=parse_local(values.get("window_end", "")),
                claimed_amount=values.get("claimed_amount", "").replace(",", "") or None,
                evidence=values.get("evidence", []), language=lang,
                account=values.get("account", "").strip() or None)
    return data
