"""Use cases of the issuer service; knows neither HTTP nor MCP."""
