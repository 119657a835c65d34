"""Run by tests/mcp/test_mcp_langchain.py in a venv of its own (langchain-mcp-adapters pins mcp < 2, the
server runs on mcp 2): what LangChain's MCP adapters make of ``agentauth-mcp`` - every tool's argument schema
as LangChain hands it to a model, and the results of a few calls - printed as one JSON object."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from langchain_mcp_adapters.client import MultiServerMCPClient


async def main() -> None:
    command = sys.argv[1]
    client = MultiServerMCPClient(
        {"agentauth": {"command": command, "args": [], "transport": "stdio", "env": dict(os.environ)}}
    )
    tools = {tool.name: tool for tool in await client.get_tools()}
    schemas = {}
    for name, tool in tools.items():
        schema = tool.args_schema if isinstance(tool.args_schema, dict) else tool.args_schema.model_json_schema()
        schemas[name] = schema
    results = {}
    for name, arguments in [
        ("quickstart", {"name": "langchain-agent", "agent_type": "assistant"}),
        ("list_agents", {}),
        ("authenticate", {}),
        ("refresh_token", {}),
    ]:
        try:
            results[name] = str(await tools[name].ainvoke(arguments))
        except Exception as exc:
            results[name] = f"ERROR {type(exc).__name__}: {exc}"
    print(json.dumps({"schemas": schemas, "results": results}))


asyncio.run(main())
