"""What the service's own tools and its site's agent use: the release and primary-moved hooks
(admin token), the metrics, and the API's documentation. On the admin listener when there is
one (FIREBREAK_ADMIN_BIND), where the public door does not forward."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from firebreak.claims.routes.deps import Admin, Svc

log = logging.getLogger("firebreak.claims")
router = APIRouter(include_in_schema=False)
docs = APIRouter(include_in_schema=False)  # only on a separate admin listener: the public app serves its own


@router.post("/admin/release")
async def release(request: Request, svc: Svc, _: Admin) -> JSONResponse:
    # Pushed by the site's agent from the release store (a copy in every site).
    try:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("version"), str):
            raise ValueError("a release needs a version")
    except ClientDisconnect:
        # The agent gave up first (its push has a 1 s deadline; it pushes again next cycle):
        # nobody is left to answer, and this is no error of the app's.
        return JSONResponse({"error": "the client went away"}, status_code=400)
    except ValueError as e:
        return JSONResponse({"error": f"invalid release: {e}"}, status_code=422)
    svc.release.clear()
    svc.release.update({k: body[k] for k in ("version", "notes", "created") if k in body})
    return JSONResponse({"ok": True, "site": svc.settings.site, "version": body["version"]})


@router.post("/admin/primary-moved")
async def primary_moved(svc: Svc, _: Admin) -> JSONResponse:
    # Pushed by the site's agent when writes leave the server they went to (store.hang_up).
    svc.store.hang_up()
    log.info("the site's agent says writes moved: pooled connections to the primary made before now are dropped")
    return JSONResponse({"ok": True, "site": svc.settings.site})


@router.get("/metrics")
async def prometheus(svc: Svc) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(svc.metrics.registry).decode())


@docs.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.public.openapi())


@docs.get("/docs")
async def swagger() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Firebreak claims")
