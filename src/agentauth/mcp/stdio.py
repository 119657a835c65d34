"""``agentauth-mcp``: the MCP tools over stdio, for clients that launch their servers as a process.

* ``AGENTAUTH_URL`` set: the tools call that AgentAuth's REST API (``remote``).
* otherwise: embedded on the local data directory with the same settings as ``agentauth serve`` - no network
  needed. The directory is ``AGENTAUTH_DATA_DIR``, by default a per-user one (``$XDG_DATA_HOME/agentauth``, else
  ``~/.local/share/agentauth``): an MCP client starts the server in a working directory of its own choosing, and a
  ``./data`` there would scatter tenants and keys over wherever that happens to be.

``AGENTAUTH_API_KEY`` is the key ``authenticate`` uses when called without one. stdout carries the protocol
only; logs go to stderr (``AGENTAUTH_MCP_LOG_LEVEL``, default WARNING) and never contain tokens or keys.

``AGENTAUTH_CREDENTIALS_FILE``: the agent's credentials file (0600; what the agent SDK writes). The server then
authenticates as that agent itself - tools need no ``access_token`` - and keeps the secrets tool results hand out
(API keys, tokens, webhook secrets) in 0600 files instead of the model's context; a file that does not exist yet
is where ``quickstart`` keeps the new agent's credentials (``held.py``).

``AGENTAUTH_AGENT_KEY`` (remote mode only): the *path* of a file holding the agent's private Ed25519 JWK (the
``private_key_jwk`` ``quickstart`` returned, as JSON) - a path, not the key itself, so the secret stays out of
the environment, process listings and client configuration files. The file must be readable by its owner only
(``chmod 600``; like ssh, a group- or world-readable key file is refused and the server does not start). With
it every token request carries a DPoP proof signed by that key (RFC 9449), so the tokens are bound to it
(``token_type: DPoP``), and every call with such a token sends ``Authorization: DPoP`` with a fresh proof;
nonces (``use_dpop_nonce``) are retried once (``remote.RestBackend``). Without it nothing changes: bearer tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from agentauth.bootstrap import build_services
from agentauth.keys import KeyPair
from agentauth.keys.jwk import JwkError
from agentauth.mcp.backend import Backend
from agentauth.mcp.embedded import EmbeddedBackend
from agentauth.mcp.held import HeldCredential
from agentauth.mcp.remote import RestBackend
from agentauth.mcp.server import build_server
from agentauth.sdk.credentials import CREDENTIALS_VARIABLE, CredentialsFileError
from agentauth.settings import Settings

log = logging.getLogger("agentauth.mcp")
AGENT_KEY_VARIABLE = "AGENTAUTH_AGENT_KEY"


class StartupError(Exception):
    """The server cannot start as configured; the message says why (and never holds key material)."""


class AgentKeyError(StartupError):
    """``AGENTAUTH_AGENT_KEY`` cannot be used; the message says why and never holds key material."""


def load_agent_key(path: Path) -> KeyPair:
    """The agent's key from the private JWK in ``path``, which only its owner may read."""
    try:
        with path.open("rb") as handle:
            # The mode of the file read (fstat), not of whatever the name pointed to a moment before.
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if os.name == "posix" and mode & 0o077:
                # As ssh does with an unprotected private key: refuse rather than use a key others may have copied.
                raise AgentKeyError(
                    f"{AGENT_KEY_VARIABLE}: {path} is accessible to group or others (mode {mode:03o}); "
                    f"a private key must be readable by its owner only: chmod 600 {path}"
                )
            content = handle.read()
    except OSError as exc:
        raise AgentKeyError(f"{AGENT_KEY_VARIABLE}: cannot read {path}: {exc.strerror}") from None
    try:
        jwk = json.loads(content)
    except ValueError:
        # Not the parser's message: it may quote the file's content.
        raise AgentKeyError(f"{AGENT_KEY_VARIABLE}: {path} does not hold a JSON private JWK") from None
    if not isinstance(jwk, dict):
        raise AgentKeyError(f"{AGENT_KEY_VARIABLE}: {path} does not hold a JSON private JWK")
    try:
        return KeyPair.from_jwk(jwk)
    except JwkError as exc:  # its messages name members, never their values
        raise AgentKeyError(f"{AGENT_KEY_VARIABLE}: {path} is no private Ed25519 JWK: {exc}") from None


def default_data_dir() -> Path:
    """The embedded server's data directory when ``AGENTAUTH_DATA_DIR`` is not set: per user (XDG base
    directories), never the caller's working directory."""
    base = os.environ.get("XDG_DATA_HOME")
    if base and Path(base).is_absolute():
        return Path(base) / "agentauth"
    try:
        home = Path.home()
    except RuntimeError:
        raise StartupError("no home directory to keep the embedded data in: set AGENTAUTH_DATA_DIR") from None
    return home / ".local" / "share" / "agentauth"


@contextlib.asynccontextmanager
async def open_backend(url: str | None, agent_key: KeyPair | None = None) -> AsyncIterator[Backend]:
    if url:
        remote = RestBackend(url, agent_key=agent_key)
        try:
            yield remote
        finally:
            await remote.aclose()
        return
    # Nothing may reach stdout but the protocol: keep anything printed while opening the database off it.
    with contextlib.redirect_stdout(sys.stderr):
        settings = Settings() if "AGENTAUTH_DATA_DIR" in os.environ else Settings(data_dir=default_data_dir())
        services = await build_services(settings)
    task = asyncio.create_task(services.maintain())
    try:
        yield EmbeddedBackend(lambda: services)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await services.close()


def agent_key_from_env(url: str | None) -> KeyPair | None:
    path = os.environ.get(AGENT_KEY_VARIABLE) or None
    if path is None:
        return None
    if not url:
        # Embedded, tokens never travel over HTTP: binding them would protect nothing, and silently issuing
        # bearer tokens to a client that asked for bound ones would be worse.
        raise AgentKeyError(f"{AGENT_KEY_VARIABLE} needs AGENTAUTH_URL: DPoP proofs are for a remote AgentAuth")
    return load_agent_key(Path(path).expanduser())


def held_from_env() -> HeldCredential | None:
    """The credential of ``AGENTAUTH_CREDENTIALS_FILE`` (a file that does not exist yet is where quickstart will
    keep the new agent's)."""
    path = os.environ.get(CREDENTIALS_VARIABLE) or None
    if path is None:
        return None
    try:
        return HeldCredential(Path(path).expanduser())
    except CredentialsFileError as exc:
        raise StartupError(f"{CREDENTIALS_VARIABLE}: {exc}") from None


async def serve(agent_key: KeyPair | None = None, held: HeldCredential | None = None) -> None:
    url = os.environ.get("AGENTAUTH_URL") or None
    api_key = os.environ.get("AGENTAUTH_API_KEY") or None
    async with open_backend(url, agent_key) as backend:
        server = build_server(backend, token_in_header=False, default_api_key=api_key, held=held)
        await server.run_stdio_async()


def main() -> None:
    level = os.environ.get("AGENTAUTH_MCP_LOG_LEVEL", "WARNING").upper()
    if level not in logging.getLevelNamesMapping():
        level = "WARNING"
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        # Before anything starts: a client launching the server sees it exit, with the reason on stderr.
        agent_key = agent_key_from_env(os.environ.get("AGENTAUTH_URL") or None)
        held = held_from_env()
        if not os.environ.get("AGENTAUTH_URL") and "AGENTAUTH_DATA_DIR" not in os.environ:
            default_data_dir()
    except StartupError as exc:
        sys.exit(f"agentauth-mcp: {exc}")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, agent_key, held)


if __name__ == "__main__":
    main()
