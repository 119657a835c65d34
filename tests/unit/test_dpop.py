"""DPoP proofs (RFC 9449 section 4.3) checked by ``agentauth.vc.dpop``: proofs built with a third-party JOSE
library (joserfc) for Ed25519 and ES256 keys pass and give the RFC 7638 thumbprint joserfc computes; each way a
proof can be wrong is refused with ``invalid_dpop_proof`` (or ``use_dpop_nonce``), and a refused proof does not
use up its ``jti``."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey

from agentauth.keys import KeyPair
from agentauth.vc.dpop import INVALID_DPOP_PROOF, USE_DPOP_NONCE, check_proof, create_proof
from agentauth.vc.dpop_nonces import DPoPNonces
from agentauth.vc.errors import VerificationError
from agentauth.vc.nonces import NonceRegistry

URI = "https://as.example/api/v1/auth/token"
NOW = 1_800_000_000.0
NONCES = DPoPNonces(b"a shared nonce secret", period=300)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    return {"jti": str(uuid.uuid4()), "htm": "POST", "htu": URI, "iat": int(NOW)} | extra


def joserfc_proof(key: OKPKey | ECKey, body: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    alg = "Ed25519" if isinstance(key, OKPKey) else "ES256"
    protected = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)} | (header or {})
    return jws.serialize_compact(protected, json.dumps(body).encode(), key, algorithms=[alg])


def check(proof: str, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"method": "POST", "uri": URI, "replay": NonceRegistry(), "now": NOW}
    return check_proof(proof, **(options | kwargs))


def refused(proof: str, detail: str, code: str = INVALID_DPOP_PROOF, **kwargs: Any) -> None:
    with pytest.raises(VerificationError) as failed:
        check(proof, **kwargs)
    assert failed.value.code == code and detail in failed.value.detail, failed.value


@pytest.mark.parametrize("key", [OKPKey.generate_key("Ed25519"), ECKey.generate_key("P-256")], ids=["Ed25519", "ES256"])
def test_a_third_party_proof_passes_with_its_key_thumbprint(key: OKPKey | ECKey) -> None:
    token = "eyJ.access.token"
    ath = b64(hashlib.sha256(token.encode()).digest())
    nonce = NONCES.current(NOW)
    proof = check(joserfc_proof(key, claims(ath=ath, nonce=nonce)), access_token=token, nonces=NONCES)
    assert proof.jkt == key.thumbprint()
    assert proof.jwk == key.as_dict(private=False) | {"kty": proof.jwk["kty"]}


def test_an_agents_own_proof_binds_its_did_key() -> None:
    agent = KeyPair.generate()
    proof = create_proof(agent, "GET", "https://rs.example/items?page=2#top", access_token="tok", now=NOW)
    checked = check(proof, method="GET", uri="https://rs.example/items?page=3", access_token="tok")
    assert checked.jkt == agent.public.thumbprint() and checked.claims["htu"] == "https://rs.example/items"


def test_each_replay_is_refused_and_a_refused_proof_uses_nothing() -> None:
    replay = NonceRegistry()
    proof = joserfc_proof(OKPKey.generate_key("Ed25519"), claims())
    refused(proof, "htm", method="GET", replay=replay)
    check(proof, replay=replay)
    refused(proof, "jti replayed", replay=replay)


def unsigned(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}.{b64(signature)}"


def test_header_attacks_are_refused() -> None:
    key = OKPKey.generate_key("Ed25519")
    public = key.as_dict(private=False)
    refused(unsigned({"typ": "dpop+jwt", "alg": "none", "jwk": public}, claims()), "alg 'none'")
    refused(unsigned({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}, claims(),
                     b"x" * 32), "alg 'HS256'")  # fmt: skip
    refused(joserfc_proof(key, claims(), {"jwk": key.as_dict(private=True)}), "private")
    refused(joserfc_proof(key, claims(), {"typ": "JWT"}), "typ")
    refused(joserfc_proof(key, claims(), {"jwk": OKPKey.generate_key("Ed25519").as_dict(private=False)}),
            "does not verify")  # fmt: skip
    refused(joserfc_proof(key, claims(), {"jwk": ECKey.generate_key("P-256").as_dict(private=False)}), "OKP")
    agent = KeyPair.generate()
    critical = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": agent.public.jwk(), "crit": ["exp"], "exp": 1}
    signing_input = unsigned(critical, claims()).rsplit(".", 1)[0]
    refused(f"{signing_input}.{b64(agent.sign(signing_input.encode()))}", "crit")
    refused("not.a-proof", "3 segments")


def test_claim_attacks_are_refused() -> None:
    key = ECKey.generate_key("P-256")
    refused(joserfc_proof(key, claims(htm="GET")), "htm")
    refused(joserfc_proof(key, claims(htu="https://other.example/api/v1/auth/token")), "htu is not")
    for variant in (f"{URI}?x=1", f"{URI}#f", f"{URI}?"):
        refused(joserfc_proof(key, claims(htu=variant)), "query or fragment")
    refused(joserfc_proof(key, claims(iat=int(NOW) - 120)), "iat")
    refused(joserfc_proof(key, claims(iat=int(NOW) + 60)), "iat")
    refused(joserfc_proof(key, claims(iat="1800000000")), "iat")
    refused(joserfc_proof(key, claims(jti="")), "jti")
    refused(joserfc_proof(key, claims()), "ath", access_token="tok")
    refused(joserfc_proof(key, claims(ath="AAAA")), "ath", access_token="tok")
    refused(joserfc_proof(key, claims()), "nonce", code=USE_DPOP_NONCE, nonces=NONCES)
    refused(joserfc_proof(key, claims(nonce="n-1")), "nonce", code=USE_DPOP_NONCE, nonces=NONCES)
    stale = NONCES.current(NOW - 600)
    refused(joserfc_proof(key, claims(nonce=stale)), "nonce", code=USE_DPOP_NONCE, nonces=NONCES)


def test_htu_is_compared_in_normal_form() -> None:
    key = OKPKey.generate_key("Ed25519")
    check(joserfc_proof(key, claims(htu="HTTPS://AS.Example:443/api/v1/auth/token")))
    refused(joserfc_proof(key, claims(htu="https://as.example:8443/api/v1/auth/token")), "htu is not")
    refused(joserfc_proof(key, claims(htu="http://as.example/api/v1/auth/token")), "htu is not")


def test_the_clock_defaults_to_now() -> None:
    proof = create_proof(KeyPair.generate(), "POST", URI)
    assert check_proof(proof, method="POST", uri=URI, replay=NonceRegistry()).claims["iat"] <= time.time()
    refused(proof, "iat", now=time.time() + 3600)


def test_nonces_rotate_each_period_and_the_previous_one_still_counts() -> None:
    now = 1_800_000_100.0  # 100 s into a period of 300
    first = NONCES.current(now)
    assert NONCES.current(now + 199) == first and NONCES.current(now + 200) != first
    assert NONCES.accepts(first, now) and NONCES.accepts(first, now + 499)
    assert not NONCES.accepts(first, now + 500)  # two periods on
    assert not NONCES.accepts(None, now) and not NONCES.accepts(first[:-1], now) and not NONCES.accepts(1, now)


def test_replicas_sharing_a_secret_give_and_accept_the_same_nonces_and_no_one_else_does() -> None:
    replica = DPoPNonces(b"a shared nonce secret", period=300)
    other = DPoPNonces(b"another tenant secret", period=300)
    assert replica.current(NOW) == NONCES.current(NOW) and replica.accepts(NONCES.current(NOW), NOW)
    assert not other.accepts(NONCES.current(NOW), NOW)
    assert len(NONCES.current(NOW)) == 22  # 128 bits, base64url
    with pytest.raises(ValueError):
        DPoPNonces(b"short")
