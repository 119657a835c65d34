"""Offline verification of a depth-3 delegated token (issue 5, "Must show" 1).

root -> B -> C -> D is built through the REST API and token exchange; a third-party ``vc.Verifier`` holding
only the published JWKS and status lists accepts D's token. Every way of altering the chain is then refused
with its precise ``VerificationError.code``: a tampered byte breaks a signature; links re-signed with the
issuer's own key (so only a chain rule breaks) trip ``chain_scope_widened``, ``chain_broken``,
``chain_digest_mismatch``, ``chain_delegator_mismatch``, ``chain_depth_exceeded`` or
``chain_expiry_exceeds_parent``; a revoked link trips ``revoked``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from delegation_support import HOP_SCOPES, THIRD_HOP, Chain, build_chain, claims, offline_verifier

from agentauth.bootstrap import Services
from agentauth.keys import b64url_encode
from agentauth.vc import StaticStatusLists, StatusEntry, VerificationError, Verifier
from support import ISSUER_URL, bearer, status_entry

pytestmark = pytest.mark.anyio


def _moment(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _status(vc: dict[str, Any]) -> list[StatusEntry]:
    return [
        StatusEntry(entry["statusListCredential"], int(entry["statusListIndex"]), entry["statusPurpose"])
        for entry in vc["credentialStatus"]
    ]


def reissue_link(services: Services, link: str, parent_jwt: str | None, **changes: Any) -> str:
    """``link`` signed again by the issuer's active key with ``changes``, linked to ``parent_jwt``."""
    c = claims(link)
    subject = c["vc"]["credentialSubject"]
    parent = subject.get("parent")
    args: dict[str, Any] = {
        "delegate_did": c["sub"],
        "delegator_did": subject["delegator"],
        "scopes": subject["scopes"],
        "remaining_depth": subject["remainingDepth"],
        "now": _moment(c["iat"]),
        "expires_at": _moment(c["exp"]),
        "status": _status(c["vc"]),
        "parent_jwt": parent_jwt if parent else None,
        "parent_id": parent["id"] if parent else None,
        "jti": c["jti"],
    }
    jwt, _ = services.issuer.issue_delegation_credential(**(args | changes))
    return jwt


def relink(services: Services, links: Sequence[str], changes: dict[int, dict[str, Any]]) -> list[str]:
    """The chain with link i re-signed with ``changes[i]``, and every later link re-signed so that its parent
    digest is right again: a validly signed chain in which only the rule ``changes`` touches can break."""
    out = list(links)
    first = min(changes)
    for i in range(first, len(out)):
        out[i] = reissue_link(services, out[i], out[i - 1] if i else None, **changes.get(i, {}))
    return out


def resign_token(services: Services, token: str, chain: Sequence[str] | None = None, **changes: Any) -> str:
    """The access token signed again by the issuer with another ``delegation_chain`` or claims."""
    c = claims(token)
    subject = {k: v for k, v in c["vc"]["credentialSubject"].items() if k != "id"}
    args: dict[str, Any] = {
        "subject_did": c["sub"],
        "client_id": c["client_id"],
        "scopes": c["scope"].split(),
        "audience": c["aud"],
        "now": _moment(c["iat"]),
        "expires_at": _moment(c["exp"]),
        "status": _status(c["vc"]),
        "subject_claims": subject,
        "act": c["act"],
        "delegation_chain": list(chain) if chain is not None else c["delegation_chain"],
        "jti": c["jti"],
    }
    jwt, _ = services.issuer.issue_access_credential(**(args | changes))
    return jwt


def tamper(jwt: str, **subject_changes: Any) -> str:
    """The JWT with its credentialSubject edited and the old signature kept (no re-signing)."""
    header, _, signature = jwt.split(".")
    payload = claims(jwt)
    payload["vc"]["credentialSubject"].update(subject_changes)
    return f"{header}.{b64url_encode(orjson.dumps(payload))}.{signature}"


def code_of(verifier: Verifier, token: str) -> str:
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(token, audience=ISSUER_URL)
    return caught.value.code


@pytest.fixture
async def chain(client: httpx.AsyncClient) -> Chain:
    return await build_chain(client, hops=3)


@pytest.fixture
async def verifier(client: httpx.AsyncClient, chain: Chain) -> Verifier:
    return await offline_verifier(client, chain.tokens[-1])


async def test_depth3_token_verifies_with_only_jwks_and_status_lists(chain: Chain, verifier: Verifier) -> None:
    token = chain.tokens[-1]
    verified = verifier.verify_access_token(token, audience=ISSUER_URL)
    dids = [a["agent"]["did"] for a in chain.agents]
    assert verified.subject == chain.root["agent"]["did"]
    assert [link.delegator for link in verified.chain] == [chain.root["agent"]["did"], *dids[:2]]
    assert [link.delegate for link in verified.chain] == dids
    assert [set(link.scopes) for link in verified.chain] == [set(s) for s in HOP_SCOPES]
    assert [link.remaining_depth for link in verified.chain] == [3, 2, 1]
    assert verified.claims["act"] == {"sub": dids[2], "act": {"sub": dids[1], "act": {"sub": dids[0]}}}
    assert verified.scopes == frozenset(THIRD_HOP)
    assert verifier.verify_delegation_chain(chain.links)[-1].id == claims(chain.links[-1])["jti"]


async def test_status_lists_are_really_consulted(client: httpx.AsyncClient, chain: Chain, verifier: Verifier) -> None:
    jwks = (await client.get("/.well-known/jwks.json")).json()
    blind = Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=StaticStatusLists({}))
    assert code_of(blind, chain.tokens[-1]) == "status_unavailable"
    assert code_of(Verifier(issuer_url=ISSUER_URL, jwks={"keys": []}), chain.tokens[-1]) == "unknown_kid"


async def test_resigning_an_unchanged_chain_still_verifies(
    services: Services, chain: Chain, verifier: Verifier
) -> None:
    # Control for the variants below: the re-signing machinery alone breaks nothing.
    same = relink(services, chain.links, {0: {}})
    assert same == chain.links  # Ed25519 is deterministic: same claims, same key, same JWT
    assert verifier.verify_access_token(resign_token(services, chain.tokens[-1], same), audience=ISSUER_URL)


async def test_altered_link_breaks_a_signature(services: Services, chain: Chain, verifier: Verifier) -> None:
    for index in range(3):
        links = list(chain.links)
        links[index] = tamper(links[index], scopes=[*HOP_SCOPES[index], "audit.read"])
        # Inside the token, not re-signed: the token's own signature breaks.
        payload = claims(chain.tokens[-1]) | {"delegation_chain": links}
        header, _, signature = chain.tokens[-1].split(".")
        forged = f"{header}.{b64url_encode(orjson.dumps(payload))}.{signature}"
        assert code_of(verifier, forged) == "invalid_signature", index
        # The token re-signed around the altered link: the link's own signature breaks.
        assert code_of(verifier, resign_token(services, chain.tokens[-1], links)) == "invalid_signature", index
        with pytest.raises(VerificationError) as caught:
            verifier.verify_delegation_chain(links)
        assert caught.value.code == "invalid_signature", index


async def test_widened_link_scope(services: Services, chain: Chain, verifier: Verifier) -> None:
    # (link, scope added): outside the root grant, or held by the root grant but not by the link's parent.
    for index, extra in [(1, "audit.read"), (1, "credentials.write"), (2, "credentials.read"), (2, "audit.read")]:
        widened = relink(services, chain.links, {index: {"scopes": [*HOP_SCOPES[index], extra]}})
        assert code_of(verifier, resign_token(services, chain.tokens[-1], widened)) == "chain_scope_widened", extra
        with pytest.raises(VerificationError) as caught:
            verifier.verify_delegation_chain(widened)
        assert caught.value.code == "chain_scope_widened", (index, extra)
    # Control: the last link taking back a scope its parent does hold is no widening.
    legal = relink(services, chain.links, {2: {"scopes": [*THIRD_HOP, "delegations.write"]}})
    assert verifier.verify_access_token(resign_token(services, chain.tokens[-1], legal), audience=ISSUER_URL)


async def test_widened_token_scope(services: Services, chain: Chain, verifier: Verifier) -> None:
    for extra in ("delegations.read", "audit.read"):
        token = resign_token(services, chain.tokens[-1], scopes=[*THIRD_HOP, extra])
        assert code_of(verifier, token) == "chain_scope_widened", extra


async def test_reordered_links(services: Services, chain: Chain, verifier: Verifier) -> None:
    header, _, signature = chain.tokens[-1].split(".")
    for order in [(1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0), (2, 0, 1)]:
        reordered = [chain.links[i] for i in order]
        assert code_of(verifier, resign_token(services, chain.tokens[-1], reordered)) == "chain_broken", order
        payload = claims(chain.tokens[-1]) | {"delegation_chain": reordered}
        forged = f"{header}.{b64url_encode(orjson.dumps(payload))}.{signature}"
        assert code_of(verifier, forged) == "invalid_signature", order


async def test_dropped_link(services: Services, chain: Chain, verifier: Verifier) -> None:
    for dropped in range(3):
        shorter = [link for i, link in enumerate(chain.links) if i != dropped]
        assert code_of(verifier, resign_token(services, chain.tokens[-1], shorter)) == "chain_broken", dropped


async def test_substituted_link_breaks_the_digest(services: Services, chain: Chain, verifier: Verifier) -> None:
    # A validly signed replacement (same id, issued a second later, scopes narrowed to what its child holds),
    # without re-signing the link below it: that link's parent digest no longer matches.
    for index in (0, 1):
        links = list(chain.links)
        iat = claims(links[index])["iat"]
        links[index] = reissue_link(
            services,
            links[index],
            links[index - 1] if index else None,
            now=_moment(iat + 1),
            scopes=HOP_SCOPES[index + 1],
        )
        assert code_of(verifier, resign_token(services, chain.tokens[-1], links)) == "chain_digest_mismatch", index


async def test_link_from_another_delegator(services: Services, chain: Chain, verifier: Verifier) -> None:
    root_did = chain.root["agent"]["did"]
    # The last hop re-signed as if the root (not C, the parent's delegate) had granted it; digest and id right.
    links = relink(services, chain.links, {2: {"delegator_did": root_did}})
    assert code_of(verifier, resign_token(services, chain.tokens[-1], links)) == "chain_delegator_mismatch"
    # A token claiming to act for someone other than the chain's root delegator.
    b_did = chain.agents[0]["agent"]["did"]
    assert code_of(verifier, resign_token(services, chain.tokens[-1], subject_did=b_did)) == "chain_delegator_mismatch"


async def test_depth_and_expiry_only_shrink(services: Services, chain: Chain, verifier: Verifier) -> None:
    deeper = relink(services, chain.links, {2: {"remaining_depth": 2}})
    assert code_of(verifier, resign_token(services, chain.tokens[-1], deeper)) == "chain_depth_exceeded"
    exp = claims(chain.links[1])["exp"]
    longer = relink(services, chain.links, {2: {"expires_at": _moment(exp + 3600)}})
    assert code_of(verifier, resign_token(services, chain.tokens[-1], longer)) == "chain_expiry_exceeds_parent"


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_revoked_link(client: httpx.AsyncClient, chain: Chain, verifier: Verifier, index: int) -> None:
    token = chain.tokens[-1]
    assert verifier.verify_access_token(token, audience=ISSUER_URL)
    revoked = await client.post(
        f"/api/v1/delegations/{chain.delegations[index]['id']}/revoke", headers=bearer(chain.root["access_token"])
    )
    assert revoked.status_code == 200, revoked.text
    fresh = await offline_verifier(client, token)  # refetched status lists
    assert code_of(fresh, token) == "revoked"
    # The first revoked link is the one revoked (those above it are untouched).
    with pytest.raises(VerificationError) as caught:
        fresh.verify_delegation_chain(chain.links)
    assert caught.value.code == "revoked"
    index_of_link = status_entry(claims(chain.links[index])["vc"])["statusListIndex"]
    assert f"bit {index_of_link} " in caught.value.detail
    if index:
        assert len(fresh.verify_delegation_chain(chain.links[:index])) == index
