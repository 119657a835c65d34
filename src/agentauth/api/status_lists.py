"""``/api/v1/status-lists/{id}``: the signed Bitstring Status List credential (public, cacheable), and
``/api/v1/status-lists/{id}/suspension``, its twin of purpose suspension (the same indexes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from agentauth.api.deps import ServicesDep
from agentauth.issuer.status import PublishedList

router = APIRouter(prefix="/api/v1/status-lists", tags=["status"])


def _served(published: PublishedList, request: Request, ttl: int) -> Response:
    headers = {"Cache-Control": f"public, max-age={ttl}", "ETag": published.etag}
    if request.headers.get("if-none-match") == published.etag:
        return Response(status_code=304, headers=headers)
    return Response(published.jwt, media_type="application/vc+jwt", headers=headers)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/vc+jwt": {}}},
    304: {"description": "Not modified"},
    404: {},
}


@router.get("/{list_id}", summary="BitstringStatusListCredential (JWT, application/vc+jwt)", responses=_RESPONSES)
async def get_status_list(
    list_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, services: ServicesDep
) -> Response:
    """The revocation list: a set bit is a revoked credential (for good)."""
    published = await services.status.published(list_id)
    return _served(published, request, services.settings.status_list_ttl_seconds)


@router.get(
    "/{list_id}/suspension",
    summary="The list's suspension twin (BitstringStatusListCredential, statusPurpose suspension)",
    responses=_RESPONSES,
)
async def get_suspension_list(
    list_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, services: ServicesDep
) -> Response:
    """A set bit is a credential of a suspended agent (or of a delegation of one): invalid until it is resumed."""
    published = await services.status.published(list_id, "suspension")
    return _served(published, request, services.settings.status_list_ttl_seconds)
