"""The token endpoint's grants, one module each, registered below with one line each.

A new grant: a module here with a ``Grant`` subclass (``base.py``), imported and registered in ``GRANTS``. The
token endpoint dispatches through ``GRANTS``; the metadata's ``grant_types_supported`` and the endpoint's
OpenAPI form are generated from it, in this order.
"""

from __future__ import annotations

from agentauth.issuer.grants import (
    authorization_code,
    ciba,
    client_credentials,
    jwt_bearer,
    refresh_token,
    token_exchange,
)
from agentauth.issuer.grants.base import Grant, GrantServices, Parameter
from agentauth.issuer.grants.registry import GrantRegistry

GRANTS = GrantRegistry(
    client_credentials.ClientCredentialsGrant,
    refresh_token.RefreshTokenGrant,
    jwt_bearer.JwtBearerGrant,
    token_exchange.TokenExchangeGrant,
    authorization_code.AuthorizationCodeGrant,
    ciba.CibaGrant,
)

__all__ = ["GRANTS", "Grant", "GrantRegistry", "GrantServices", "Parameter"]
