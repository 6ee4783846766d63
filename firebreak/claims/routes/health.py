"""Liveness, readiness and the release running here: for doors, agents and people alike."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from firebreak.claims.routes.deps import Svc

router = APIRouter()


@router.get("/healthz")
async def healthz(svc: Svc) -> dict:
    return {"status": "alive", "site": svc.settings.site, "version": svc.release.get("version")}


@router.get("/version")
async def version(svc: Svc) -> dict:
    return {"site": svc.settings.site, **svc.release}


@router.get("/readyz")
async def readyz(svc: Svc) -> JSONResponse:
    ok = await svc.store.can_write()
    return JSONResponse({"ready": ok, "site": svc.settings.site}, status_code=200 if ok else 503)
