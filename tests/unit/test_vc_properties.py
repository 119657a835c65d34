"""Properties of the credential layer (STYLE.md Tests: "flip one byte and verification fails", "attenuation
never widens scopes")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vc_support import AUDIENCE, NOW, Agent, Chain, Env

from agentauth.keys import b64url_decode, b64url_encode
from agentauth.vc import VerificationError, Verifier
from agentauth.vc import errors as e

SCOPES = ["read", "write", "delete", "execute", "delegate", "admin", "files:read", "files:write"]
scope_sets = st.sets(st.sampled_from(SCOPES), min_size=1)


@pytest.fixture(scope="module")
def shared(make_env: Callable[[datetime], Env]) -> tuple[Env, Verifier]:
    """One issuer for every example (hypothesis must not reuse function-scoped fixtures)."""
    env = make_env(NOW)
    return env, env.verifier()


@pytest.fixture(scope="module")
def signed_token(shared: tuple[Env, Verifier]) -> str:
    env, verifier = shared
    token, _ = env.delegated_token(env.chain(2), scopes=["read"])
    assert verifier.verify_access_token(token, audience=AUDIENCE).chain  # the unflipped token is valid
    return token


@settings(max_examples=200, deadline=None)
@given(data=st.data(), xor=st.integers(1, 255))
def test_flipping_any_byte_breaks_verification(
    shared: tuple[Env, Verifier], signed_token: str, data: st.DataObject, xor: int
) -> None:
    _, verifier = shared
    raw = bytearray(signed_token.encode("ascii"))
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[position] ^= xor
    flipped = raw.decode("latin-1")  # every byte value maps to one character

    with pytest.raises(VerificationError):
        verifier.verify_access_token(flipped, audience=AUDIENCE)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipping_a_byte_of_the_signature_is_an_invalid_signature(
    shared: tuple[Env, Verifier], signed_token: str, data: st.DataObject
) -> None:
    _, verifier = shared
    head, payload, signature = signed_token.split(".")
    sig = bytearray(b64url_decode(signature))
    sig[data.draw(st.integers(0, 63), label="byte")] ^= data.draw(st.integers(1, 255), label="xor")
    reencoded = b64url_encode(bytes(sig))

    with pytest.raises(VerificationError) as info:
        verifier.verify_access_token(f"{head}.{payload}.{reencoded}", audience=AUDIENCE)
    assert info.value.code == e.INVALID_SIGNATURE


def _two_links(env: Env, parent_scopes: set[str], child_scopes: set[str]) -> str:
    agents = [Agent.generate() for _ in range(3)]
    root = env.link(agents[0], agents[1], scopes=sorted(parent_scopes), depth=1)
    child = env.link(agents[1], agents[2], scopes=sorted(child_scopes), depth=0, parent=root)
    token, _ = env.delegated_token(Chain(agents, [root, child]), scopes=sorted(child_scopes))
    return token


@settings(max_examples=150, deadline=None)
@given(data=st.data(), parent=scope_sets)
def test_attenuated_chain_verifies(shared: tuple[Env, Verifier], data: st.DataObject, parent: set[str]) -> None:
    env, verifier = shared
    child = data.draw(st.sets(st.sampled_from(sorted(parent))), label="child")

    verified = verifier.verify_access_token(_two_links(env, parent, child), audience=AUDIENCE)

    assert verified.chain[1].scopes == child
    assert verified.chain[1].scopes <= verified.chain[0].scopes
    assert verified.scopes == child


@settings(max_examples=150, deadline=None)
@given(data=st.data(), parent=st.sets(st.sampled_from(SCOPES), min_size=1, max_size=len(SCOPES) - 1))
def test_a_child_scope_outside_the_parent_is_widening(
    shared: tuple[Env, Verifier], data: st.DataObject, parent: set[str]
) -> None:
    env, verifier = shared
    kept = data.draw(st.sets(st.sampled_from(sorted(parent))), label="kept")
    added = data.draw(st.sets(st.sampled_from(sorted(set(SCOPES) - parent)), min_size=1), label="added")

    with pytest.raises(VerificationError) as info:
        verifier.verify_access_token(_two_links(env, parent, kept | added), audience=AUDIENCE)
    assert info.value.code == e.CHAIN_SCOPE_WIDENED
