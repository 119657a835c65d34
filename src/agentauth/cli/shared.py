"""What every ``agentauth`` command shares: exit statuses, one-line failures, settings, output, files, HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from agentauth import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from agentauth.settings import Settings

EXIT_INVALID = 1
EXIT_REVOKED = 2
EXIT_USAGE = 64  # sysexits.h EX_USAGE: not 2, which `verify` uses for "revoked"


class CliError(Exception):
    """A failure to report as one line."""

    exit_code = EXIT_INVALID


class CliUsageError(CliError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # emoji=False: a DID such as did:key:z6Mk... must not turn into a key emoji. Messages on stderr stay one
    # line however narrow the terminal (soft_wrap).
    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=stderr)


def _note(message: str) -> None:
    """A remark for the person at the terminal (stderr), kept out of the output scripts read."""
    _console(stderr=True).print(message, markup=False)


def _settings(**overrides: object) -> Settings:
    from pydantic import ValidationError

    from agentauth.settings import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise CliError(f"invalid configuration: {problems}") from None


def _read_text_arg(value: str, what: str) -> str:
    """A literal value, ``@path`` (file contents) or ``-`` (standard input), stripped."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {what} from {value[1:]}: {exc.strerror}") from None
    else:
        text = value
    text = text.strip()
    if not text:
        raise CliError(f"the {what} is empty")
    return text


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _write_file(path: Path, content: str, *, private: bool = False, force: bool = False) -> None:
    if path.exists() and not force:
        raise CliError(f"{path} exists; pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if private:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # also when --force overwrites a file that was readable by others
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
        else:
            path.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None


def _http_client() -> Any:
    import httpx

    from agentauth.sdk.http import DEFAULT_TIMEOUT_SECONDS

    return httpx.Client(
        timeout=DEFAULT_TIMEOUT_SECONDS, follow_redirects=False, headers={"user-agent": f"agentauth-cli/{__version__}"}
    )


def _get(url: str) -> Any:
    import httpx

    with _http_client() as http:
        try:
            return http.get(url)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _issuer_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise CliError(f"--issuer must be an http(s) URL, not {value!r}")
    return value.rstrip("/")
