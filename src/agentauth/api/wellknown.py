"""Discovery documents: JWKS (RFC 7517 section 5) and the issuer DID document (did:web)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agentauth.bootstrap import Services

router = APIRouter()

_CACHE = "public, max-age=300"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


@router.get("/health", tags=["meta"], summary="Liveness: the process is up and its key ring is loaded")
async def health(request: Request) -> dict[str, Any]:
    svc = services(request)
    return {"status": "ok", "issuer": svc.settings.issuer_url, "active_kid": svc.keys.ring.active.kid}


@router.get("/.well-known/jwks.json", tags=["discovery"], summary="Issuer public keys (next, active, retired)")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(services(request).jwks(), headers={"Cache-Control": _CACHE})


@router.get("/.well-known/did.json", tags=["discovery"], summary="Issuer DID document (did:web)")
async def did_document(request: Request) -> JSONResponse:
    return JSONResponse(
        services(request).did_document(),
        media_type="application/did+json",
        headers={"Cache-Control": _CACHE},
    )
