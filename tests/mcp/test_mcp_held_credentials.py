"""Secrets out of the model's context (issue 16 item 4): ``agentauth-mcp`` with ``AGENTAUTH_CREDENTIALS_FILE``,
driven by the official MCP Python client over stdio - embedded on a data directory and remote against
``agentauth serve``. No tool requires a secret argument, no result holds a secret (they are in 0600 files the
results name), tools work without ``access_token``, and a restarted server goes on with the same file."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp_support import RunningServer, hermetic_env, start_server, stdio_session, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("held-remote"), AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK="true")
    yield server
    server.stop()


def env_for(mode: str, tmp: Path, remote: RunningServer) -> dict[str, str]:
    file = tmp / "agent" / "credentials.json"
    if mode == "remote":
        return hermetic_env(AGENTAUTH_URL=remote.url, AGENTAUTH_CREDENTIALS_FILE=str(file))
    return hermetic_env(
        AGENTAUTH_DATA_DIR=str(tmp / "data"),
        AGENTAUTH_CREDENTIALS_FILE=str(file),
        AGENTAUTH_WEBHOOK_ALLOW_LOOPBACK="true",
    )


async def kept_call(session: ClientSession, seen: list[str], tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {text_of(result)}"
    assert isinstance(result.structured_content, dict)
    seen.append(text_of(result) + json.dumps(result.structured_content))
    return result.structured_content


def private(path: Path) -> dict[str, Any]:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    content: dict[str, Any] = json.loads(path.read_text())
    return content


def stored_path(placeholder: str) -> Path:
    assert placeholder.startswith("<secret stored in ") and placeholder.endswith(">"), placeholder
    return Path(placeholder.removeprefix("<secret stored in ").removesuffix(">"))


@pytest.mark.parametrize("mode", ["embedded", "remote"])
async def test_no_secret_is_required_or_returned_and_tools_need_no_token(
    mode: str, tmp_path: Path, remote: RunningServer
) -> None:
    env = env_for(mode, tmp_path, remote)
    file = Path(env["AGENTAUTH_CREDENTIALS_FILE"])
    seen: list[str] = []
    async with stdio_session(env, tmp_path / "mcp.log") as session:
        for listed in (await session.list_tools()).tools:
            required = set(listed.input_schema.get("required", []))
            for name, prop in listed.input_schema["properties"].items():
                secret = "Secret" in json.dumps(prop)
                assert not (secret and name in required), f"{listed.name} requires the secret {name}"
            assert not required & {"access_token", "api_key", "refresh_token_value"}, listed.name
        made = await kept_call(session, seen, "quickstart", name="helper", agent_type="assistant")
        assert made["api_key"] == f"<secret stored in {file}>" and made["private_key_jwk"] == {"stored_in": str(file)}
        assert made["access_token"].startswith("<secret stored in ")
        held = private(file)
        assert held["agent_id"] == made["agent"]["id"] and held["api_key"].startswith("ak_")
        listed_agents = await kept_call(session, seen, "list_agents")  # no access_token: the server's own
        assert [a["id"] for a in listed_agents["items"]] == [made["agent"]["id"]]
        key = await kept_call(session, seen, "create_credential", agent_id=made["agent"]["id"], name="ci")
        key_file = stored_path(key["raw_key"])
        assert private(key_file)["api_key"].startswith("ak_") and key_file.parent.name == "credentials.json.secrets"
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        hook = await kept_call(session, seen, "create_webhook", url="http://127.0.0.1:9/hook", events=["agent.*"])
        assert private(stored_path(hook["secret"]))["secret"].startswith("whsec_")
        fresh = await kept_call(session, seen, "refresh_token")  # no value: the server refreshes its own
        assert private(stored_path(fresh["refresh_token"]))["refresh_token"].startswith("rt_")
        # A placeholder passed back as a token is no token: the held credential answers.
        again = await kept_call(
            session, seen, "get_agent", agent_id=made["agent"]["id"], access_token=made["access_token"]
        )
        assert again["id"] == made["agent"]["id"]
    secrets = [held["api_key"], held["private_key_jwk"]["d"], private(key_file)["api_key"]]
    secrets += [json.loads(p.read_text()).get(k) for p in key_file.parent.iterdir() for k in ("secret", "access_token")]
    for text in seen:
        for secret in filter(None, secrets):
            assert secret not in text
    # Restarted on the same file: the same agent, authenticated from what the file holds.
    async with stdio_session(env, tmp_path / "mcp2.log") as session:
        listed_agents = await kept_call(session, seen, "list_agents")
        assert made["agent"]["id"] in [a["id"] for a in listed_agents["items"]]
    assert private(file)["agent_id"] == made["agent"]["id"]


async def test_a_refused_credential_is_a_clear_error(tmp_path: Path, remote: RunningServer) -> None:
    file = tmp_path / "credentials.json"
    file.write_text(json.dumps({"agent_id": "agt_gone", "api_key": "ak_live_not_a_key"}))
    file.chmod(0o600)
    env = hermetic_env(AGENTAUTH_URL=remote.url, AGENTAUTH_CREDENTIALS_FILE=str(file))
    async with stdio_session(env, tmp_path / "mcp.log") as session:
        result = await session.call_tool("list_agents", {})
        assert result.is_error
        assert f"the credentials in {file} did not get a token: invalid_client" in text_of(result)
        assert "ak_live_not_a_key" not in text_of(result)
