"""RFC 7591 dynamic client registration: the use case behind the ``registration_endpoint``.

Governed by ``AGENTAUTH_REGISTRATION`` like quickstart: ``open`` registers anyone, ``token`` needs the initial
access token (section 3: "an OAuth 2.0 access token" - here ``AGENTAUTH_REGISTRATION_TOKEN``, sent as
``Authorization: Bearer``), ``closed`` refuses. The response (section 3.2.1) carries ``client_id``,
``client_id_issued_at``, every registered metadata member and, for a ``client_secret_*`` client, the secret -
shown this once, stored as its keyed hash (``issuer/secrets.py``) - with ``client_secret_expires_at`` 0 (never).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from agentauth.errors import AccessDenied, InvalidToken
from agentauth.issuer import audit
from agentauth.issuer.client_metadata import SECRET_METHODS, parse_client_metadata
from agentauth.issuer.context import RequestContext
from agentauth.issuer.core import IssuerCore, new_id
from agentauth.storage import client_statements as sql
from agentauth.storage.models import AuditEventRow
from agentauth.storage.ports import Insert, WritePlan

CLIENT_ID_PREFIX = "cli"
CLIENT_SECRET_PREFIX = "cs_"


def new_client_secret() -> str:
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)


class ClientRegistration:
    def __init__(self, core: IssuerCore) -> None:
        self.core = core

    def check_allowed(self, initial_access_token: str | None) -> None:
        """The ``AGENTAUTH_REGISTRATION`` mode, as quickstart applies it; ``token`` mode's bearer is the
        registration token (RFC 7591 section 3: a missing or bad one is RFC 6750's ``invalid_token``)."""
        mode = self.core.settings.registration
        if mode == "closed":
            raise AccessDenied("client registration is closed on this server")
        if mode == "token":
            expected = self.core.settings.registration_token
            if initial_access_token is None:
                raise InvalidToken("client registration requires an initial access token (Authorization: Bearer)")
            if expected is None or not hmac.compare_digest(
                initial_access_token.encode(), expected.get_secret_value().encode()
            ):
                raise InvalidToken("the initial access token is not valid")

    async def register(
        self, body: Mapping[str, Any], initial_access_token: str | None, ctx: RequestContext
    ) -> dict[str, Any]:
        """Register the client ``body`` describes; the RFC 7591 section 3.2.1 response."""
        self.check_allowed(initial_access_token)
        metadata = parse_client_metadata(body)
        now = self.core.clock()
        client_id = new_id(CLIENT_ID_PREFIX)
        secret = new_client_secret() if metadata.token_endpoint_auth_method in SECRET_METHODS else None
        row = {
            "client_id": client_id,
            "secret_hash": self.core.hasher.hash(secret) if secret is not None else None,
            "client_name": metadata.client_name,
            "logo_uri": metadata.logo_uri,
            "redirect_uris": list(metadata.redirect_uris),
            "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
            "grant_types": list(metadata.grant_types),
            "scope": metadata.scope,
            "document": metadata.document,
            "created_at": now,
        }
        event = audit.event(
            ctx, now, action="client.registered", tenant_id=None, actor=None, target_type="oauth_client",
            target_id=client_id, details={"token_endpoint_auth_method": metadata.token_endpoint_auth_method},
        )  # fmt: skip
        await self.core.ports.writes.run(
            WritePlan((Insert.of(sql.CLIENTS, row), Insert.of(AuditEventRow.__table__, event)))
        )
        response: dict[str, Any] = {"client_id": client_id, "client_id_issued_at": int(now.timestamp())}
        if secret is not None:
            response |= {"client_secret": secret, "client_secret_expires_at": 0}
        return response | metadata.document
