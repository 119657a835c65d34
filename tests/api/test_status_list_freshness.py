"""The server keeps its published status lists fresh (issue 12 item 15): verifiers now refuse a list older than
``iat + ttl + max_status_staleness`` (agentauth.vc.status), so an unchanged list is re-signed every half ttl,
and a copy fetched at any moment stays usable for at least half a ttl more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from lifecycle_support import fetch_list, jwt_payload, status_slot

from agentauth.bootstrap import Services
from agentauth.vc import StaticStatusLists, VerificationError, Verifier
from support import ISSUER_URL, quickstart, status_entry

pytestmark = pytest.mark.anyio


async def test_an_unchanged_list_is_re_signed_after_half_its_ttl_and_verifies_for_its_ttl(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = services.settings.status_list_ttl_seconds
    agent = await quickstart(client, "fresh-lists")
    token = agent["access_token"]
    path, _ = status_slot(token)
    url = status_entry(jwt_payload(token)["vc"])["statusListCredential"]
    first = (await fetch_list(client, path)).text
    assert jwt_payload(first)["vc"]["credentialSubject"]["ttl"] == ttl * 1000

    real_clock = services.status._clock
    monkeypatch.setattr(services.status, "_clock", lambda: real_clock() + timedelta(seconds=ttl // 2 + 1))
    second = (await fetch_list(client, path)).text
    twin = (await fetch_list(client, path + "/suspension")).text  # fresh as long as ``second``
    # On main the very same JWT came back for 12 hours, and a verifier honouring ttl would refuse it.
    assert second != first, "an unchanged list was not re-signed after half its ttl"
    assert jwt_payload(second)["iat"] >= jwt_payload(first)["iat"] + ttl // 2

    jwks = (await client.get("/.well-known/jwks.json")).json()
    issued = datetime.fromtimestamp(jwt_payload(second)["iat"], UTC)

    def verify(listed: str, at: datetime) -> None:
        verifier = Verifier(
            issuer_url=ISSUER_URL, jwks=jwks, status_source=StaticStatusLists({url: listed, url + "/suspension": twin})
        )
        verifier.verify_access_token(token, audience=ISSUER_URL, now=at)

    verify(second, issued + timedelta(seconds=ttl))  # fresh for a whole ttl after it was served
    with pytest.raises(VerificationError) as stale:
        verify(first, issued + timedelta(seconds=ttl))
    assert stale.value.code == "status_stale"
