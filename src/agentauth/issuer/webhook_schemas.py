"""Request and response models of webhooks (issue 16 item 5), shared by REST, MCP and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentauth.issuer.schemas import Strict
from agentauth.issuer.webhook_events import EVENT_TYPES

EventName = Annotated[str, StringConstraints(min_length=1, max_length=60)]
EVENTS_HELP = (
    'Event types to receive, or ["*"] for every one but the high-volume token.* events, which are sent only '
    "when named. The catalogue: " + ", ".join(sorted(EVENT_TYPES)) + "."
)
WebhookUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
WebhookDescription = Annotated[str, StringConstraints(max_length=200)]


class WebhookIn(Strict):
    """A webhook: where a tenant's events are POSTed, signed per Standard Webhooks."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/agentauth",
                    "events": ["agent.created", "credential.*"],
                    "description": "SIEM",
                }
            ]
        },
    )

    url: WebhookUrl = Field(description="An https URL whose host resolves to public addresses only.")
    events: list[EventName] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100,
                                    description=EVENTS_HELP)  # fmt: skip
    description: WebhookDescription | None = None


class WebhookChange(Strict):
    """What changes of a webhook; what is left out stays. ``active: false`` pauses deliveries (they wait)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    url: WebhookUrl | None = None
    events: list[EventName] | None = Field(None, min_length=1, max_length=100, description=EVENTS_HELP)
    description: WebhookDescription | None = None
    active: bool | None = None


class WebhookOut(BaseModel):
    """A webhook subscription (never its signing secret, except once when it is made)."""

    id: str
    tenant_id: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    """A new webhook with its signing secret - shown this once; receivers verify signatures with it."""

    secret: str = Field(description="The Standard Webhooks signing secret (whsec_...). Store it now.")


class WebhookPage(BaseModel):
    """The tenant's webhooks."""

    items: list[WebhookOut]
    total: int


class WebhookAttemptOut(BaseModel):
    """One attempt of a delivery: when, what the receiver answered (or why there was no answer), how long."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDeliveryOut(BaseModel):
    """One event owed to a webhook, and every attempt to deliver it (``webhook-id`` = ``message_id``)."""

    id: int
    message_id: str
    event_type: str
    status: str = Field(description="pending, delivered or failed.")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[WebhookAttemptOut]


class WebhookDeliveryPage(BaseModel):
    """A page of a webhook's deliveries, newest first."""

    items: list[WebhookDeliveryOut]
    next_before: int | None = Field(description="Pass as before= for the next (older) page; null at the end.")
