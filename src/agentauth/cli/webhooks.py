"""``agentauth webhooks ...``: a tenant's webhooks from the terminal, through the REST API of a running AgentAuth -
as the tenant's root agent, with its credentials file (the agent SDK gets and renews the token) or a token.

Output is the API's JSON; a refusal is one line with the OAuth error and its description.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from agentauth.cli.shared import CliError, _http_client, _issuer_url, _print_json

app = typer.Typer(no_args_is_help=True, help="A tenant's webhooks: signed event delivery (Standard Webhooks).")

Issuer = Annotated[
    str | None,
    typer.Option("--issuer", help="AgentAuth's URL (AGENTAUTH_URL; default: the credentials file's issuer)."),
]
CredentialsFile = Annotated[
    str | None,
    typer.Option(
        "--credentials-file", help="The root agent's credentials file (AGENTAUTH_CREDENTIALS_FILE), mode 0600."
    ),
]
Token = Annotated[str | None, typer.Option("--token", help="An access token instead (AGENTAUTH_ACCESS_TOKEN).")]
HookId = Annotated[str, typer.Argument(metavar="WEBHOOK_ID", help="The webhook's id (wh_...).")]
Events = Annotated[
    list[str] | None, typer.Option("--event", help="An event type or family (agent.*); repeat. Default: *.")
]


def _call(
    method: str,
    path: str,
    issuer: str | None,
    credentials_file: str | None,
    token: str | None,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    from agentauth.sdk.agent import AgentClient
    from agentauth.sdk.credentials import CredentialsFileError, load

    token = token or os.environ.get("AGENTAUTH_ACCESS_TOKEN")
    credentials_file = credentials_file or os.environ.get("AGENTAUTH_CREDENTIALS_FILE")
    issuer = issuer or os.environ.get("AGENTAUTH_URL")
    agent: AgentClient | None = None
    if token is None:
        if credentials_file is None:
            raise CliError("give --credentials-file (or AGENTAUTH_CREDENTIALS_FILE) or --token")
        try:
            credentials = load(credentials_file)
        except CredentialsFileError as exc:
            raise CliError(str(exc)) from None
        issuer = issuer or credentials.issuer
        agent = AgentClient(credentials)
    if issuer is None:
        raise CliError("give --issuer (or AGENTAUTH_URL): the credentials file names no issuer")
    base = _issuer_url(issuer)
    auth: Any = agent.auth() if agent is not None else None
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with _http_client() as http:
            response = http.request(method, base + path, json=body, params=params, headers=headers, auth=auth)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {base}: {exc or type(exc).__name__}") from None
    except Exception as exc:  # the SDK's TokenError: the credentials did not get a token
        raise CliError(f"cannot authenticate: {exc}") from None
    finally:
        if agent is not None:
            agent.close()
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            raise CliError(f"HTTP {response.status_code} from {base}{path}") from None
        raise CliError(f"{problem.get('error')}: {problem.get('error_description')}")
    return response.json() if response.content else None


@app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="Where events are POSTed: an https URL.")],
    event: Events = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    issuer: Issuer = None,
    credentials_file: CredentialsFile = None,
    token: Token = None,
) -> None:
    """Create a webhook (tenant root only). Prints it with its signing secret - shown this once."""
    body = {"url": url, "events": event or ["*"], "description": description}
    _print_json(_call("POST", "/api/v1/webhooks", issuer, credentials_file, token, body=body))


@app.command("list")
def list_(issuer: Issuer = None, credentials_file: CredentialsFile = None, token: Token = None) -> None:
    """The tenant's webhooks."""
    _print_json(_call("GET", "/api/v1/webhooks", issuer, credentials_file, token, params={"limit": 100}))


@app.command("update")
def update(
    webhook_id: HookId,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    event: Events = None,
    active: Annotated[bool | None, typer.Option("--active/--paused", help="Resume or pause deliveries.")] = None,
    issuer: Issuer = None,
    credentials_file: CredentialsFile = None,
    token: Token = None,
) -> None:
    """Change a webhook's URL, events or active flag (tenant root only)."""
    body = {k: v for k, v in {"url": url, "events": event, "active": active}.items() if v is not None}
    _print_json(_call("PATCH", f"/api/v1/webhooks/{webhook_id}", issuer, credentials_file, token, body=body))


@app.command("delete")
def delete(
    webhook_id: HookId, issuer: Issuer = None, credentials_file: CredentialsFile = None, token: Token = None
) -> None:
    """Delete a webhook (tenant root only): what it still owed is not sent."""
    _call("DELETE", f"/api/v1/webhooks/{webhook_id}", issuer, credentials_file, token)
    typer.echo(f"deleted {webhook_id}")


@app.command("deliveries")
def deliveries(
    webhook_id: HookId,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    issuer: Issuer = None,
    credentials_file: CredentialsFile = None,
    token: Token = None,
) -> None:
    """A webhook's deliveries, newest first, each with its attempts."""
    path = f"/api/v1/webhooks/{webhook_id}/deliveries"
    _print_json(_call("GET", path, issuer, credentials_file, token, params={"limit": limit}))


@app.command("retry")
def retry(
    webhook_id: HookId,
    delivery_id: Annotated[int, typer.Argument(metavar="DELIVERY_ID", min=1)],
    issuer: Issuer = None,
    credentials_file: CredentialsFile = None,
    token: Token = None,
) -> None:
    """Send a delivery again now (tenant root only)."""
    path = f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"
    _print_json(_call("POST", path, issuer, credentials_file, token))
