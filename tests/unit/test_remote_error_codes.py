"""The stdio MCP server in remote mode turns every RFC error answer of the REST API back into its error class:
each code of ``agentauth.errors`` (including codes several classes share, like ``invalid_client``) round-trips."""

from __future__ import annotations

import httpx

from agentauth import errors
from agentauth.mcp.remote import error_from_response


def test_every_error_code_round_trips() -> None:
    codes = {
        cls.error
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AgentAuthError) and cls is not errors.AgentAuthError
    }
    assert "invalid_client" in codes
    for code in sorted(codes):
        answer = httpx.Response(400, json={"error": code, "error_description": f"because {code}"})
        error = error_from_response(answer)
        assert error.error == code and error.description == f"because {code}", code
    assert type(error_from_response(httpx.Response(401, json={"error": "invalid_client", "error_description": "x"}))
                ) is errors.InvalidClient  # fmt: skip
