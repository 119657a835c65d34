"""The verifier's hot-path parsing equals the plain one (RFC 7515 section 7.1, RFC 7515 section 2 base64url).

``decode_compact`` inlines ``b64url_decode`` for both segments and reads the signature's length off its encoding;
``chain._acts_for`` walks ``act`` without building ``_actors``' list. These tests hold each against a plain
reference, written as the code read before those shortcuts: same result, or the same error and message.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vc_support import segment

from agentauth.keys import KeyPair, b64url_decode, b64url_encode
from agentauth.vc import VerificationError
from agentauth.vc import errors as e
from agentauth.vc.chain import DelegationLink, _actors, _acts_for
from agentauth.vc.jws import MAX_TOKEN_LENGTH, _checked_header, decode_compact

HEADER = segment({"alg": "EdDSA", "typ": "JWT", "kid": "k1"})
SIGNATURE = b64url_encode(KeyPair.generate().sign(b"x"))
# base64url characters, the ones b64url_decode refuses, and the JWS separator.
TEXT = st.text(alphabet="AQgwBaz09-_+/= \n.é", max_size=100)


def reference(token: str) -> tuple[object, ...]:
    """decode_compact as written before the inlining: three finds, b64url_decode twice, len(signature)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise VerificationError(e.MALFORMED, "token is not a string of acceptable length")
    first = token.find(".")
    second = token.find(".", first + 1) if first >= 0 else -1
    if second < 0 or token.find(".", second + 1) >= 0:
        raise VerificationError(e.MALFORMED, f"compact JWS needs 3 segments, got {token.count('.') + 1}")
    header = _checked_header(token[:first])
    try:
        signature = b64url_decode(token[second + 1 :])
    except ValueError as exc:
        raise VerificationError(e.MALFORMED, "signature is not base64url") from exc
    if len(signature) != 64:
        raise VerificationError(e.MALFORMED, "an Ed25519 signature is 64 bytes")
    try:
        payload = orjson.loads(b64url_decode(token[first + 1 : second], canonical=False))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise VerificationError(e.MALFORMED, "payload is not base64url JSON") from exc
    if not isinstance(payload, dict):
        raise VerificationError(e.MALFORMED, "payload is not a JSON object")
    return header, payload, token[:second].encode("ascii"), signature


def outcome(decode: object, token: str) -> tuple[object, ...]:
    assert callable(decode)
    try:
        return ("ok", *decode(token))
    except VerificationError as exc:
        return ("error", exc.code, exc.detail)


def same(token: str) -> None:
    assert outcome(decode_compact, token) == outcome(reference, token)


@given(payload=TEXT, signature=TEXT)
def test_any_segments_decode_or_fail_as_the_reference_does(payload: str, signature: str) -> None:
    same(f"{HEADER}.{payload}.{signature}")


@given(payload=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), cut=st.integers(0, 3))
def test_payload_encodings_of_every_length_remainder(payload: dict[str, int], cut: int) -> None:
    encoded = segment(payload)
    same(f"{HEADER}.{encoded}.{SIGNATURE}")
    same(f"{HEADER}.{encoded[: len(encoded) - cut]}.{SIGNATURE}")  # remainders 0-3 of 4, some invalid


@pytest.mark.parametrize(
    "signature",
    [
        SIGNATURE,
        SIGNATURE[:-1],  # 85 characters: not base64url (remainder 1)
        SIGNATURE[:-2],  # 84: valid base64url, 63 bytes
        SIGNATURE + "A",  # 87: 65 bytes
        SIGNATURE + "AA",  # 88: 66 bytes
        SIGNATURE[:-1] + "E",  # 86, but stray low bits: not canonical
        SIGNATURE[:-2] + "==",  # padded
        SIGNATURE[:40] + "+" + SIGNATURE[41:],
        SIGNATURE[:40] + "/" + SIGNATURE[41:],
        SIGNATURE[:40] + "é" + SIGNATURE[41:],
        SIGNATURE[:40] + " " + SIGNATURE[41:],
        "",
    ],
    ids=["valid", "85", "84", "87", "88", "non-canonical", "padded", "plus", "slash", "non-ascii", "space", "empty"],
)
def test_signature_segments_decode_or_fail_as_the_reference_does(signature: str) -> None:
    token = f"{HEADER}.{segment({'sub': 'x'})}.{signature}"
    same(token)
    if signature != SIGNATURE:
        assert outcome(decode_compact, token)[:2] == ("error", e.MALFORMED)


@pytest.mark.parametrize("dots", ["a", "a.b", "a.b.c.d", "..", "...", ".a.", HEADER + ".." + SIGNATURE])
def test_segment_counts_as_the_reference(dots: str) -> None:
    same(dots)


def link(delegate: str) -> DelegationLink:
    return DelegationLink("jwt", "id", "delegator", delegate, frozenset(), 0, 0.0, None, None)


ACTS = st.recursive(
    st.none() | st.sampled_from(["d1", "d2", 3]),
    lambda inner: st.fixed_dictionaries({"sub": st.sampled_from(["d1", "d2", "d3", 3])}, optional={"act": inner}),
    max_leaves=5,
)


@given(act=ACTS, delegates=st.lists(st.sampled_from(["d1", "d2", "d3"]), min_size=1, max_size=3))
def test_acts_for_agrees_with_actors(act: object, delegates: list[str]) -> None:
    links = [link(d) for d in delegates]
    try:
        expected = _actors(act) == [d for d in reversed(delegates)]
    except VerificationError:
        expected = False
    assert _acts_for(act, links) == expected


def reference_link(compact: str, claims: dict[str, object]) -> DelegationLink:
    """DelegationLink.from_claims as written before: dict.get and isinstance throughout."""
    subject = claims["vc"]["credentialSubject"]  # type: ignore[index]
    scopes, depth, delegator = subject.get("scopes"), subject.get("remainingDepth"), subject.get("delegator")
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise VerificationError(e.MALFORMED, "delegation scopes must be a list of strings")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise VerificationError(e.MALFORMED, "remainingDepth must be a non-negative integer")
    if not isinstance(delegator, str):
        raise VerificationError(e.MISSING_CLAIM, "delegation without a delegator")
    parent = subject.get("parent")
    if parent is not None and not (
        isinstance(parent, dict) and isinstance(parent.get("id"), str) and isinstance(parent.get("digest"), str)
    ):
        raise VerificationError(e.MALFORMED, "parent must carry id and digest")
    return DelegationLink(
        compact,
        str(claims["jti"]),
        delegator,
        str(claims["sub"]),
        frozenset(scopes),
        depth,
        float(claims["exp"]),  # type: ignore[arg-type]
        parent["id"] if parent else None,
        parent["digest"] if parent else None,
    )


ANY = (
    st.none()
    | st.booleans()
    | st.integers(-2, 3)
    | st.sampled_from(["a", "b", ""])
    | st.lists(st.sampled_from(["a", 1]))
)
# Mostly well-formed members, so that each check is reached with the ones before it passing.
SUBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "scopes": st.lists(st.sampled_from(["a", "b"])) | ANY,
        "remainingDepth": st.integers(0, 3) | ANY,
        "delegator": st.just("did:key:z0") | ANY,
        "parent": ANY
        | st.fixed_dictionaries(
            {}, optional={"id": st.just("urn:uuid:0") | ANY, "digest": st.just("abc") | ANY, "digestAlgorithm": ANY}
        ),
    },
)


@settings(max_examples=500)
@given(subject=SUBJECTS)
def test_from_claims_agrees_with_the_reference(subject: dict[str, object]) -> None:
    claims: dict[str, object] = {
        "jti": "urn:uuid:1",
        "sub": "did:key:z1",
        "exp": 1,
        "vc": {"credentialSubject": subject},
    }
    results = []
    for build in (DelegationLink.from_claims, reference_link):
        try:
            results.append(build("jwt", claims))
        except VerificationError as exc:
            results.append((exc.code, exc.detail))  # type: ignore[arg-type]
    assert results[0] == results[1]
