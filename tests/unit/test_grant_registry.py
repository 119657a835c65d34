"""The grant registry (issue 13 item 3): one registration per grant, and everything that lists grants - the
token endpoint's OpenAPI form, its summary, the agent configuration's ``grant_types_supported`` - reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentauth.api.auth import token_form, token_summary
from agentauth.issuer import discovery
from agentauth.issuer.context import RequestContext
from agentauth.issuer.grants import GRANTS, Grant, GrantRegistry, Parameter
from agentauth.issuer.schemas import TokenResponse
from agentauth.settings import Settings

FAKE = "urn:example:params:oauth:grant-type:fake"
STANDARD = (
    "client_credentials",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "authorization_code",
    "urn:openid:params:grant-type:ciba",
)


class FakeGrant(Grant):
    grant_type = FAKE
    parameters = (Parameter("fake_code", "A code only this grant reads.", required=True), Parameter("scope", "Fake."))

    async def handle(self, params: dict[str, Any], ctx: RequestContext) -> TokenResponse:
        raise NotImplementedError


def form_schema(form: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = form["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    return schema


def test_the_registry_holds_the_six_grants_in_order() -> None:
    assert GRANTS.grant_types == STANDARD
    assert [grant.grant_type for grant in GRANTS] == list(STANDARD)


def test_a_grant_registered_twice_or_without_a_grant_type_fails_loudly() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        GrantRegistry(*GRANTS, next(iter(GRANTS)))

    class Nameless(FakeGrant):
        grant_type = ""

    with pytest.raises(TypeError, match="names no grant_type"):
        GrantRegistry(Nameless)

    class Doubled(FakeGrant):
        grant_type = "urn:example:doubled"
        parameters = (Parameter("x", "one"), Parameter("x", "two"))

    class Shadowing(FakeGrant):
        grant_type = "urn:example:shadowing"
        parameters = (Parameter("grant_type", "no"),)

    for bad in (Doubled, Shadowing):
        with pytest.raises(ValueError, match="parameter twice"):
            GrantRegistry(bad)


def test_the_openapi_form_is_the_registry_union() -> None:
    schema = form_schema(token_form(GRANTS))
    assert schema["properties"]["grant_type"]["enum"] == list(STANDARD)
    assert schema["required"] == ["grant_type"]
    expected = {"grant_type"} | {p.name for grant in GRANTS for p in grant.parameters}
    assert set(schema["properties"]) == expected
    for name in ("subject_token", "subject_token_type", "actor_token", "actor_token_type", "assertion"):
        assert name in schema["properties"], name
    # A parameter several grants read says what it means to each.
    scope = schema["properties"]["scope"]["description"]
    assert all(f"{name}:" in scope for name in ("client_credentials", "refresh_token", "jwt-bearer", "token-exchange"))
    subject_token = schema["properties"]["subject_token"]["description"]
    assert subject_token.startswith("token-exchange (required): The delegation credential")


def test_a_registered_fake_grant_shows_up_in_the_form_the_summary_and_the_metadata(tmp_path: Path) -> None:
    registry = GrantRegistry(*GRANTS, FakeGrant)
    schema = form_schema(token_form(registry))
    assert schema["properties"]["grant_type"]["enum"] == [*STANDARD, FAKE]
    assert schema["properties"]["fake_code"]["description"] == "fake (required): A code only this grant reads."
    assert "fake: Fake." in schema["properties"]["scope"]["description"]
    assert token_summary(registry).endswith("jwt-bearer, token-exchange, authorization_code, ciba, fake")

    settings = Settings(issuer_url="https://issuer.example", data_dir=tmp_path)
    config = discovery.agent_configuration(settings, "did:web:issuer.example", {}, registry)
    assert config["grant_types_supported"] == [*STANDARD, FAKE]
    assert discovery.agent_configuration(settings, "did:web:issuer.example", {})["grant_types_supported"] == list(
        STANDARD
    )
