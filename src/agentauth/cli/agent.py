"""Commands an agent runs: make its did:key, present its credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from agentauth.cli.shared import (
    CliError,
    _note,
    _print_json,
    _read_text_arg,
    _write_file,
)


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
