"""The tools of a tenant's webhooks: create (its signing secret is in the result once), list, get, update,
delete, and the delivery log with a retry of a failed delivery - each one ``Operation``, as in ``policies.py``.
Changes are the tenant root's alone."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from agentauth.bootstrap import Services
from agentauth.issuer.context import Principal, RequestContext
from agentauth.issuer.webhook_schemas import (
    EVENTS_HELP,
    WebhookChange,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookOut,
    WebhookPage,
)
from agentauth.mcp.backend import Done, Operation
from agentauth.mcp.base import call
from agentauth.mcp.params import AccessToken, Id, Limit, Offset, read_only, request_model, writes
from agentauth.mcp.registry import tool

WEBHOOK_NOT_FOUND = {"not_found": "No such webhook in your tenant: list_webhooks shows the ids you can use."}
WebhookId = Annotated[Id, Field(description="The webhook's id (wh_...).")]
Url = Annotated[
    str, Field(min_length=1, max_length=2048, description="An https URL whose host resolves to public addresses.")
]
Events = Annotated[list[str] | None, Field(description=EVENTS_HELP)]
Description = Annotated[str | None, Field(max_length=200, description="What it is for.")]


class WebhookDeleted(BaseModel):
    success: bool = Field(description="True: nothing more is sent to it.")
    webhook_id: str


@tool(order=36, hints=writes("Create a webhook"), operation="webhooks.create")
async def create_webhook(
    url: Url,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    events: Events = None,
    description: Description = None,
) -> WebhookCreated:
    """Send your tenant's events to a URL, signed per Standard Webhooks (tenant root only, needs webhooks.write).
    SAVE the signing secret (whsec_...) of the result for the receiver: it is shown this once, and it is a
    secret - do not repeat it in your answer."""
    body = request_model(WebhookIn, url=url, events=events or ["*"], description=description)
    op = Operation(WebhookCreated, lambda s, p, rc: s.webhooks.create(p, body, rc), body=body)
    return await call(ctx, access_token, op)


@tool(order=37, hints=read_only("List webhooks"), operation="webhooks.list")
async def list_webhooks(
    ctx: Context[Any, Any], access_token: AccessToken = None, limit: Limit = 50, offset: Offset = 0
) -> WebhookPage:
    """List your tenant's webhooks (URL, events, active), plus total. Secrets are never shown again."""
    op = Operation(
        WebhookPage, lambda s, p, rc: s.webhooks.list(p, rc, limit, offset), query={"limit": limit, "offset": offset}
    )
    return await call(ctx, access_token, op)


@tool(order=38, hints=read_only("Get a webhook"), operation="webhooks.get", next_steps=WEBHOOK_NOT_FOUND)
async def get_webhook(webhook_id: WebhookId, ctx: Context[Any, Any], access_token: AccessToken = None) -> WebhookOut:
    """Get one webhook of your tenant."""
    op = Operation(WebhookOut, lambda s, p, rc: s.webhooks.get(p, webhook_id, rc), ids={"webhook_id": webhook_id})
    return await call(ctx, access_token, op)


@tool(
    order=39,
    hints=writes("Update a webhook", idempotent=True),
    operation="webhooks.update",
    next_steps=WEBHOOK_NOT_FOUND,
)
async def update_webhook(
    webhook_id: WebhookId,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    url: Annotated[Url | None, Field(description="A new URL.")] = None,
    events: Events = None,
    description: Description = None,
    active: Annotated[bool | None, Field(description="false pauses deliveries (they wait); true resumes.")] = None,
) -> WebhookOut:
    """Change a webhook's URL, events, description or active flag (tenant root only); what you leave out stays."""
    given = {"url": url, "events": events, "description": description, "active": active}
    body = request_model(WebhookChange, **{k: v for k, v in given.items() if v is not None})
    op = Operation(
        WebhookOut,
        lambda s, p, rc: s.webhooks.update(p, webhook_id, body, rc),
        ids={"webhook_id": webhook_id},
        body=body,
    )
    return await call(ctx, access_token, op)


@tool(
    order=40,
    hints=writes("Delete a webhook", destructive=True),
    operation="webhooks.delete",
    next_steps=WEBHOOK_NOT_FOUND,
)
async def delete_webhook(
    webhook_id: WebhookId, ctx: Context[Any, Any], access_token: AccessToken = None
) -> WebhookDeleted:
    """Delete a webhook of your tenant (tenant root only): what it still owed is not sent."""

    async def run(s: Services, p: Principal, rc: RequestContext) -> Done:
        await s.webhooks.delete(p, webhook_id, rc)
        return Done()

    await call(ctx, access_token, Operation(Done, run, ids={"webhook_id": webhook_id}))
    return WebhookDeleted(success=True, webhook_id=webhook_id)


@tool(
    order=41,
    hints=read_only("List a webhook's deliveries"),
    operation="webhooks.deliveries",
    next_steps=WEBHOOK_NOT_FOUND,
)
async def list_webhook_deliveries(
    webhook_id: WebhookId,
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
    limit: Limit = 50,
    before: Annotated[int | None, Field(ge=1, description="next_before of the previous page.")] = None,
) -> WebhookDeliveryPage:
    """A webhook's deliveries, newest first: status (pending, delivered, failed), attempts and each attempt's
    answer."""
    op = Operation(
        WebhookDeliveryPage,
        lambda s, p, rc: s.webhooks.deliveries(p, webhook_id, rc, limit, before),
        ids={"webhook_id": webhook_id},
        query={"limit": limit, "before": before},
    )
    return await call(ctx, access_token, op)


@tool(
    order=42,
    hints=writes("Retry a webhook delivery"),
    operation="webhooks.redeliver",
    next_steps=WEBHOOK_NOT_FOUND,
)
async def retry_webhook_delivery(
    webhook_id: WebhookId,
    delivery_id: Annotated[int, Field(ge=1, description="The delivery id (list_webhook_deliveries).")],
    ctx: Context[Any, Any],
    access_token: AccessToken = None,
) -> WebhookDeliveryOut:
    """Send a delivery again now - a failed one, or one the receiver lost (tenant root only) - with the same
    webhook-id, so the receiver can dedupe."""
    op = Operation(
        WebhookDeliveryOut,
        lambda s, p, rc: s.webhooks.redeliver(p, webhook_id, delivery_id, rc),
        ids={"webhook_id": webhook_id, "delivery_id": str(delivery_id)},
    )
    return await call(ctx, access_token, op)
