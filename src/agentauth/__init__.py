"""AgentAuth: identity and authentication for AI agents."""

__version__ = "0.1.0"
