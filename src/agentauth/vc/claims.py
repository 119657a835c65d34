"""Claim checks of the offline verifier that are not the verifier's state: NumericDates (RFC 7519 section 2), the
VC container's ``@context`` and ``type`` (VCDM 1.1 section 4.1), and the message for a stale status list. Hot path:
see ``verifier``'s note on indexing and ``type(x) is T``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentauth.vc import errors as e
from agentauth.vc.credentials import VC_CONTEXT_V1
from agentauth.vc.errors import VerificationError
from agentauth.vc.status import status_ttl_seconds

# The exact types a NumericDate has once parsed from JSON; bool, an int subclass, is not one.
NUMERIC_DATE = (int, float)


def number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise VerificationError(e.MISSING_CLAIM, f"claim {name!r} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VerificationError(e.MALFORMED, f"claim {name!r} must be a NumericDate")
    return float(value)


def stale_detail(url: str, claims: Mapping[str, Any], subject: Mapping[str, Any], grace: float, now: datetime) -> str:
    issued = claims.get("iat", claims.get("nbf"))
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        return f"status list {url} has no iat: its age is unknown"
    return (
        f"status list {url} was issued {now.timestamp() - issued:.0f}s ago; its ttl is "
        f"{status_ttl_seconds(subject):.0f}s and at most {grace:.0f}s more staleness is accepted"
    )


def vc_types(claims: Mapping[str, Any], container: str) -> list[Any]:
    try:
        body = claims[container]
    except KeyError:
        body = None
    if type(body) is not dict and not isinstance(body, dict):
        raise VerificationError(e.WRONG_CREDENTIAL_TYPE, f"no {container!r} claim")
    try:
        context, types = body["@context"], body["type"]
    except KeyError:
        context, types = body.get("@context"), body.get("type")
    # VCDM 1.1 section 4.1: the first @context item MUST be https://www.w3.org/2018/credentials/v1.
    if (type(context) is not list and not isinstance(context, list)) or not context or context[0] != VC_CONTEXT_V1:
        raise VerificationError(e.MALFORMED, f"{container}.@context must start with {VC_CONTEXT_V1}")
    return types if type(types) is list or isinstance(types, list) else [types]
