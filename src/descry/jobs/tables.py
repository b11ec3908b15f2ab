"""The job store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

All timestamps are UNIX seconds (float) from the application clock, so SQLite and PostgreSQL
share one code path; keep the nodes of a cluster on NTP.
"""

from __future__ import annotations

import sqlalchemy as sa

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME: sa.Double[float] = sa.Double()

metadata = sa.MetaData()

jobs = sa.Table(
    "descry_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cancelled", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sa.Column("finished_at", TIME, nullable=True),
    sa.UniqueConstraint("idempotency_key", name="uq_descry_jobs_idempotency_key"),
    sa.Index("ix_descry_jobs_state_created", "state", "created_at"),
    sa.Index("ix_descry_jobs_finished_at", "finished_at"),
)

items = sa.Table(
    "descry_job_items",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("descry_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(128), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", TIME, nullable=True),
    sa.Column("next_attempt_at", TIME, nullable=False),
    sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("error", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("updated_at", TIME, nullable=False),
    sa.UniqueConstraint("job_id", "seq", name="uq_descry_job_items_job_seq"),
    sa.Index("ix_descry_job_items_queue", "state", "next_attempt_at", "id"),
    sa.Index("ix_descry_job_items_lease", "state", "lease_expires_at"),
)

result_cache = sa.Table(
    "descry_result_cache",
    metadata,
    sa.Column("content_hash", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("params_hash", sa.String(64), primary_key=True),
    sa.Column("enrichment", sa.JSON, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Index("ix_descry_result_cache_created", "created_at"),
)

deliveries = sa.Table(
    "descry_deliveries",
    metadata,
    sa.Column("idempotency_key", sa.String(512), primary_key=True),
    sa.Column("sink", sa.String(255), nullable=False),
    sa.Column("delivered_at", TIME, nullable=False),
    sa.Index("ix_descry_deliveries_delivered_at", "delivered_at"),
)
