"""Alembic environment: runs on the connection handed over by ``agentauth.storage.migrate``."""

from __future__ import annotations

from alembic import context

from agentauth.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through agentauth.storage.migrate (or `agentauth db upgrade`)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
context.run_migrations()
