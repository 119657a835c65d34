"""The product document's MCP example with the mcp 2.x Python client: register an agent with quickstart,
authenticate with its API key, list its agents. examples/mcp_client_v1.py is the same for mcp 1.x, whose
transport is spelled ``streamablehttp_client`` and yields a third value (the session id getter).

A tool that hands out a secret answers with that secret as its first text item (quickstart: the API key;
authenticate and refresh_token: the access token; create_credential and rotate_credential: the new key), so
``content[0].text`` is all the example needs; the full answer is in ``structured_content`` (and in the next
text item, as JSON).

Run (with `agentauth serve` on 8000):

    python examples/mcp_client.py           # AGENTAUTH_MCP_URL overrides http://localhost:8000/mcp
"""

# The document's snippet as printed: its import order and nested `with` blocks are kept on purpose.
# ruff: noqa: I001, SIM117

import asyncio
import os

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

MCP_URL = os.environ.get("AGENTAUTH_MCP_URL", "http://localhost:8000/mcp")


async def main() -> None:
    async with streamable_http_client(MCP_URL) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            # Register a new agent: a did:key identity, an API key and a first token pair.
            result = await session.call_tool("quickstart", {"name": "my-agent", "agent_type": "assistant"})
            api_key = result.content[0].text

            # Authenticate with the API key.
            auth = await session.call_tool("authenticate", {"api_key": api_key})
            token = auth.content[0].text

            # Use the access token.
            agents = await session.call_tool("list_agents", {"access_token": token})
            print(agents.content[0].text)


asyncio.run(main())
