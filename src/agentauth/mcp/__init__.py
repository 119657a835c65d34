"""AgentAuth as an MCP server: the REST operations as tools, for agents that speak MCP instead of HTTP.

``identity`` and ``tenant`` define the tools as plain typed functions over a ``Backend``; ``server`` builds them
into an MCP server. ``embedded`` calls the issuer's use cases in-process (the ``/mcp`` mount of the HTTP app, and
``agentauth-mcp`` on a local data directory); ``remote`` calls a running AgentAuth's REST API (``agentauth-mcp``
with ``AGENTAUTH_URL``). ``errors`` maps failures to tool errors in one place, ``http`` mounts streamable HTTP
into the FastAPI app and ``stdio`` is the console script.
"""
