"""``/api/v1/status-lists/{id}``: the signed Bitstring Status List credential (public, cacheable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from agentauth.api.deps import ServicesDep

router = APIRouter(prefix="/api/v1/status-lists", tags=["status"])


@router.get(
    "/{list_id}",
    summary="BitstringStatusListCredential (JWT, application/vc+jwt)",
    responses={200: {"content": {"application/vc+jwt": {}}}, 304: {"description": "Not modified"}, 404: {}},
)
async def get_status_list(
    list_id: Annotated[int, Path(ge=1, le=2**31 - 1)], request: Request, services: ServicesDep
) -> Response:
    published = await services.status.published(list_id)
    headers = {
        "Cache-Control": f"public, max-age={services.settings.status_list_ttl_seconds}",
        "ETag": published.etag,
    }
    if request.headers.get("if-none-match") == published.etag:
        return Response(status_code=304, headers=headers)
    return Response(published.jwt, media_type="application/vc+jwt", headers=headers)
