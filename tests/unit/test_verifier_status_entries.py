"""Several ``credentialStatus`` entries and the suspension purpose (Bitstring Status List v1.0 section 2.1; VCDM
lets ``credentialStatus`` be a list): every entry is checked against its own list; a set revocation bit refuses
with ``revoked``, a set suspension bit with ``suspended`` - and clearing it makes the credential valid again; an
entry whose purpose is not its list's is malformed; bits of other purposes refuse nothing."""

from __future__ import annotations

from typing import Any

import pytest
from vc_support import AUDIENCE, ISSUER_URL, LIST_URL, NOW, Agent, Env

from agentauth.vc import StatusEntry, StatusList, VerificationError
from agentauth.vc import errors as e

SUSPENSION_URL = f"{ISSUER_URL}/api/v1/status-lists/2"
MESSAGE_URL = f"{ISSUER_URL}/api/v1/status-lists/3"


class TwoLists(Env):
    """The revocation list of ``Env`` and a suspension list beside it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.suspension = StatusList()
        self.publish_suspension()

    def publish_suspension(self, purpose: str = "suspension", url: str = SUSPENSION_URL) -> None:
        credential = self.issuer.issue_status_list_credential(
            list_url=url, encoded_list=self.suspension.encode(), now=self.now, ttl_seconds=300,
            valid_for_seconds=3600, purpose=purpose,
        )  # fmt: skip
        self.source.put(url, credential)

    def token(self, *entries: StatusEntry) -> tuple[str, dict[str, Any]]:
        return self.access_token(Agent.generate(), status=list(entries))


@pytest.fixture
def env() -> TwoLists:
    return TwoLists(NOW)


def verify(env: TwoLists, token: str) -> dict[str, Any]:
    return env.verifier().verify_access_token(token, audience=AUDIENCE).claims


def test_both_entries_are_in_the_token_and_both_lists_are_read(env: TwoLists) -> None:
    token, claims = env.token(StatusEntry(LIST_URL, 7), StatusEntry(SUSPENSION_URL, 9, "suspension"))
    status = claims["vc"]["credentialStatus"]
    assert [entry["statusPurpose"] for entry in status] == ["revocation", "suspension"]
    assert verify(env, token)["sub"] == claims["sub"]


def test_a_suspension_bit_suspends_and_clearing_it_restores(env: TwoLists) -> None:
    token, _ = env.token(StatusEntry(LIST_URL, 7), StatusEntry(SUSPENSION_URL, 9, "suspension"))
    env.suspension.set(9)
    env.publish_suspension()
    with pytest.raises(VerificationError) as caught:
        verify(env, token)
    assert caught.value.code == e.SUSPENDED
    env.suspension.set(9, False)
    env.publish_suspension()
    assert verify(env, token)  # a fresh verifier reads the cleared list: valid again


def test_a_revocation_bit_revokes_whatever_the_suspension_list_says(env: TwoLists) -> None:
    token, _ = env.token(StatusEntry(LIST_URL, 7), StatusEntry(SUSPENSION_URL, 9, "suspension"))
    env.status_list.set(7)
    env.publish()
    with pytest.raises(VerificationError) as caught:
        verify(env, token)
    assert caught.value.code == e.REVOKED


def test_an_entry_naming_a_list_of_another_purpose_is_malformed(env: TwoLists) -> None:
    # A suspension entry pointing at the revocation list: its bits mean something else.
    token, _ = env.token(StatusEntry(LIST_URL, 7), StatusEntry(LIST_URL, 9, "suspension"))
    with pytest.raises(VerificationError) as caught:
        verify(env, token)
    assert caught.value.code == e.MALFORMED


def test_bits_of_other_purposes_refuse_nothing(env: TwoLists) -> None:
    env.suspension.set(9)
    env.publish_suspension("message", MESSAGE_URL)
    token, _ = env.token(StatusEntry(LIST_URL, 7), StatusEntry(MESSAGE_URL, 9, "message"))
    assert verify(env, token)


@pytest.mark.parametrize("status", [[], [5], ["x"], [None], [{"type": "BitstringStatusListEntry"}] * 5])
def test_malformed_lists_of_entries_are_refused(env: TwoLists, status: list[Any]) -> None:
    _, claims = env.token(StatusEntry(LIST_URL, 7))
    claims["vc"]["credentialStatus"] = status
    with pytest.raises(VerificationError) as caught:
        env.verifier()._status(claims["vc"], NOW, NOW.timestamp())
    assert caught.value.code == e.MALFORMED
