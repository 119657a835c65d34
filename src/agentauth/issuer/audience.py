"""Audience-bound tokens: the RFC 8707 ``resource`` parameter of every grant, resolved to the token's ``aud`` and
the scopes it may carry.

* No ``resource`` (or one naming AgentAuth's own API: the issuer URL, or the URL of its REST API or MCP
  endpoint): ``aud`` = the issuer URL, scopes from AgentAuth's catalogue (``issuer/scopes.py``) within what the
  caller holds.
* Resources a tenant registered (``issuer/resource_servers.py``): ``aud`` = the resource identifier (a list when
  several are requested), scopes are those the servers define. RFC 8707 section 2: a resource that is "invalid,
  missing, unknown, or malformed" - and one the caller's tenant may not obtain tokens for, which is told apart
  from an unknown one by nobody - is ``invalid_target``; a scope no requested server defines is ``invalid_scope``.
  AgentAuth's own API cannot share a token with another resource (its routes accept only ``aud`` = the issuer).

The token path reads a server at most once per ``CACHE_SECONDS`` per process (found or not): a change made through
another replica applies within that time, one made here at once (``forget``). Grants call ``resolve``; the
authorization-code grant calls it too: ``await services.audience.resolve(tenant_id, resources, scope, held)``.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agentauth.errors import InvalidRequest, InvalidScope, InvalidTarget
from agentauth.issuer.scopes import narrow, parse_scope
from agentauth.storage import resource_servers as repo
from agentauth.storage.ports import Reads
from agentauth.storage.records import ResourceServer

CACHE_SECONDS = 5.0
CACHE_ENTRIES = 10_000
MAX_RESOURCES = 10
MAX_IDENTIFIER_LENGTH = 500
# RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
NARROW_ONLY = "a refresh may only narrow the resources of the original grant (RFC 8707 section 2.2)"
UNKNOWN_TARGET = "the requested resource is unknown or you may not obtain tokens for it"


def check_identifier(value: str) -> str:
    """``value`` if it is a resource identifier: RFC 8707 section 2, "an absolute URI, as specified by Section 4.3
    of [RFC3986]"; it "MUST NOT include a fragment component". http(s) URIs need a host. Else ``invalid_target``."""
    if not value or len(value) > MAX_IDENTIFIER_LENGTH or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidTarget("the resource must be an absolute URI without spaces (RFC 8707 section 2)")
    if "#" in value:
        raise InvalidTarget("the resource must not include a fragment (RFC 8707 section 2)")
    scheme, sep, _ = value.partition(":")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise InvalidTarget("the resource must be an absolute URI (RFC 8707 section 2)")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise InvalidTarget("the resource is not a valid URI") from exc
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        raise InvalidTarget("an http(s) resource needs a host")
    return value


def resource_param(params: dict[str, Any]) -> tuple[str, ...]:
    """The ``resource`` parameters of a token request (form: repeated; JSON: a string or a list), in order, without
    duplicates; () when absent. Each is checked (``check_identifier``)."""
    value = params.get("resource")
    if value is None or value in ("", []):
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise InvalidRequest("resource must be a string or a list of strings")
    if len(items) > MAX_RESOURCES:
        raise InvalidTarget(f"at most {MAX_RESOURCES} resources per request")
    return tuple(dict.fromkeys(check_identifier(v) for v in items if v != ""))


@dataclass(frozen=True, slots=True)
class Target:
    """What a token is for: ``resources`` None = AgentAuth's own API (``aud`` = the issuer URL)."""

    resources: tuple[str, ...] | None
    scopes: tuple[str, ...]

    def audience(self, issuer_url: str) -> str | list[str]:
        """The ``aud`` claim (RFC 9068 section 3: the resource indicator; one string for one resource)."""
        if self.resources is None:
            return issuer_url
        return self.resources[0] if len(self.resources) == 1 else list(self.resources)


class AudienceResolver:
    def __init__(self, reads: Reads, issuer_url: str, own: Iterable[str] = ()) -> None:
        """``own``: the identifiers of AgentAuth's own API besides the issuer URL (bootstrap names them: the REST API
        and the MCP endpoint under it)."""
        self.reads = reads
        self.issuer_url = issuer_url.rstrip("/")
        self.own = frozenset({self.issuer_url, f"{self.issuer_url}/", *own})
        self._cache: OrderedDict[str, tuple[float, ResourceServer | None]] = OrderedDict()

    def forget(self, identifier: str) -> None:
        """A server registered, changed or deleted here: the next token request reads it again."""
        self._cache.pop(identifier, None)

    async def servers(self, identifiers: Sequence[str]) -> dict[str, ResourceServer | None]:
        now = time.monotonic()
        found: dict[str, ResourceServer | None] = {}
        missing = []
        for identifier in identifiers:
            hit = self._cache.get(identifier)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                found[identifier] = hit[1]
            else:
                missing.append(identifier)
        if missing:
            results = await self.reads.fetch(*(repo.by_identifier(i) for i in missing))
            for identifier, rows in zip(missing, results, strict=True):
                server = repo.records(rows)[0] if rows else None
                found[identifier] = server
                self._cache[identifier] = (now, server)
                self._cache.move_to_end(identifier)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return found

    async def resolve(
        self,
        tenant_id: str,
        resources: Sequence[str],
        scope: str | None,
        held: Iterable[str],
        *,
        granted: Sequence[str] | None = None,
        within: Sequence[str] | None = None,
    ) -> Target:
        """The target of a token request by an agent of ``tenant_id`` for ``resources`` (``resource_param``) with
        the ``scope`` parameter; ``held``: the AgentAuth scopes the caller may hold (its API key's, its agent's,
        the delegation's). A refresh passes its family's ``within`` (None: AgentAuth's own API) and ``granted``
        scopes: it may only narrow them. Raises ``invalid_target`` / ``invalid_scope``; reads at most the
        servers not in the cache."""
        resources = tuple(resources)
        own = [r for r in resources if r in self.own]
        if granted is not None:  # a refresh: the family's resources (None: AgentAuth's own API), or fewer
            if within is None:
                if len(own) != len(resources):
                    raise InvalidTarget(NARROW_ONLY)
                return Target(None, narrow(parse_scope(scope), granted))
            requested = resources or tuple(within)
            if not set(requested) <= set(within):
                raise InvalidTarget(NARROW_ONLY)
        else:
            if len(own) == len(resources):
                return Target(None, narrow(parse_scope(scope), held))
            if own:
                raise InvalidTarget("a token for AgentAuth's own API cannot be for another resource too")
            requested = resources
        servers = await self.servers(requested)
        defined: dict[str, None] = {}
        for identifier in requested:
            server = servers.get(identifier)
            if server is None or not server.admits(tenant_id):
                raise InvalidTarget(UNKNOWN_TARGET, debug=f"resource {identifier!r} unknown or not permitted")
            defined.update(dict.fromkeys(name for name, _ in server.scopes))
        asked = tuple(dict.fromkeys(scope.split())) if scope else None
        if asked is not None:
            undefined = sorted(set(asked) - set(defined))
            if undefined:
                raise InvalidScope(f"scope not defined by the requested resource(s): {', '.join(undefined)}")
        if granted is not None:
            return Target(requested, narrow(asked, [s for s in granted if s in defined]))
        return Target(requested, asked if asked is not None else tuple(defined))
