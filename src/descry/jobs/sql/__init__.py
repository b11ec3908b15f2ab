"""The job store on SQLAlchemy: one code path for SQLite (the embedded default) and PostgreSQL.

* ``connection`` opens the engine, runs the migrations and retries lock contention;
* ``jobs`` writes and reads jobs and their results pages;
* ``claims`` leases images to workers and records how each one ends;
* ``ledger`` keeps the result cache and the delivery ledger;
* ``job_store`` joins them into ``SqlJobStore``.
"""

from __future__ import annotations

from descry.errors import MissingDependency

try:
    import sqlalchemy  # noqa: F401
    import sqlalchemy.ext.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependency("sqlalchemy", "jobs") from exc
