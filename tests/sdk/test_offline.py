"""Fully offline verification - a JWKS file and status-list files - with every socket disabled."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from sdk_support import ISSUER_URL, LIST_URL, RESOURCE, FakeIssuer

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.sdk import JwksFileError, OnlineVerifier, load_jwks, offline_verifier
from agentauth.sdk.offline import issuer_url_for
from agentauth.vc import IDENTITY_CREDENTIAL, DirectoryStatusLists, VerificationError, status_list_filename
from agentauth.vc import errors as e


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def export(issuer: FakeIssuer, tmp_path: Path) -> tuple[Path, Path]:
    """What `agentauth jwks export` and `agentauth status-list fetch` would leave on an air-gapped machine."""
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps({"issuer": ISSUER_URL} | issuer.ring.jwks()))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / status_list_filename(LIST_URL)).write_text(issuer.list_jwt + "\n")
    return jwks, lists


def test_offline_verification_with_sockets_disabled(tmp_path: Path, no_network: None) -> None:
    issuer = FakeIssuer()
    token, claims = issuer.token(("api.read", "api.write"))
    chained, _ = issuer.chained_token(depth=3)
    revoked, revoked_claims = issuer.token()
    identity, _ = issuer.issuer.issue_identity_credential(
        subject_did=encode_did_key(KeyPair.generate().public.raw),
        agent_id="agt_1",
        tenant_id="agt_1",
        agent_type="assistant",
        trust_level="basic",
        name="offline",
        now=issuer.time.now(),
        expires_at=issuer.time.now().replace(year=issuer.time.now().year + 1),
        status=issuer.entry(),
    )
    issuer.revoke(revoked_claims)
    jwks, lists = export(issuer, tmp_path)
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))

    verifier = offline_verifier(jwks, resource=RESOURCE, status_dir=lists)
    assert verifier.verify_access_token(token, audience=RESOURCE).scopes == {"api.read", "api.write"}
    assert verifier.verify_access_token(token).subject == claims["sub"]
    assert len(verifier.verify_access_token(chained).chain) == 3
    assert verifier.verify_credential(identity, expected_type=IDENTITY_CREDENTIAL)["vc"]["credentialSubject"]
    with pytest.raises(VerificationError) as caught:
        verifier.verify_access_token(revoked)
    assert caught.value.code == e.REVOKED

    # The online verifier seeded from the same files never opens a socket either.
    online = OnlineVerifier(
        ISSUER_URL, resource=RESOURCE, jwks=load_jwks(jwks), status_source=DirectoryStatusLists(lists)
    )
    assert online.verify_access_token(token).subject == claims["sub"]


def test_offline_without_status_files_fails_closed(tmp_path: Path, no_network: None) -> None:
    issuer = FakeIssuer()
    jwks, _ = export(issuer, tmp_path)
    token, _ = issuer.token()
    with pytest.raises(VerificationError) as caught:
        offline_verifier(jwks, resource=RESOURCE, status_dir=tmp_path / "empty").verify_access_token(token)
    assert caught.value.code == e.STATUS_UNAVAILABLE
    # Skipping status is possible, but only on request.
    assert offline_verifier(jwks, resource=RESOURCE, check_status=False).verify_access_token(token)


def test_jwks_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(JwksFileError, match="cannot read"):
        load_jwks(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(JwksFileError, match="not JSON"):
        load_jwks(tmp_path / "bad.json")
    (tmp_path / "nokeys.json").write_text("{}")
    with pytest.raises(JwksFileError, match="'keys'"):
        load_jwks(tmp_path / "nokeys.json")
    issuer = FakeIssuer()
    with pytest.raises(JwksFileError, match="does not name its issuer"):
        offline_verifier(issuer.ring.jwks())
    with pytest.raises(JwksFileError, match=r"belong to did:web:issuer\.test"):
        offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url="https://other.test")


def test_a_plain_jwks_is_bound_to_its_issuer_by_the_kids() -> None:
    issuer = FakeIssuer()
    plain = issuer.ring.jwks()  # no "issuer" member, as an arbitrary JWKS download would be
    token, _ = issuer.token()
    assert issuer_url_for(plain, token) == ISSUER_URL
    # A token claiming another issuer does not get to choose: the URL comes from the keys' did:web.
    other = FakeIssuer(url="https://other.test")
    foreign, _ = other.token()
    assert issuer_url_for(plain, foreign) == ISSUER_URL
    with pytest.raises(VerificationError) as caught:
        offline_verifier(plain, resource=RESOURCE, issuer_url=issuer_url_for(plain, foreign)).verify_access_token(
            foreign
        )
    assert caught.value.code == e.UNKNOWN_KID
    assert issuer_url_for({"issuer": "https://declared.test", "keys": []}, token) == "https://declared.test"
    with pytest.raises(JwksFileError):
        issuer_url_for({"keys": []}, token)
