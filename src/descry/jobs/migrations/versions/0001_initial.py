"""Initial job store: jobs, items, result cache, delivery ledger.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME: sa.Double[float] = sa.Double()


def upgrade() -> None:
    op.create_table(
        "descry_jobs",
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
    )
    op.create_index("ix_descry_jobs_state_created", "descry_jobs", ["state", "created_at"])
    op.create_index("ix_descry_jobs_finished_at", "descry_jobs", ["finished_at"])
    op.create_table(
        "descry_job_items",
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
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("job_id", "seq", name="uq_descry_job_items_job_seq"),
    )
    op.create_index("ix_descry_job_items_queue", "descry_job_items", ["state", "next_attempt_at", "id"])
    op.create_index("ix_descry_job_items_lease", "descry_job_items", ["state", "lease_expires_at"])
    op.create_table(
        "descry_result_cache",
        sa.Column("content_hash", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(255), primary_key=True),
        sa.Column("params_hash", sa.String(64), primary_key=True),
        sa.Column("enrichment", sa.JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_descry_result_cache_created", "descry_result_cache", ["created_at"])
    op.create_table(
        "descry_deliveries",
        sa.Column("idempotency_key", sa.String(512), primary_key=True),
        sa.Column("sink", sa.String(255), nullable=False),
        sa.Column("delivered_at", TIME, nullable=False),
    )
    op.create_index("ix_descry_deliveries_delivered_at", "descry_deliveries", ["delivered_at"])


def downgrade() -> None:
    op.drop_table("descry_deliveries")
    op.drop_table("descry_result_cache")
    op.drop_table("descry_job_items")
    op.drop_table("descry_jobs")
