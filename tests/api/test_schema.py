"""The migrations build exactly the schema the models declare (indexes included), on each backend."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agentauth.bootstrap import Services
from agentauth.storage.models import Base

pytestmark = pytest.mark.anyio


async def test_migrations_build_the_models_schema(services: Services) -> None:
    def differences(connection: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    async with services.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


async def test_the_hot_write_path_uses_partial_indexes(services: Services) -> None:
    """Status-list publication and delegation cascades still find their rows through the partial indexes."""
    if services.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    async with services.engine.connect() as connection:
        revoked = await connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT status_index FROM credentials "
            "WHERE status_list_id = 1 AND revoked_at IS NOT NULL"
        )
        delegated = await connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT jti FROM credentials WHERE delegation_id IN ('a', 'b') AND revoked_at IS NULL"
        )
        assert "ix_credentials_revoked" in " ".join(str(r) for r in revoked.all())
        assert "ix_credentials_delegation_id" in " ".join(str(r) for r in delegated.all())
