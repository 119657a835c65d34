"""Commands a third-party verifier runs: verify credentials, resolve DIDs, export JWKS, mirror status lists."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from agentauth.cli.shared import (
    EXIT_INVALID,
    EXIT_REVOKED,
    CliError,
    CliUsageError,
    _console,
    _get,
    _issuer_url,
    _note,
    _print_json,
    _read_text_arg,
    _settings,
    _write_file,
)

_RESULT_STYLE = {"pass": "[green]pass[/green]", "fail": "[bold red]FAIL[/bold red]", "skip": "[dim]skip[/dim]"}


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
    dpop_proof: Annotated[
        str | None,
        typer.Option(
            metavar="PROOF",
            help="The DPoP proof (DPoP header) a DPoP-bound access token came with; @FILE, - for stdin. "
            "Needs --htm and --htu.",
        ),
    ] = None,
    htm: Annotated[
        str | None, typer.Option(metavar="METHOD", help="The HTTP method of the request the proof was made for.")
    ] = None,
    htu: Annotated[
        str | None, typer.Option(metavar="URI", help="The URI of the request the proof was made for.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify an access token, identity/delegation credential, status list or presentation.

    Trust comes from --issuer (online: its JWKS) or --jwks (offline), revocation from the issuer's
    status lists or --status-dir. Each check is shown with its result. A DPoP-bound access token
    (RFC 9449) verifies only with --dpop-proof, the proof of its request (--htm, --htu): signed by
    the token's key, for that method and URI, with the token's hash, issued within the last minute.

    Exit status: 0 valid, 1 invalid, 2 revoked or suspended.
    """
    from agentauth.sdk.report import explain
    from agentauth.vc import DirectoryStatusLists

    text = _read_text_arg(token, "token")
    if (issuer is None) == (jwks is None):
        raise CliUsageError("give exactly one of --issuer URL (online) or --jwks FILE (offline)")
    dpop = _dpop_request(dpop_proof, htm, htu, token_from_stdin=token == "-")
    if status_dir is not None and not status_dir.is_dir():
        raise CliError(f"--status-dir {status_dir} is not a directory")
    status_source = DirectoryStatusLists(status_dir) if status_dir is not None else None
    options: dict[str, Any] = {"audience": audience, "nonce": nonce, "check_status": not skip_status, "dpop": dpop}
    if issuer is not None:
        from agentauth.sdk import OnlineVerifier

        # An inspection tool: the audience is checked when --audience names one (the report says so otherwise).
        with OnlineVerifier(
            _issuer_url(issuer), any_audience=True, status_source=status_source, check_status=not skip_status
        ) as online:
            try:
                report = explain(online, text, **options)
            except ValueError as exc:
                raise _usage(exc) from None
    else:
        assert jwks is not None
        offline = _offline_verifier(jwks, text, status_source, not skip_status)
        try:
            report = explain(offline, text, **options)
        except ValueError as exc:
            raise _usage(exc) from None
    if as_json:
        _print_json(report.to_json())
    else:
        _print_report(report)
    if not report.valid:
        raise typer.Exit(EXIT_REVOKED if report.revoked or report.suspended else EXIT_INVALID)


def _dpop_request(proof: str | None, htm: str | None, htu: str | None, *, token_from_stdin: bool) -> Any:
    """The DPoP request (proof, method, URI) the access token is checked with, or None without --dpop-proof."""
    if proof is None:
        if htm is not None or htu is not None:
            raise CliUsageError("--htm and --htu describe the request of a --dpop-proof: pass it too")
        return None
    if htm is None or htu is None:
        raise CliUsageError("--dpop-proof needs the request it was made for: pass --htm METHOD and --htu URI")
    if proof == "-" and token_from_stdin:
        raise CliUsageError("the token and --dpop-proof cannot both come from standard input")
    from agentauth.vc.dpop import DPoPRequest
    from agentauth.vc.nonces import NonceRegistry

    # HTTP methods are case-sensitive (RFC 9110 section 9.1), but every standard one is upper case.
    return DPoPRequest(_read_text_arg(proof, "DPoP proof"), htm.upper(), htu, NonceRegistry())


def _usage(exc: ValueError) -> CliUsageError:
    if "DPoP" in str(exc):
        return CliUsageError(f"{exc}: leave out --dpop-proof")
    return CliUsageError(f"{exc}: pass --audience and --nonce")


def _offline_verifier(jwks_path: Path, token: str, status_source: Any, check_status: bool) -> Any:
    from agentauth.sdk.offline import JwksFileError, issuer_url_for, load_jwks, offline_verifier

    try:
        document = load_jwks(jwks_path)
        issuer_url = issuer_url_for(document, token)
        return offline_verifier(
            document, any_audience=True, issuer_url=issuer_url, status_source=status_source, check_status=check_status
        )
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
    elif report.revoked or report.suspended:
        word = "REVOKED" if report.revoked else "SUSPENDED"
        console.print(f"[bold red]{word}[/bold red] {escape(str(report.detail))}")
    else:
        console.print(f"[bold red]INVALID[/bold red] {report.code}: {escape(str(report.detail))}")


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
    with OnlineVerifier(base, any_audience=True, check_status=False) as verifier:
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
