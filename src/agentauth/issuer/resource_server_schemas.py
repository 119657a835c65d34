"""Request and response models of resource servers (RFC 8707 resource identifiers a tenant registers), shared by
REST and MCP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agentauth.issuer.schemas import Description, Name, Strict

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
ScopeName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21\x23-\x5B\x5D-\x7E]+$")]
ResourceKind = Literal["rest", "mcp", "cli"]
Access = Literal["own_tenant", "any_agent", "tenants"]


class ResourceScope(Strict):
    """A scope a resource server defines."""

    name: ScopeName
    description: Description = ""


class ResourceServerChange(Strict):
    """What can change of a registered server (its identifier cannot: tokens carry it as aud)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Files", "kind": "mcp", "scopes": [{"name": "files.read"}]}]}
    )

    name: Name
    kind: ResourceKind = "rest"
    scopes: list[ResourceScope] = Field(default_factory=list, max_length=100, description="The scopes it defines.")
    access: Access = Field(
        "own_tenant",
        description="Who may obtain tokens for it: agents of your tenant (own_tenant), any agent (any_agent), or "
        "your tenant and those listed in allowed_tenants (tenants).",
    )
    allowed_tenants: list[Annotated[str, StringConstraints(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=100, description="Tenant ids (their root agents' ids), with access=tenants."
    )


class ResourceServerIn(ResourceServerChange):
    """An API or MCP server tokens can be issued for (RFC 8707 resource)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "identifier": "https://files.example.com/mcp",
                    "name": "Files",
                    "kind": "mcp",
                    "scopes": [{"name": "files.read", "description": "Read files"}],
                }
            ]
        }
    )

    identifier: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="The RFC 8707 resource identifier: an absolute URI without fragment, e.g. https://mcp.example.com"
        "/mcp. Tokens for it carry it as aud."
    )


class ResourceServerOut(ResourceServerIn):
    """A registered resource server."""

    id: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime


class ResourceServerPage(BaseModel):
    """The tenant's resource servers."""

    items: list[ResourceServerOut]
    total: int
