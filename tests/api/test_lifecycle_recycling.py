"""Status-list lifecycle (issue 4): a list fills, a new one opens, and a full list's indexes are recycled only
after every credential on it has expired and its cleared (all-zero) list has outlived verifiers' caches.

Lists keep their real size (131,072 entries, the spec minimum ``StatusList`` enforces); filling is made fast
by reserving the list in two blocks instead of 256, and time is moved by a clock the test controls.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from lifecycle_support import client_token, decode_bits, fetch_list, jwt_payload, revoke, set_bits, status_slot
from sqlalchemy import func, select

from agentauth.bootstrap import Services
from agentauth.issuer import status as status_module
from agentauth.storage.models import CredentialRow, StatusBlockRow, StatusListRow
from agentauth.vc import StaticStatusLists, Verifier
from support import ISSUER_URL, quickstart, status_entry

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock()
    monkeypatch.setattr(services.core, "clock", controlled)
    monkeypatch.setattr(services.status, "_clock", controlled)
    # Two blocks per list. Set before the first allocation: block numbers depend on the block size.
    monkeypatch.setattr(status_module, "BLOCK_SIZE", status_module.LIST_SIZE // 2)
    return controlled


async def list_row(services: Services, list_id: int) -> tuple[str, int, int]:
    """(state, credentials on it, reserved blocks) of one list, read from the database."""
    async with services.sessions() as session:
        state = await session.scalar(select(StatusListRow.state).where(StatusListRow.id == list_id))
        credentials = await session.scalar(
            select(func.count()).select_from(CredentialRow).where(CredentialRow.status_list_id == list_id)
        )
        blocks = await session.scalar(
            select(func.count()).select_from(StatusBlockRow).where(StatusBlockRow.list_id == list_id)
        )
    assert state is not None
    return state, int(credentials or 0), int(blocks or 0)


def list_id(credential: str) -> int:
    return int(status_slot(credential)[0].rsplit("/", 1)[1])


async def test_full_list_is_cleared_after_expiry_and_reopened_after_two_ttls(
    client: httpx.AsyncClient, services: Services, clock: Clock
) -> None:
    ttl = services.settings.status_list_ttl_seconds
    agent = await quickstart(client, "recycler")  # first block of list 1: identity credential + access token
    first = list_id(agent["access_token"])
    assert list_id(agent["identity_credential"]) == first

    clock.advance(minutes=11)  # the process's block is stale: the next credential reserves the second block
    on_full = (await client_token(client, agent["api_key"]))["access_token"]
    assert list_id(on_full) == first
    assert (await list_row(services, first))[0] == "full"

    clock.advance(minutes=11)
    on_next = (await client_token(client, agent["api_key"]))["access_token"]
    second = list_id(on_next)
    assert second != first and (await list_row(services, second))[0] == "open"

    await revoke(client, agent["api_key"], on_full)
    path, index = status_slot(on_full)
    assert set_bits(decode_bits((await fetch_list(client, path)).text)) == {index}

    # Too soon after the last block was reserved, and then still holding live credentials: stays full.
    await services.status.recycle()
    assert (await list_row(services, first))[0] == "full"
    clock.advance(days=1)  # every access token has expired; the identity credential (1 year) has not
    assert jwt_payload(agent["identity_credential"])["exp"] > clock.now.timestamp()
    await services.status.recycle()
    assert (await list_row(services, first)) == ("full", 3, 2)
    assert set_bits(decode_bits((await fetch_list(client, path)).text)) == {index}

    clock.advance(days=366)  # now everything on the list has expired
    assert jwt_payload(agent["identity_credential"])["exp"] < clock.now.timestamp()
    await services.status.recycle()
    assert await list_row(services, first) == ("cleared", 0, 0)
    cleared = (await fetch_list(client, path)).text
    assert set_bits(decode_bits(cleared)) == set()
    assert len(decode_bits(cleared)) * 8 == 131_072
    jwks = (await client.get("/.well-known/jwks.json")).json()
    url = status_entry(jwt_payload(on_full)["vc"])["statusListCredential"]
    verifier = Verifier(issuer_url=ISSUER_URL, jwks=jwks, status_source=StaticStatusLists({url: cleared}))
    assert verifier.status_list(url, clock.now).bits.set_indexes() == []
    # A list that is not full is never touched.
    assert (await list_row(services, second))[0] == "open"

    # Verifiers may cache the old list for one ttl: indexes are dealt again only after two.
    clock.advance(seconds=ttl)
    await services.status.recycle()
    assert (await list_row(services, first))[0] == "cleared"
    clock.advance(seconds=ttl)
    await services.status.recycle()
    assert (await list_row(services, first))[0] == "open"

    # The oldest open list deals again, from a fresh block, with a clear bit.
    reused = (await client_token(client, agent["api_key"]))["access_token"]
    assert list_id(reused) == first
    assert await list_row(services, first) == ("open", 1, 1)
    assert set_bits(decode_bits((await fetch_list(client, path)).text)) == set()
