"""The grant registry: which ``grant_type`` values the token endpoint answers, and with which handler.

The token endpoint dispatches through it (RFC 6749 section 5.2: any other value is ``unsupported_grant_type``);
the metadata's ``grant_types_supported`` (RFC 8414 section 2) and the endpoint's OpenAPI form are read from it.
"""

from __future__ import annotations

from collections.abc import Iterator

from agentauth.issuer.grants.base import Grant, GrantServices, Parameter


class GrantRegistry:
    def __init__(self, *grants: type[Grant]) -> None:
        self._grants: dict[str, type[Grant]] = {}
        for grant in grants:
            self.register(grant)

    def register(self, grant: type[Grant]) -> None:
        grant_type = getattr(grant, "grant_type", None)
        if not isinstance(grant_type, str) or not grant_type:
            raise TypeError(f"{grant.__name__} names no grant_type")
        if grant_type in self._grants:
            raise ValueError(f"grant_type {grant_type!r} is registered twice")
        names = [p.name for p in grant.parameters]
        if "grant_type" in names or len(set(names)) != len(names):
            raise ValueError(f"{grant.__name__} declares grant_type or a parameter twice")
        self._grants[grant_type] = grant

    def __iter__(self) -> Iterator[type[Grant]]:
        return iter(self._grants.values())

    @property
    def grant_types(self) -> tuple[str, ...]:
        """In registration order."""
        return tuple(self._grants)

    @property
    def response_types(self) -> tuple[str, ...]:
        """The ``response_type`` values of the authorization endpoint, from the grants that redeem them."""
        return tuple(dict.fromkeys(t for grant in self._grants.values() for t in grant.response_types))

    def parameters(self) -> dict[str, list[tuple[str, Parameter]]]:
        """Every parameter name any grant reads, in first-seen order, with each grant's use of it."""
        union: dict[str, list[tuple[str, Parameter]]] = {}
        for grant_type, grant in self._grants.items():
            for parameter in grant.parameters:
                union.setdefault(parameter.name, []).append((grant_type, parameter))
        return union

    def bind(self, services: GrantServices) -> dict[str, Grant]:
        """One handler per grant type, built with ``services``: the token endpoint's dispatch table."""
        return {grant_type: grant(services) for grant_type, grant in self._grants.items()}
