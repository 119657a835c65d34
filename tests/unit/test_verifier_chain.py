"""Delegation chains verified offline (DESIGN.md "Verification (offline)", ``vc/chain.py``).

Every broken chain here is validly signed by the issuer: only the chain rules can reject it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from vc_support import AUDIENCE, LINK_LIFETIME, NOW, Agent, Chain, Env

from agentauth.vc import VerificationError, Verifier
from agentauth.vc import errors as e
from agentauth.vc.chain import MAX_CHAIN_LENGTH


def rejected(verifier: Verifier, token: str) -> str:
    with pytest.raises(VerificationError) as info:
        verifier.verify_access_token(token, audience=AUDIENCE)
    return info.value.code


def two_links(
    env: Env,
    *,
    scopes: Sequence[str] = ("read",),
    delegator: Agent | None = None,
    expires_at: datetime | None = None,
    digest_of: str | None = None,
) -> Chain:
    """Root a0 -> a1 (read write, depth 1), then a1 -> a2 (depth 0) with one rule possibly broken."""
    agents = [Agent.generate() for _ in range(3)]
    root = env.link(agents[0], agents[1], scopes=["read", "write"], depth=1)
    child = env.link(
        delegator or agents[1],
        agents[2],
        scopes=scopes,
        depth=0,
        parent=root,
        expires_at=expires_at,
        digest_of=digest_of,
    )
    return Chain(agents, [root, child])


def test_a_valid_two_link_chain_verifies(env: Env, verifier: Verifier) -> None:
    chain = two_links(env)
    token, _ = env.delegated_token(chain)

    verified = verifier.verify_access_token(token, audience=AUDIENCE)

    assert [link.scopes for link in verified.chain] == [{"read", "write"}, {"read"}]
    assert verified.scopes == {"read"}


def test_verify_delegation_chain_returns_the_links_root_first(env: Env, verifier: Verifier) -> None:
    chain = env.chain(2, scopes=["read"])

    links = verifier.verify_delegation_chain(chain.jwts)

    assert [link.delegator for link in links] == [chain.agents[0].did, chain.agents[1].did]
    assert [link.jwt for link in links] == chain.jwts
    assert links[1].parent_id == chain.links[0][1]["jti"]


# -- link rules -----------------------------------------------------------------------------------------


def test_child_widening_scopes(env: Env, verifier: Verifier) -> None:
    token, _ = env.delegated_token(two_links(env, scopes=["read", "admin"]))

    assert rejected(verifier, token) == e.CHAIN_SCOPE_WIDENED


@pytest.mark.parametrize(("root_depth", "child_depth"), [(1, 1), (2, 2), (1, 5), (0, 0)])
def test_depth_not_shrinking_or_exhausted(env: Env, verifier: Verifier, root_depth: int, child_depth: int) -> None:
    agents = [Agent.generate() for _ in range(3)]
    root = env.link(agents[0], agents[1], scopes=["read"], depth=root_depth)
    child = env.link(agents[1], agents[2], scopes=["read"], depth=child_depth, parent=root)
    token, _ = env.delegated_token(Chain(agents, [root, child]))

    assert rejected(verifier, token) == e.CHAIN_DEPTH_EXCEEDED


def test_chain_longer_than_the_maximum(env: Env, verifier: Verifier) -> None:
    chain = env.chain(MAX_CHAIN_LENGTH + 1, scopes=["read"])
    token, _ = env.delegated_token(chain)

    assert rejected(verifier, token) == e.CHAIN_DEPTH_EXCEEDED


def test_chain_of_the_maximum_length_verifies(env: Env, verifier: Verifier) -> None:
    chain = env.chain(MAX_CHAIN_LENGTH, scopes=["read"])
    token, _ = env.delegated_token(chain)

    assert len(verifier.verify_access_token(token, audience=AUDIENCE).chain) == MAX_CHAIN_LENGTH


def test_child_outliving_its_parent(env: Env, verifier: Verifier) -> None:
    chain = two_links(env, expires_at=NOW + LINK_LIFETIME + timedelta(seconds=1))
    token, _ = env.delegated_token(chain)

    assert rejected(verifier, token) == e.CHAIN_EXPIRY_EXCEEDS_PARENT


def test_parent_digest_mismatch(env: Env, verifier: Verifier) -> None:
    other_jwt, _ = env.chain(1).links[0]
    token, _ = env.delegated_token(two_links(env, digest_of=other_jwt))

    assert rejected(verifier, token) == e.CHAIN_DIGEST_MISMATCH


def test_parent_id_mismatch(env: Env, verifier: Verifier) -> None:
    agents = [Agent.generate() for _ in range(3)]
    root = env.link(agents[0], agents[1], scopes=["read"], depth=1)
    wrong_parent = (root[0], root[1] | {"jti": "urn:uuid:00000000-0000-4000-8000-000000000000"})
    child = env.link(agents[1], agents[2], scopes=["read"], depth=0, parent=wrong_parent)
    token, _ = env.delegated_token(Chain(agents, [root, child]))

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_delegator_is_not_the_parents_delegate(env: Env, verifier: Verifier) -> None:
    token, _ = env.delegated_token(two_links(env, delegator=Agent.generate()))

    assert rejected(verifier, token) == e.CHAIN_DELEGATOR_MISMATCH


def test_first_link_must_be_a_root_grant(env: Env, verifier: Verifier) -> None:
    chain = env.chain(2)
    headless = Chain(chain.agents[1:], chain.links[1:])
    token, _ = env.delegated_token(headless)

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_links_out_of_order(env: Env, verifier: Verifier) -> None:
    chain = env.chain(2)
    token, _ = env.delegated_token(chain, delegation_chain=list(reversed(chain.jwts)))

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_delegation_cycle(env: Env, verifier: Verifier) -> None:
    a0, a1 = Agent.generate(), Agent.generate()
    root = env.link(a0, a1, scopes=["read"], depth=1)
    back = env.link(a1, a0, scopes=["read"], depth=0, parent=root)
    token, _ = env.delegated_token(Chain([a0, a1, a0], [root, back]))

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_self_delegation(env: Env, verifier: Verifier) -> None:
    a0 = Agent.generate()
    token, _ = env.delegated_token(Chain([a0, a0], [env.link(a0, a0, scopes=["read"], depth=0)]))

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_revoked_middle_link(env: Env) -> None:
    chain = env.chain(3)
    token, _ = env.delegated_token(chain)
    assert env.verifier().verify_access_token(token).chain

    env.revoke(chain.links[1][1])

    assert rejected(env.verifier(), token) == e.REVOKED


# -- the token against its chain ------------------------------------------------------------------------


def test_token_scope_beyond_the_last_link(env: Env, verifier: Verifier) -> None:
    token, _ = env.delegated_token(env.chain(2, scopes=["read"]), scopes=["read", "write"])

    assert rejected(verifier, token) == e.CHAIN_SCOPE_WIDENED


def test_token_outliving_the_last_link(env: Env, verifier: Verifier) -> None:
    token, _ = env.delegated_token(env.chain(2), lifetime=LINK_LIFETIME + timedelta(seconds=1))

    assert rejected(verifier, token) == e.CHAIN_EXPIRY_EXCEEDS_PARENT


def test_token_subject_is_not_the_root_delegator(env: Env, verifier: Verifier) -> None:
    chain = env.chain(2)
    token, _ = env.access_token(
        chain.agents[1], scopes=["read"], act=chain.act(), delegation_chain=chain.jwts, client_id=chain.agents[2].did
    )

    assert rejected(verifier, token) == e.CHAIN_DELEGATOR_MISMATCH


def _act_variants(chain: Chain) -> dict[str, dict[str, object]]:
    a1, a2, a3 = (agent.did for agent in chain.agents[1:])
    return {
        "innermost-first": {"sub": a1, "act": {"sub": a2, "act": {"sub": a3}}},
        "missing-actor": {"sub": a3, "act": {"sub": a2}},
        "extra-actor": {"sub": Agent.generate().did, "act": chain.act()},
        "stranger": {"sub": Agent.generate().did},
        "flat": {"sub": a3},
    }


@pytest.mark.parametrize("variant", ["innermost-first", "missing-actor", "extra-actor", "stranger", "flat"])
def test_token_act_not_matching_the_chain(env: Env, verifier: Verifier, variant: str) -> None:
    chain = env.chain(3)
    token, _ = env.delegated_token(chain, act=_act_variants(chain)[variant])

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_act_without_a_delegation_chain(env: Env, verifier: Verifier) -> None:
    chain = env.chain(1)
    token, _ = env.access_token(chain.agents[0], scopes=["read"], act=chain.act())

    assert rejected(verifier, token) == e.CHAIN_BROKEN


def test_chain_entry_that_is_not_a_delegation(env: Env, verifier: Verifier) -> None:
    chain = env.chain(1)
    identity, _ = env.identity(chain.agents[1])
    token, _ = env.delegated_token(chain, delegation_chain=[identity])

    assert rejected(verifier, token) == e.WRONG_CREDENTIAL_TYPE
