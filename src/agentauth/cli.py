"""The ``agentauth`` command: run the service, manage its keys, and verify, present and inspect credentials.

Commands import what they need when they run, so ``agentauth verify`` starts without loading the server.
Failures print one line (``error: ...``) and never a traceback (set ``AGENTAUTH_DEBUG=1`` to see one).
Exit status: 0 success; 1 failure (for ``verify``: invalid); 2 revoked (``verify``); 64 usage error.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer

from agentauth import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from agentauth.settings import Settings

EXIT_INVALID = 1
EXIT_REVOKED = 2
EXIT_USAGE = 64  # sysexits.h EX_USAGE: not 2, which `verify` uses for "revoked"

app = typer.Typer(
    help="AgentAuth: identity and authentication for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
keys_app = typer.Typer(
    help="Issuer signing keys (of the configured service: AGENTAUTH_* settings).", no_args_is_help=True
)
did_app = typer.Typer(
    help="Decentralized identifiers: make a did:key, resolve did:key and did:web.", no_args_is_help=True
)
jwks_app = typer.Typer(help="The issuer's public keys (JWKS), for offline verifiers.", no_args_is_help=True)
status_app = typer.Typer(help="Bitstring status lists (revocation), for offline verifiers.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(did_app, name="did")
app.add_typer(jwks_app, name="jwks")
app.add_typer(status_app, name="status-list")


class CliError(Exception):
    """A failure to report as one line."""

    exit_code = EXIT_INVALID


class CliUsageError(CliError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE


# -- helpers -----------------------------------------------------------------------------------------------


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


# -- serve -------------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (AGENTAUTH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (AGENTAUTH_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the REST API (and MCP) over HTTP. Configuration: AGENTAUTH_* environment variables."""
    import uvicorn

    settings = _settings(host=host, port=port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        "agentauth.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        # uvicorn believes X-Forwarded-For from any local peer by default; the app applies
        # AGENTAUTH_TRUSTED_PROXIES itself (api.middleware.TrustedProxiesMiddleware).
        proxy_headers=False,
    )


# -- verify ------------------------------------------------------------------------------------------------

_RESULT_STYLE = {"pass": "[green]pass[/green]", "fail": "[bold red]FAIL[/bold red]", "skip": "[dim]skip[/dim]"}


@app.command()
def verify(
    token: Annotated[
        str,
        typer.Argument(
            metavar="TOKEN", help="The token, credential or presentation; @FILE reads it from a file, - from stdin."
        ),
    ],
    issuer: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Issuer URL: fetch its JWKS (and status lists, unless --status-dir)."),
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="JWKS file (from `agentauth jwks export`): verify fully offline."),
    ] = None,
    status_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Directory of status lists (from `agentauth status-list fetch`).")
    ] = None,
    audience: Annotated[
        str | None, typer.Option(metavar="AUD", help="Require this audience (aud); required for presentations.")
    ] = None,
    nonce: Annotated[
        str | None, typer.Option(metavar="NONCE", help="The challenge a presentation must answer.")
    ] = None,
    skip_status: Annotated[bool, typer.Option("--skip-status", help="Do not check revocation status.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify an access token, identity/delegation credential, status list or presentation.

    Trust comes from --issuer (online: its JWKS) or --jwks (offline), revocation from the issuer's
    status lists or --status-dir. Each check is shown with its result.

    Exit status: 0 valid, 1 invalid, 2 revoked.
    """
    from agentauth.sdk.report import explain
    from agentauth.vc import DirectoryStatusLists

    text = _read_text_arg(token, "token")
    if (issuer is None) == (jwks is None):
        raise CliUsageError("give exactly one of --issuer URL (online) or --jwks FILE (offline)")
    if status_dir is not None and not status_dir.is_dir():
        raise CliError(f"--status-dir {status_dir} is not a directory")
    status_source = DirectoryStatusLists(status_dir) if status_dir is not None else None
    if issuer is not None:
        from agentauth.sdk import OnlineVerifier

        with OnlineVerifier(_issuer_url(issuer), status_source=status_source, check_status=not skip_status) as online:
            try:
                report = explain(online, text, audience=audience, nonce=nonce, check_status=not skip_status)
            except ValueError as exc:
                raise CliUsageError(f"{exc}: pass --audience and --nonce") from None
    else:
        assert jwks is not None
        offline = _offline_verifier(jwks, text, status_source, not skip_status)
        try:
            report = explain(offline, text, audience=audience, nonce=nonce, check_status=not skip_status)
        except ValueError as exc:
            raise CliUsageError(f"{exc}: pass --audience and --nonce") from None
    if as_json:
        _print_json(report.to_json())
    else:
        _print_report(report)
    if not report.valid:
        raise typer.Exit(EXIT_REVOKED if report.revoked else EXIT_INVALID)


def _offline_verifier(jwks_path: Path, token: str, status_source: Any, check_status: bool) -> Any:
    from agentauth.sdk.offline import JwksFileError, issuer_url_for, load_jwks, offline_verifier

    try:
        document = load_jwks(jwks_path)
        issuer_url = issuer_url_for(document, token)
        return offline_verifier(document, issuer_url=issuer_url, status_source=status_source, check_status=check_status)
    except JwksFileError as exc:
        raise CliError(str(exc)) from None


def _print_report(report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = _console()
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        table.add_row(check.name, _RESULT_STYLE[check.result], Text(check.detail))
    kind = (report.kind or "token").replace("_", " ")
    console.print(f"[bold]{kind}[/bold]")
    console.print(table)
    if report.valid:
        subject = (report.claims or {}).get("sub") or (report.claims or {}).get("iss")
        console.print(f"[bold green]VALID[/bold green] {kind} of {escape(str(subject))}")
    elif report.revoked:
        console.print(f"[bold red]REVOKED[/bold red] {escape(str(report.detail))}")
    else:
        console.print(f"[bold red]INVALID[/bold red] {report.code}: {escape(str(report.detail))}")


# -- did ---------------------------------------------------------------------------------------------------


@did_app.command("generate")
def did_generate(
    out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write the private JWK to this file (mode 0600) instead of printing it."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate an Ed25519 key pair and its did:key (the identity an agent can register with)."""
    from agentauth.did import encode_did_key
    from agentauth.keys import KeyPair

    pair = KeyPair.generate()
    did = encode_did_key(pair.public.raw)
    private_jwk = pair.private_jwk() | {"kid": f"{did}#{did[len('did:key:') :]}"}
    if out is not None:
        _write_file(
            out, orjson.dumps(private_jwk, option=orjson.OPT_INDENT_2).decode() + "\n", private=True, force=force
        )
    if as_json:
        result: dict[str, Any] = {"did": did, "public_jwk": pair.public.jwk()}
        result |= {"key_file": str(out)} if out is not None else {"private_jwk": private_jwk}
        _print_json(result)
        return
    typer.echo(did)
    if out is not None:
        _note(f"private key written to {out} (keep it secret)")
    else:
        typer.echo(orjson.dumps(private_jwk).decode())
        _note("the second line is the private key: keep it secret (or use --out FILE)")


@did_app.command("resolve")
def did_resolve(
    did: Annotated[str, typer.Argument(metavar="DID", help="A did:key or did:web identifier.")],
    form: Annotated[
        str,
        typer.Option(
            metavar="FORM", help="did:key representation: Multikey, JsonWebKey2020 or Ed25519VerificationKey2018."
        ),
    ] = "Multikey",
    http: Annotated[
        bool, typer.Option("--http", help="did:web over plain http (local development only; the spec says https).")
    ] = False,
) -> None:
    """Print the DID document: computed for did:key, fetched from the host for did:web."""
    from agentauth.did import DidKeyError, did_key_document, did_web_to_url
    from agentauth.did.web import DidWebError

    if did.startswith("did:key:"):
        if form not in ("Multikey", "JsonWebKey2020", "Ed25519VerificationKey2018"):
            raise CliUsageError(f"--form must be Multikey, JsonWebKey2020 or Ed25519VerificationKey2018, not {form!r}")
        try:
            _print_json(did_key_document(did, form))  # type: ignore[arg-type]
        except DidKeyError as exc:
            raise CliError(f"invalid did:key: {exc}") from None
        return
    if did.startswith("did:web:"):
        try:
            url = did_web_to_url(did, "http" if http else "https")
        except DidWebError as exc:
            raise CliError(f"invalid did:web: {exc}") from None
        response = _get(url)
        if response.status_code != 200:
            raise CliError(f"{url} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise CliError(f"{url} did not return JSON") from None
        # DID Core section 7.1.2 / did:web 3.3: the document's id must be the DID that was resolved.
        if not isinstance(document, dict) or document.get("id") != did.split("#", 1)[0]:
            raise CliError(f"{url} returned a document for {document.get('id') if isinstance(document, dict) else '?'}")
        _print_json(document)
        return
    raise CliError("only did:key and did:web can be resolved")


# -- keys --------------------------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Promote the next key to active, retire the active one, publish a fresh next key."""
    import asyncio

    from agentauth.bootstrap import build_services, utcnow

    async def run() -> str:
        svc = await build_services(_settings())
        try:
            ring = await svc.keys.rotate(utcnow(), svc.key_retention())
            return ring.active.kid
        finally:
            await svc.close()

    typer.echo(f"active key: {asyncio.run(run())}")


@keys_app.command("revoke")
def keys_revoke(
    kid: Annotated[str, typer.Argument(metavar="KID", help="The kid to drop (as shown by `agentauth keys list`).")],
) -> None:
    """Key compromise: drop KID from the JWKS and DID document now, and revoke everything it signed."""
    import asyncio

    from agentauth.bootstrap import build_services
    from agentauth.errors import NotFound
    from agentauth.issuer.compromise import revoke_signing_key
    from agentauth.issuer.context import RequestContext

    async def run() -> int:
        svc = await build_services(_settings())
        try:
            return await revoke_signing_key(svc.keys, svc.core, kid, RequestContext())
        finally:
            await svc.close()

    try:
        count = asyncio.run(run())
    except NotFound as exc:
        raise CliError(exc.description) from None
    typer.echo(f"dropped {kid}; revoked {count} credentials it signed")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print the keys as JSON.")] = False) -> None:
    """Show the published keys and their states."""
    import asyncio

    from agentauth.bootstrap import build_services

    async def run() -> list[dict[str, Any]]:
        svc = await build_services(_settings())
        try:
            return [
                {
                    "kid": k.kid,
                    "state": k.state.value,
                    "created_at": k.created_at.isoformat(),
                    "activated_at": k.activated_at.isoformat() if k.activated_at else None,
                    "remove_after": k.remove_after.isoformat() if k.remove_after else None,
                }
                for k in svc.keys.ring.keys
            ]
        finally:
            await svc.close()

    keys = asyncio.run(run())
    if as_json:
        _print_json(keys)
        return
    for key in keys:
        typer.echo(f"{key['state']:8} {key['kid']}")


# -- jwks --------------------------------------------------------------------------------------------------


@jwks_app.command("export")
def jwks_export(
    issuer: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Fetch from this issuer; default: the configured service's key ring."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write to this file instead of standard output.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
) -> None:
    """Export the issuer's JWKS for air-gapped verifiers (`agentauth verify --jwks FILE`).

    The file is a JWK Set with the issuer URL in an extra `issuer` member (RFC 7517 section 5 allows it).
    """
    if issuer is not None:
        document = _fetch_jwks(_issuer_url(issuer))
        issuer_url = _issuer_url(issuer)
    else:
        import asyncio

        from agentauth.bootstrap import build_services

        async def run() -> tuple[str, dict[str, Any]]:
            svc = await build_services(_settings())
            try:
                return svc.settings.issuer_url, dict(svc.jwks())
            finally:
                await svc.close()

        issuer_url, document = asyncio.run(run())
    exported = {"issuer": issuer_url, "keys": document["keys"]}
    text = orjson.dumps(exported, option=orjson.OPT_INDENT_2).decode() + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        _write_file(out, text, force=force)
        _note(f"wrote {len(exported['keys'])} keys of {issuer_url} to {out}")


def _fetch_jwks(issuer_url: str) -> dict[str, Any]:
    from agentauth.sdk.http import FetchError, jwks_url, parse_jwks

    response = _get(jwks_url(issuer_url))
    try:
        return parse_jwks(response.status_code, response.content)
    except FetchError as exc:
        raise CliError(f"{jwks_url(issuer_url)}: {exc}") from None


# -- status lists ------------------------------------------------------------------------------------------


@status_app.command("fetch")
def status_list_fetch(
    issuer: Annotated[str, typer.Option(metavar="URL", help="The issuer URL the lists belong to.")],
    directory: Annotated[Path, typer.Option("--dir", metavar="DIR", help="Where to save them (created if missing).")],
    lists: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[LIST]...",
            help="List ids or URLs; default: every list the issuer has published (1, 2, ... until 404).",
            show_default=False,
        ),
    ] = None,
    for_token: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="TOKEN",
            help="Fetch the lists this token, credential or presentation (or @FILE) refers to.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Save signed status lists into a directory, for `agentauth verify --status-dir DIR`.

    Each list is verified against the issuer's keys before it is saved.
    """
    from agentauth.sdk import FetchError, OnlineVerifier
    from agentauth.sdk.mirror import list_url, mirror_status_lists, status_list_urls
    from agentauth.vc import VerificationError

    base = _issuer_url(issuer)
    urls: list[str] = []
    for item in lists or []:
        if item.startswith(("http://", "https://")):
            urls.append(item)
        elif item.isdecimal():
            urls.append(list_url(base, int(item)))
        else:
            raise CliUsageError(f"{item!r} is neither a status list id nor a URL")
    if for_token is not None:
        try:
            found = status_list_urls(_read_text_arg(for_token, "token"))
        except VerificationError as exc:
            raise CliError(f"--for: not a compact JWT ({exc.detail})") from None
        if not found:
            raise CliError("--for: it carries no status entry")
        urls += found
    with OnlineVerifier(base, check_status=False) as verifier:
        try:
            saved = list(mirror_status_lists(verifier, directory, urls))
        except FetchError as exc:
            raise CliError(str(exc)) from None
        except VerificationError as exc:
            raise CliError(f"a status list does not verify ({exc.code}: {exc.detail})") from None
        except OSError as exc:
            raise CliError(f"cannot write to {directory}: {exc.strerror}") from None
    if as_json:
        entries = [{"url": s.url, "file": str(s.file), "size": s.size, "revoked": s.set_bits} for s in saved]
        _print_json({"directory": str(directory), "lists": entries})
        return
    for entry in saved:
        typer.echo(f"{entry.url} -> {entry.file} ({entry.set_bits} set bits of {entry.size})")
    _note(f"saved {len(saved)} status list(s) to {directory}")


# -- present -----------------------------------------------------------------------------------------------


@app.command()
def present(
    credentials: Annotated[
        list[str],
        typer.Argument(
            metavar="CREDENTIAL", help="Credentials to wrap (compact JWTs, or @FILE each), issued to your did:key."
        ),
    ],
    key: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="Your private JWK file (from `agentauth did generate --out`, or a saved quickstart response).",
        ),
    ],
    audience: Annotated[str, typer.Option(metavar="AUD", help="The verifier you present to (its aud).")],
    nonce: Annotated[str, typer.Option(metavar="NONCE", help="The verifier's challenge.")],
    lifetime: Annotated[
        int, typer.Option(min=10, max=3600, metavar="SECONDS", help="Seconds the presentation stays valid.")
    ] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a Verifiable Presentation signed by your did:key for a verifier's audience and nonce."""
    from datetime import UTC, datetime, timedelta

    from agentauth.did import encode_did_key
    from agentauth.keys import KeyPair
    from agentauth.keys.jwk import JwkError
    from agentauth.vc import create_presentation

    try:
        document = orjson.loads(key.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read --key {key}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise CliError(f"--key {key} is not a JSON Web Key") from None
    if isinstance(document, dict) and isinstance(document.get("private_key_jwk"), dict):
        document = document["private_key_jwk"]  # a saved quickstart response
    try:
        pair = KeyPair.from_jwk(document)
    except (JwkError, TypeError, AttributeError):
        raise CliError(f"--key {key} is not a private Ed25519 JWK (kty OKP, crv Ed25519, with d)") from None
    texts = [_read_text_arg(c, "credential") for c in credentials]
    now = datetime.now(UTC)
    vp = create_presentation(pair, texts, audience=audience, nonce=nonce, now=now, lifetime=timedelta(seconds=lifetime))
    if as_json:
        did = encode_did_key(pair.public.raw)
        _print_json(
            {"presentation": vp, "holder": did, "audience": audience, "nonce": nonce, "credentials": len(texts)}
        )
        return
    typer.echo(vp)


# -- entry point -------------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentauth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """AgentAuth: identity and authentication for AI agents."""


def _fail(message: str, code: int) -> NoReturn:
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}")
    sys.exit(code)


def _click_failure(exc: Exception) -> tuple[str, int] | None:
    """(message, exit status) for the command-line parser's own exceptions, else None.

    Matched by class name: typer ships its own copy of click, whose exception classes are not public.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoArgsIsHelpError" in names:
        return "", 0  # the help is already printed
    if "UsageError" in names:
        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return f"{exc.format_message()}{where}", EXIT_USAGE  # type: ignore[attr-defined]
    if "ClickException" in names:
        return exc.format_message(), int(getattr(exc, "exit_code", 1))  # type: ignore[attr-defined]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every failure ends as one line on stderr and an exit status, never a traceback."""
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="agentauth", standalone_mode=False)
    except CliError as exc:
        _fail(str(exc), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted", 130)
    except Exception as exc:
        failure = _click_failure(exc)
        if failure is not None:
            message, code = failure
            if message:
                _fail(message, code)
            sys.exit(code)
        if os.environ.get("AGENTAUTH_DEBUG") == "1":
            raise
        _fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, EXIT_INVALID)
    sys.exit(result if isinstance(result, int) else 0)
