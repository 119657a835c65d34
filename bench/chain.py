"""The access tokens the in-process benchmarks (bench/core.py, bench/policy.py, bench/verify.py) issue and verify:
a plain one, and a depth-3 delegated one, whose verification checks four signatures (the token's and its three
delegation links').

Imported as ``chain`` from the scripts in bench/, whose directory is on ``sys.path``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.vc import CredentialIssuer, StatusEntry

DEPTH = 3
CLIENT_ID = "agt_0123456789abcdef"


def access_token(issuer: CredentialIssuer, subject_did: str, scopes: list[str], list_url: str, now: datetime) -> str:
    """What a ``client_credentials`` grant returns to a "basic" agent: an access token of ``subject_did`` for
    ``scopes``, valid 15 minutes, its status entry 4242 in ``list_url``."""
    token, _ = issuer.issue_access_credential(
        subject_did=subject_did,
        client_id=CLIENT_ID,
        scopes=scopes,
        audience=issuer.issuer_url,
        now=now,
        expires_at=now + timedelta(minutes=15),
        status=StatusEntry(list_url, 4242),
        subject_claims={"agentId": CLIENT_ID, "agentType": "assistant", "trustLevel": "basic"},
    )
    return token


def delegated_token(
    issuer: CredentialIssuer, scopes: list[str], list_url: str, now: datetime, *, attenuate: bool = False
) -> str:
    """A chain root -> d1 -> d2 -> d3 of fresh did:keys, and d3's access token acting for the root.

    Each link grants ``scopes`` (``attenuate``: one scope fewer than the link before it); the token carries the
    first two. Their status entries are in ``list_url``: 100, 101, 102 for the links, 7 for the token."""
    dids = [encode_did_key(KeyPair.generate().public.raw) for _ in range(DEPTH + 1)]
    links: list[str] = []
    parent_id = None
    for i in range(DEPTH):
        jwt, claims = issuer.issue_delegation_credential(
            delegate_did=dids[i + 1],
            delegator_did=dids[i],
            scopes=scopes[: len(scopes) - i] if attenuate else scopes,
            remaining_depth=DEPTH - i,
            now=now,
            expires_at=now + timedelta(hours=1),
            status=StatusEntry(list_url, 100 + i),
            parent_jwt=links[-1] if links else None,
            parent_id=parent_id,
        )
        links.append(jwt)
        parent_id = claims["jti"]
    act: dict[str, object] = {"sub": dids[1]}
    for did in dids[2:]:
        act = {"sub": did, "act": act}
    token, _ = issuer.issue_access_credential(
        subject_did=dids[0],
        client_id="agt_delegate",
        scopes=scopes[:2],
        audience=issuer.issuer_url,
        now=now,
        expires_at=now + timedelta(minutes=15),
        status=StatusEntry(list_url, 7),
        act=act,
        delegation_chain=links,
    )
    return token
