"""``/api/v1/credentials``: API keys - create, list, get, rotate, revoke. Secrets are shown once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, runs
from agentauth.issuer.schemas import ApiKeyCreated, ApiKeyOut, ApiKeyPage, ApiKeyRotated, CreateApiKeyRequest
from agentauth.issuer.secrets import NO_STORE

router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"])
KeyId = Annotated[str, Path(min_length=1, max_length=64, description="Credential id (key_...)")]


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    openapi_extra=runs("credentials.create"),
)
async def create_key(
    body: CreateApiKeyRequest,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> JSONResponse:
    created = await services.api_keys.create(principal, body, ctx)
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers=NO_STORE)


@router.get(
    "",
    response_model=ApiKeyPage,
    summary="List API keys of your subtree (never the secrets)",
    openapi_extra=runs("credentials.list"),
)
async def list_keys(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ApiKeyPage:
    return await services.api_keys.list(principal, agent_id, limit, offset, ctx)


@router.get(
    "/{credential_id}",
    response_model=ApiKeyOut,
    summary="Get an API key's metadata",
    openapi_extra=runs("credentials.get"),
)
async def get_key(credential_id: KeyId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep) -> ApiKeyOut:
    return await services.api_keys.get(principal, credential_id, ctx)


@router.post(
    "/{credential_id}/rotate",
    response_model=ApiKeyRotated,
    summary="Rotate: new key, old key revoked",
    openapi_extra=runs("credentials.rotate"),
)
async def rotate_key(
    credential_id: KeyId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> JSONResponse:
    rotated = await services.api_keys.rotate(principal, credential_id, ctx)
    return JSONResponse(rotated.model_dump(mode="json"), headers=NO_STORE)


@router.post(
    "/{credential_id}/revoke",
    response_model=ApiKeyOut,
    summary="Revoke an API key and its tokens",
    openapi_extra=runs("credentials.revoke"),
)
async def revoke_key(
    credential_id: KeyId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> ApiKeyOut:
    return await services.api_keys.revoke(principal, credential_id, ctx)


@router.delete(
    "/{credential_id}",
    response_model=ApiKeyOut,
    summary="Revoke (same as POST .../revoke)",
    openapi_extra=runs("credentials.revoke"),
)
async def delete_key(
    credential_id: KeyId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
) -> ApiKeyOut:
    return await services.api_keys.revoke(principal, credential_id, ctx)
