"""Alembic environment for descry's job store, run programmatically by ``SqlJobStore.open()``.

The caller hands over an open synchronous connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from descry.jobs.tables import metadata

VERSION_TABLE = "descry_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
