"""The embedded stdio server's data directory (issue 16 item 6): without ``AGENTAUTH_DATA_DIR`` it is per user
(``$XDG_DATA_HOME/agentauth``, else ``~/.local/share/agentauth``), never the working directory the MCP client
happened to start it in; with no home directory at all it refuses to start and says what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp_support import call, hermetic_env, stdio_session

from agentauth.mcp import stdio

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("xdg", [False, True])
async def test_the_default_data_directory_is_per_user(tmp_path: Path, xdg: bool) -> None:
    home, workdir = tmp_path / "home", tmp_path / "client-cwd"
    home.mkdir()
    workdir.mkdir()
    env = hermetic_env(HOME=str(home))
    env.pop("XDG_DATA_HOME", None)
    if xdg:
        env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    async with stdio_session(env, workdir / "stdio.log") as session:
        made = await call(session, "quickstart", name="per-user", agent_type="tool")
        assert made["agent"]["id"].startswith("agt_")
    expected = (tmp_path / "xdg" / "agentauth") if xdg else (home / ".local" / "share" / "agentauth")
    assert (expected / "agentauth.db").exists()
    assert not (workdir / "data").exists()


def test_without_a_home_directory_it_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(
        stdio.StartupError, match="no home directory to keep the embedded data in: set AGENTAUTH_DATA_DIR"
    ):
        stdio.default_data_dir()
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    with pytest.raises(stdio.StartupError):
        stdio.default_data_dir()
