"""Reading token-endpoint style bodies: form-encoded (RFC 6749 appendix B) or JSON, parsed directly.

FastAPI's ``Form()`` costs more per request than the Ed25519 signature; and RFC 6749 section 3.2 says
"request and response parameters MUST NOT be included more than once", which a plain parser enforces.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from fastapi import Request

from agentauth.errors import InvalidClient, InvalidRequest

# RFC 8707 section 2: "Multiple resource parameters MAY be used"; the only parameter that may repeat, read as a
# list (``issuer/audience.py: resource_param``).
REPEATABLE = frozenset({"resource"})


async def read_params(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if content_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidRequest("body is not valid application/x-www-form-urlencoded") from exc
        params: dict[str, Any] = {}
        for name, value in pairs:
            if name in REPEATABLE:
                params.setdefault(name, []).append(value)
                continue
            if name in params:
                raise InvalidRequest(f"parameter {name} is included more than once")
            params[name] = value
    elif content_type == "application/json":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("body is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise InvalidRequest("JSON body must be an object")
        params = parsed
    else:
        raise InvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
    _basic_auth(request, params)
    return params


def _basic_auth(request: Request, params: dict[str, Any]) -> None:
    """RFC 6749 section 2.3.1: client_id/client_secret may come as HTTP Basic instead of the body."""
    header = request.headers.get("authorization")
    if not header or not header.lower().startswith("basic "):
        return
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        client_id, _, secret = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed HTTP Basic credentials") from exc
    if "client_secret" in params:
        # Section 2.3.1: "The client MUST NOT use more than one authentication method in each request."
        raise InvalidRequest("use either HTTP Basic or client_secret in the body, not both")
    # Section 2.3.1: both are form-urlencoded before Basic encoding, so '+' means a space.
    params["client_id"] = unquote_plus(client_id)
    params["client_secret"] = unquote_plus(secret)
