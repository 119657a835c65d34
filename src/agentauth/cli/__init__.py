"""The ``agentauth`` command: run the service, manage its keys, and verify, present and inspect credentials.

Commands import what they need when they run, so ``agentauth verify`` starts without loading the server.
Failures print one line (``error: ...``) and never a traceback (set ``AGENTAUTH_DEBUG=1`` to see one).
Exit status: 0 success; 1 failure (for ``verify``: invalid); 2 revoked (``verify``); 64 usage error.

Commands are grouped by who runs them: ``operator`` (serve, keys), ``verifier`` (verify, did resolve, jwks,
status-list), ``agent`` (did generate, present). They are registered here, once, in the order ``--help`` lists them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from agentauth import __version__
from agentauth.cli import agent, database, operator, verifier, webhooks
from agentauth.cli.shared import EXIT_INVALID, EXIT_USAGE, CliError, CliUsageError, _console

__all__ = ["CliError", "CliUsageError", "app", "main"]

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
db_app = typer.Typer(
    help="The database schema (migrations) of the configured service: AGENTAUTH_* settings.", no_args_is_help=True
)
admin_app = typer.Typer(
    help="Operator views and the kill switch of the configured service (AGENTAUTH_* settings).", no_args_is_help=True
)
status_app = typer.Typer(help="Bitstring status lists (revocation), for offline verifiers.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(did_app, name="did")
app.add_typer(jwks_app, name="jwks")
app.add_typer(status_app, name="status-list")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(admin_app, name="admin")
admin_app.command("stats")(operator.admin_stats)
admin_app.command("suspend")(operator.admin_suspend)
admin_app.command("resume")(operator.admin_resume)
admin_app.command("stop")(operator.admin_stop)

app.command()(operator.serve)
app.command()(verifier.verify)
app.command()(agent.present)
did_app.command("generate")(agent.did_generate)
did_app.command("resolve")(verifier.did_resolve)
keys_app.command("rotate")(operator.keys_rotate)
keys_app.command("revoke")(operator.keys_revoke)
keys_app.command("list")(operator.keys_list)
db_app.command("current")(database.db_current)
db_app.command("upgrade")(database.db_upgrade)
db_app.command("downgrade")(database.db_downgrade)
jwks_app.command("export")(verifier.jwks_export)
status_app.command("fetch")(verifier.status_list_fetch)


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
