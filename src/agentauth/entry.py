"""The console scripts. The ``agentauth`` and ``agentauth-mcp`` commands belong to the service and need its
extra (``pip install 'agentauth-id[server]'``); a verifier-only install has the scripts too (a wheel cannot make
them conditional), so each says what to install instead of failing with a traceback."""

from __future__ import annotations

import sys

SERVER_EXTRA = "pip install 'agentauth-id[server]'"


def _missing(command: str, exc: ModuleNotFoundError) -> int:
    print(
        f"{command}: needs the server install ({exc.name} is missing): {SERVER_EXTRA}. The verifier alone "
        "(agentauth.vc, agentauth.sdk) needs no command.",
        file=sys.stderr,
    )
    return 1


def cli() -> None:
    try:
        from agentauth.cli import main
    except ModuleNotFoundError as exc:
        sys.exit(_missing("agentauth", exc))
    main()


def mcp() -> None:
    try:
        from agentauth.mcp.stdio import main
    except ModuleNotFoundError as exc:
        sys.exit(_missing("agentauth-mcp", exc))
    main()
