"""``DPoPSettings``: the request URI a proof's ``htu`` is compared with (RFC 9449 section 4.3 point 9), behind a
proxy (``public_url``) and not, and the settings it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from agentauth.sdk import DPoPSettings, protected_resource_metadata
from agentauth.sdk.dpop import header_values


def scope(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "scheme": "http", "path": "/reports/1", "server": ("10.0.0.5", 8080), "headers": []} | extra


def test_the_request_uri_is_the_clients_view() -> None:
    direct = DPoPSettings()
    assert direct.request_uri(scope(headers=[(b"host", b"api.example.com:8443")])) == (
        "http://api.example.com:8443/reports/1"
    )
    assert direct.request_uri(scope()) == "http://10.0.0.5:8080/reports/1"  # no Host header: the socket's address
    assert direct.request_uri(scope(scheme="https", server=("::1", 443))) == "https://[::1]/reports/1"
    proxied = DPoPSettings(public_url="https://api.example.com/v2/")
    assert proxied.request_uri(scope(headers=[(b"host", b"internal:8080")])) == "https://api.example.com/v2/reports/1"


@pytest.mark.parametrize(
    "url", ["api.example.com", "ftp://api.example.com", "https://api.example.com/?a=1", "https://"]
)
def test_a_public_url_must_be_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        DPoPSettings(public_url=url)


def test_every_dpop_header_is_counted() -> None:
    headers = [(b"dpop", b"a.b.c"), (b"authorization", b"DPoP t"), (b"DPoP", b"d.e.f")]
    assert header_values({"headers": headers}, b"dpop") == ["a.b.c", "d.e.f"]
    assert DPoPSettings().current_nonce() is None


def test_the_protected_resource_metadata_says_what_the_settings_accept() -> None:
    issuer = "https://auth.example.com/"
    bearer_only = protected_resource_metadata("https://api.example.com", issuer, scopes=["api.read"])
    assert bearer_only == {
        "resource": "https://api.example.com",
        "authorization_servers": ["https://auth.example.com"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["api.read"],
    }
    both = protected_resource_metadata("https://api.example.com", issuer, dpop=DPoPSettings(), resource_name="API")
    assert both["dpop_signing_alg_values_supported"] == ["EdDSA", "Ed25519", "ES256"]
    assert both["dpop_bound_access_tokens_required"] is False and both["resource_name"] == "API"
    for only in (DPoPSettings(require_dpop=True), DPoPSettings(require_agent_key=True)):
        assert (
            protected_resource_metadata("https://api.example.com", issuer, dpop=only)[
                "dpop_bound_access_tokens_required"
            ]
            is True
        )
