"""``/api/v1/webhooks``: a tenant's webhooks - signed event delivery (Standard Webhooks) and its delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, Response

from agentauth import paths
from agentauth.api.agents import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from agentauth.api.deps import ContextDep, PrincipalDep, ServicesDep, runs
from agentauth.issuer.webhook_schemas import (
    WebhookChange,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookOut,
    WebhookPage,
)

router = APIRouter(prefix=paths.WEBHOOKS, tags=["webhooks"])
WebhookId = Annotated[str, Path(min_length=1, max_length=64, description="Webhook id (wh_...)")]
DeliveryId = Annotated[int, Path(ge=1, le=2**62, description="Delivery id")]


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook (tenant root only; the signing secret is shown once)",
    openapi_extra=runs("webhooks.create"),
    responses={409: {"description": "the tenant has its maximum of webhooks"}},
)
async def create_webhook(
    body: WebhookIn, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> JSONResponse:
    created = await services.webhooks.create(principal, body, ctx)
    return JSONResponse(created.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("", response_model=WebhookPage, summary="Your tenant's webhooks", openapi_extra=runs("webhooks.list"))
async def list_webhooks(
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
    offset: Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX)] = 0,
) -> WebhookPage:
    return await services.webhooks.list(principal, ctx, limit, offset)


@router.get("/{webhook_id}", response_model=WebhookOut, summary="Get a webhook", openapi_extra=runs("webhooks.get"))
async def get_webhook(
    webhook_id: WebhookId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> WebhookOut:
    return await services.webhooks.get(principal, webhook_id, ctx)


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    summary="Change a webhook's URL, events, description or active flag (tenant root only)",
    openapi_extra=runs("webhooks.update"),
)
async def update_webhook(
    webhook_id: WebhookId, body: WebhookChange, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> WebhookOut:
    return await services.webhooks.update(principal, webhook_id, body, ctx)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook (tenant root only)",
    openapi_extra=runs("webhooks.delete"),
)
async def delete_webhook(
    webhook_id: WebhookId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> Response:
    await services.webhooks.delete(principal, webhook_id, ctx)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="A webhook's deliveries, newest first, with every attempt",
    openapi_extra=runs("webhooks.deliveries"),
)
async def list_webhook_deliveries(
    webhook_id: WebhookId,
    principal: PrincipalDep,
    services: ServicesDep,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="next_before of the previous page")] = None,
) -> WebhookDeliveryPage:
    return await services.webhooks.deliveries(principal, webhook_id, ctx, limit, before)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    response_model=WebhookDeliveryOut,
    summary="Send a delivery again now (tenant root only)",
    openapi_extra=runs("webhooks.redeliver"),
    responses={409: {"description": "the delivery is being attempted right now"}},
)
async def retry_webhook_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, principal: PrincipalDep, services: ServicesDep, ctx: ContextDep
) -> WebhookDeliveryOut:
    return await services.webhooks.redeliver(principal, webhook_id, delivery_id, ctx)
