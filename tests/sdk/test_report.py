"""``explain``: which check failed, in the order the core runs them - the verdict itself is always the core's."""

from __future__ import annotations

from datetime import timedelta

from sdk_support import ISSUER_URL, RESOURCE, FakeIssuer

from agentauth.did import encode_did_key
from agentauth.keys import KeyPair
from agentauth.sdk import offline_verifier
from agentauth.sdk.report import Report, explain
from agentauth.vc import StaticStatusLists, Verifier, create_presentation
from agentauth.vc.jws import parse_compact


def verifier_for(issuer: FakeIssuer) -> Verifier:
    lists = StaticStatusLists({f"{ISSUER_URL}/api/v1/status-lists/1": issuer.list_jwt})
    return offline_verifier(issuer.ring.jwks(), resource=RESOURCE, issuer_url=ISSUER_URL, status_source=lists)


def results(report: Report) -> dict[str, str]:
    return {c.name: c.result for c in report.checks}


def test_valid_access_token_passes_every_check() -> None:
    issuer = FakeIssuer()
    token, claims = issuer.token()
    report = explain(verifier_for(issuer), token, audience=RESOURCE, now=issuer.time.now())
    assert report.valid and report.kind == "access_token" and report.claims == claims
    assert set(results(report).values()) == {"pass", "skip"}
    assert results(report)["delegation chain"] == "skip" and results(report)["audience"] == "pass"


def test_a_revoked_chain_link_is_blamed_on_the_chain_not_the_token() -> None:
    issuer = FakeIssuer()
    token, _ = issuer.chained_token(depth=2)
    link = parse_compact(parse_compact(token).payload["delegation_chain"][1]).payload
    issuer.revoke(link)
    report = explain(verifier_for(issuer), token, now=issuer.time.now())
    assert not report.valid and report.revoked
    assert results(report)["status"] == "pass" and results(report)["delegation chain"] == "fail"


def test_expired_token_fails_the_validity_check_and_later_checks_are_not_reached() -> None:
    issuer = FakeIssuer()
    token, _ = issuer.token(lifetime=timedelta(minutes=1))
    report = explain(verifier_for(issuer), token, now=issuer.time.now() + timedelta(hours=1))
    checks = results(report)
    assert report.code == "expired" and checks["validity period"] == "fail"
    assert checks["signature"] == "pass" and checks["status"] == "skip"
    assert report.to_json()["claims"] is None  # unverified claims are never reported as claims


def test_presentation_with_an_expired_credential_blames_the_credential() -> None:
    issuer = FakeIssuer()
    holder = KeyPair.generate()
    did = encode_did_key(holder.public.raw)
    credential, _ = issuer.issuer.issue_identity_credential(
        subject_did=did,
        agent_id="agt_1",
        tenant_id="agt_1",
        agent_type="tool",
        trust_level="basic",
        name="holder",
        now=issuer.time.now() - timedelta(days=2),
        expires_at=issuer.time.now() - timedelta(days=1),
        status=issuer.entry(),
    )
    vp = create_presentation(holder, [credential], audience="https://v.test", nonce="n1", now=issuer.time.now())
    report = explain(verifier_for(issuer), vp, audience="https://v.test", nonce="n1", now=issuer.time.now())
    checks = results(report)
    assert report.kind == "presentation" and report.code == "expired"
    assert checks["validity period"] == "pass" and checks["credentials"] == "fail"


def test_garbage_and_foreign_tokens() -> None:
    issuer = FakeIssuer()
    report = explain(verifier_for(issuer), "not-a-jwt")
    assert report.code == "malformed" and results(report)["structure"] == "fail" and report.kind is None
    header = parse_compact(issuer.list_jwt).header
    assert header["typ"] == "JWT"
    status_list = explain(verifier_for(issuer), issuer.list_jwt, now=issuer.time.now())
    assert status_list.valid and status_list.kind == "status_list"
