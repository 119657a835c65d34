"""RFC 9396 rich authorization requests: the ``authorization_details`` an approval asks for and a token carries,
and the check a resource server makes of one request against them.

Shared by the server (which validates what an agent asks for) and the verifier-only install (a resource server's
check), so both read the same rules:

* ``authorization_details`` is a non-empty JSON array of objects, each with a string ``type`` (section 2); at most
  ``MAX_ENTRIES`` of them and ``MAX_BYTES`` of JSON, nesting at most ``MAX_DEPTH`` deep, strings at most
  ``MAX_STRING`` characters (an approval is shown to a person, whole).
* ``permits(approved, requested)`` holds when one approved entry of the requested ``type`` covers every field of
  the request: ``amount`` (and any name in ``at_most``) as a decimal no greater than the approved one - within
  the same ``currency`` when either names one -; arrays (``actions``, ``locations``, ``datatypes``, ...) as a
  subset; every other field equal. A field the approval does not name is not approved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_ENTRIES = 8
MAX_BYTES = 8192
MAX_DEPTH = 4
MAX_STRING = 512
TYPE_MAX = 100
LIMITS = ("amount",)  # the fields a request may ask less of than approved


class AuthorizationDetailsError(ValueError):
    """``authorization_details`` malformed (``parse``) or not covered by an approval (``require``)."""


def parse(raw: str | Sequence[Any], *, types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The entries of ``raw`` (the JSON text of the parameter, or the decoded array), checked as above; with
    ``types``, every entry's ``type`` must be one of them (RFC 9396 section 5: unknown types are refused)."""
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_BYTES:
            raise AuthorizationDetailsError(f"authorization_details is longer than {MAX_BYTES} bytes")
        try:
            value = json.loads(raw, parse_constant=_no_constant)
        except ValueError as exc:
            raise AuthorizationDetailsError("authorization_details is not JSON") from exc
    else:
        value = raw
    if not isinstance(value, list) or not value:
        raise AuthorizationDetailsError("authorization_details must be a non-empty JSON array of objects")
    if len(value) > MAX_ENTRIES:
        raise AuthorizationDetailsError(f"authorization_details holds at most {MAX_ENTRIES} entries")
    if len(json.dumps(value).encode()) > MAX_BYTES:
        raise AuthorizationDetailsError(f"authorization_details is longer than {MAX_BYTES} bytes")
    known = frozenset(types) if types is not None else None
    entries = []
    for number, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise AuthorizationDetailsError(f"authorization_details[{number}] is not an object")
        kind = entry.get("type")
        if not isinstance(kind, str) or not kind or len(kind) > TYPE_MAX:
            raise AuthorizationDetailsError(f"authorization_details[{number}] has no string type")
        if known is not None and kind not in known:
            raise AuthorizationDetailsError(f"authorization_details[{number}]: unknown type {kind[:100]!r}")
        _check_value(entry, f"authorization_details[{number}]", 1)
        entries.append(entry)
    return entries


def _no_constant(name: str) -> None:
    raise AuthorizationDetailsError(f"authorization_details holds {name}, which is not JSON")


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AuthorizationDetailsError(f"{where} nests deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise AuthorizationDetailsError(f"{where} is longer than {MAX_STRING} characters")
        if not value.isprintable():
            raise AuthorizationDetailsError(f"{where} holds control characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, f"{where} key", depth)
            _check_value(item, f"{where}.{key}"[:200], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise AuthorizationDetailsError(f"{where} is not a finite number")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _covers(approved: Any, requested: Any, name: str, at_most: frozenset[str]) -> bool:
    if name in at_most:
        have, want = _decimal(approved), _decimal(requested)
        return have is not None and want is not None and want <= have
    if isinstance(requested, list):
        return isinstance(approved, list) and all(item in approved for item in requested)
    if isinstance(requested, dict):
        return isinstance(approved, dict) and all(
            key in approved and _covers(approved[key], item, key, at_most) for key, item in requested.items()
        )
    return type(approved) is type(requested) and approved == requested


def _entry_permits(entry: Mapping[str, Any], requested: Mapping[str, Any], at_most: frozenset[str]) -> bool:
    if entry.get("type") != requested.get("type"):
        return False
    if ("currency" in entry or "currency" in requested) and entry.get("currency") != requested.get("currency"):
        return False
    return all(key in entry and _covers(entry[key], value, key, at_most) for key, value in requested.items())


def permits(approved: object, requested: Mapping[str, Any], *, at_most: Iterable[str] = LIMITS) -> bool:
    """Whether the approved ``authorization_details`` (a token's claim) cover the ``requested`` entry."""
    if not isinstance(approved, list) or not isinstance(requested.get("type"), str):
        return False
    limits = frozenset(at_most)
    return any(isinstance(e, dict) and _entry_permits(e, requested, limits) for e in approved)


def require(claims: Mapping[str, Any], requested: Mapping[str, Any], *, at_most: Iterable[str] = LIMITS) -> None:
    """Raise ``AuthorizationDetailsError`` unless the verified token ``claims`` carry ``authorization_details``
    covering ``requested`` (``permits``): a resource server's check before it acts."""
    approved = claims.get("authorization_details")
    if approved is None:
        raise AuthorizationDetailsError("the token carries no authorization_details: it approves no such action")
    if not permits(approved, requested, at_most=at_most):
        raise AuthorizationDetailsError(f"the token's authorization_details do not cover this {requested.get('type')}")
