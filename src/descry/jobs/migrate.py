"""The migration runner: creates or upgrades the job store's schema with the Alembic scripts in ``migrations/``.

On PostgreSQL an advisory lock serialises processes that open the store at the same moment, and
a configured schema is created first; on SQLite the single writer does the same.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x64657363  # pg_advisory_xact_lock key serialising concurrent upgrades


async def upgrade(conn: AsyncConnection, *, schema: str | None = None) -> None:
    """Bring the schema to the newest migration, inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        if schema:
            quoted = conn.dialect.identifier_preparer.quote_schema(schema)
            await conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    await conn.run_sync(_upgrade_sync)


def _upgrade_sync(sync_conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")
