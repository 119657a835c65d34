"""An agent's credentials file: what ``quickstart`` returned, kept out of prompts, transcripts and environments.

One JSON object, readable and writable by its owner only (mode 0600)::

    {
      "issuer": "https://auth.example.com",     # where the agent authenticates (optional)
      "agent_id": "9b1c...",                    # its OAuth client_id
      "did": "did:key:z6Mk...",
      "api_key": "ak_live_...",                  # client_credentials (optional when the key is there)
      "private_key_jwk": {"kty": "OKP", ...},    # the agent's did:key (private_key_jwt, jwt-bearer, DPoP)
      "refresh_token": "rt_..."                  # the newest of its family (optional)
    }

The agent client SDK reads it and writes the rotated refresh token back; ``agentauth-mcp`` and ``quickstart``
(with a credentials file configured) keep the secrets there instead of in the model's context.

``load`` refuses a file others may read or write (as ssh does with a private key) and a file that is not such an
object; its errors name the file and the member, never a value. ``save`` replaces the file atomically - a new
file, created 0600, fsynced, renamed over the old one - so a crash leaves the old file or the new one, never half
of one, and a reader never sees a partial write.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agentauth.keys import KeyPair
from agentauth.keys.jwk import JwkError

CREDENTIALS_VARIABLE = "AGENTAUTH_CREDENTIALS_FILE"
_MEMBERS = ("issuer", "agent_id", "did", "api_key", "private_key_jwk", "refresh_token")


class CredentialsFileError(Exception):
    """The credentials file cannot be used; the message says why and never holds a secret."""


@dataclass(frozen=True, slots=True)
class Credentials:
    agent_id: str
    did: str | None = None
    issuer: str | None = None
    api_key: str | None = None
    private_key_jwk: dict[str, Any] | None = None
    refresh_token: str | None = None

    def __repr__(self) -> str:  # never the secrets: a repr ends up in logs and tracebacks
        held = [name for name in ("api_key", "private_key_jwk", "refresh_token") if getattr(self, name)]
        return f"Credentials(agent_id={self.agent_id!r}, did={self.did!r}, issuer={self.issuer!r}, holds={held})"

    @classmethod
    def from_quickstart(cls, answer: dict[str, Any], issuer: str | None = None) -> Credentials:
        """From the JSON ``POST /api/v1/agents/quickstart`` (or the MCP ``quickstart`` tool) returned."""
        agent = answer.get("agent") or {}
        if not isinstance(agent, dict) or not isinstance(agent.get("id"), str):
            raise CredentialsFileError("not a quickstart answer: it has no agent.id")
        return cls(
            agent_id=agent["id"],
            did=agent.get("did"),
            issuer=issuer,
            api_key=answer.get("api_key"),
            private_key_jwk=answer.get("private_key_jwk"),
            refresh_token=answer.get("refresh_token"),
        )

    def key(self) -> KeyPair | None:
        """The agent's did:key pair, if the file holds its private JWK."""
        if self.private_key_jwk is None:
            return None
        try:
            return KeyPair.from_jwk(self.private_key_jwk)
        except JwkError as exc:  # its messages name members, never their values
            raise CredentialsFileError(f"private_key_jwk is not a usable Ed25519 private JWK: {exc}") from None

    def with_refresh_token(self, refresh_token: str | None) -> Credentials:
        return replace(self, refresh_token=refresh_token)

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: object, where: str = "credentials") -> Credentials:
        if not isinstance(data, dict):
            raise CredentialsFileError(f"{where} does not hold a JSON object")
        unknown = sorted(set(data) - set(_MEMBERS))
        if unknown:
            raise CredentialsFileError(f"{where}: unknown member(s) {', '.join(unknown)}")
        if not isinstance(data.get("agent_id"), str) or not data["agent_id"]:
            raise CredentialsFileError(f"{where}: agent_id (a string) is required")
        for name in ("issuer", "did", "api_key", "refresh_token"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise CredentialsFileError(f"{where}: {name} must be a string")
        if data.get("private_key_jwk") is not None and not isinstance(data["private_key_jwk"], dict):
            raise CredentialsFileError(f"{where}: private_key_jwk must be a JSON object (a JWK)")
        if not data.get("api_key") and not data.get("private_key_jwk") and not data.get("refresh_token"):
            raise CredentialsFileError(f"{where}: holds no credential (api_key, private_key_jwk or refresh_token)")
        credentials = cls(**data)
        credentials.key()  # a bad JWK fails here, not at the first token request
        return credentials


def load(path: str | os.PathLike[str]) -> Credentials:
    """The credentials in ``path``, which only its owner may read or write."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            # The mode of the file read (fstat), not of whatever the name pointed to a moment before.
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if os.name == "posix" and mode & 0o077:
                raise CredentialsFileError(
                    f"{path} is accessible to group or others (mode {mode:03o}); a credentials file must be "
                    f"readable by its owner only: chmod 600 {path}"
                )
            content = handle.read()
    except OSError as exc:
        raise CredentialsFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(content)
    except ValueError:
        # Not the parser's message: it may quote the file's content.
        raise CredentialsFileError(f"{path} does not hold JSON") from None
    return Credentials.from_json(data, str(path))


def save(path: str | os.PathLike[str], credentials: Credentials) -> Path:
    """Write ``credentials`` to ``path`` (mode 0600), replacing any file there atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    text = json.dumps(credentials.to_json(), indent=2, sort_keys=True) + "\n"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened for fsync
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path
