"""The public record: `/incidents` (a status page, Korean by default, English) and
`/incidents.atom` (its Atom feed), from the outage ledger, which every site can read (etcd, and
the ledger file), so the page survives the loss of any site as the portal does. An anonymous
request writes nothing: no database, no etcd, not even a cookie."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from firebreak.claims.i18n import LANGS, T, pick_lang
from firebreak.claims.routes.deps import Services, Svc
from firebreak.claims.routes.portal import templates
from firebreak.claims.status_page import KST, Event, PublicIncident, StatusView, atom, status_view

router = APIRouter(include_in_schema=False)
CACHE = {"Cache-Control": "public, max-age=10"}  # a crowd reloading the page after an outage
PAGE_TTL = 2.0  # seconds a rendering is served again (the ledger is re-read as often: sources.OutageSource)


class Words:
    """The page's words in one language, with the few phrases that take values."""

    def __init__(self, lang: str):
        self.lang = lang
        self.T = {k: v[lang] for k, v in T.items()}

    def __call__(self, key: str, **values: Any) -> str:
        return self.T[key].format(**values)

    def when(self, t: float) -> str:
        return datetime.fromtimestamp(t, KST).strftime("%Y-%m-%d %H:%M") + " KST"

    def service(self, s: str) -> str:
        return self.T["inc.all_services"] if s == "*" else self.T.get(f"svc.{s}", s)

    def services(self, inc: PublicIncident) -> str:
        return ", ".join(self.service(s) for s in inc.services)

    def duration(self, seconds: float) -> str:
        minutes = int(round(seconds / 60))
        return self("inc.duration", h=minutes // 60, m=minutes % 60)

    def event(self, ev: Event) -> str:
        subject = self.service(ev.subject) if ev.what in ("out", "back") else ev.subject
        return self(f"ev.{ev.what}", s=subject)

    def credited(self, inc: PublicIncident) -> str:
        if inc.credited_accounts is None:
            return self.T["inc.not_credited"]
        return self("inc.credited", n=f"{inc.credited_accounts:,}", total=f"{inc.credited_total or 0:,}")

    def describe(self, inc: PublicIncident) -> tuple[str, str]:
        """An incident in a few lines of plain text: the feed's entry."""
        state = self.T["inc.ongoing"] if inc.end is None else self.T["inc.resolved"]
        lines = [f"{self.T['inc.start']}: {self.when(inc.start)}"]
        if inc.end is not None:
            lines.append(f"{self.T['inc.end']}: {self.when(inc.end)} ({self.duration(inc.end - inc.start)})")
        lines += [f"{self.T['inc.services']}: {self.services(inc)}",
                  f"{self.T['inc.cause']}: {'; '.join(inc.causes) or self.T['inc.cause_unknown']}",
                  f"{self.T['inc.compensation']}: {self.credited(inc)}", "", f"{self.T['inc.timeline']}:"]
        lines += [f"- {self.when(ev.at)} {self.event(ev)}" + (f" ({ev.detail})" if ev.detail else "")
                  for ev in inc.timeline]
        return self("inc.entry_title", services=self.services(inc), state=state), "\n".join(lines)


async def view_of(svc: Services) -> StatusView:
    read, raw, _ = await svc.outages.ledger()
    return status_view(read, raw, svc.policy().services, svc.clock.time(), await svc.credits())


def language(request: Request, lang: str | None) -> str:
    return pick_lang(lang, request.cookies.get("lang"))


async def rendered(svc: Services, key: tuple[str, str], make: Any) -> bytes:
    """The page or feed as made at most PAGE_TTL ago: after an outage a crowd reloads it, and
    each rendering is 90 bars for every service."""
    now = svc.clock.monotonic()
    hit = svc.pages.get(key)
    if hit is not None and now - hit[0] < PAGE_TTL:
        return hit[1]
    body = make(await view_of(svc))
    if len(svc.pages) >= 64:  # the feed's key holds the Host a client sent: never a way to grow memory
        svc.pages.clear()
    svc.pages[key] = (now, body)
    return body


@router.get("/incidents", response_class=HTMLResponse)
async def incidents_page(request: Request, svc: Svc, lang: str | None = None) -> HTMLResponse:
    lang = language(request, lang)
    words = Words(lang)
    page = templates.env.get_template("incidents.html")
    body = await rendered(svc, ("html", lang), lambda view: page.render(
        lang=lang, other="en" if lang == "ko" else "ko", T=words.T, w=words, view=view).encode())
    return HTMLResponse(body, headers={**CACHE, "Content-Language": lang})


@router.get("/incidents.atom")
async def incidents_feed(request: Request, svc: Svc, lang: str | None = None) -> Response:
    lang = lang if lang in LANGS else "ko"
    base = str(request.base_url).rstrip("/")
    words = Words(lang)
    body = await rendered(svc, ("atom", lang + " " + base), lambda view: atom(view, lang, base, words.T,
                                                                              words.describe))
    return Response(body, media_type="application/atom+xml; charset=utf-8", headers=CACHE)
