"""``SqlJobStore``: the job store on SQLite or PostgreSQL, joined from its parts."""

from __future__ import annotations

from descry.jobs.sql.claims import SqlClaims
from descry.jobs.sql.jobs import SqlJobs
from descry.jobs.sql.ledger import SqlLedger


class SqlJobStore(SqlJobs, SqlClaims, SqlLedger):
    """The job store on SQLite or PostgreSQL through SQLAlchemy's async engine.

    Construct with a database URL (``sqlite://`` and ``postgresql://`` get their async driver),
    an optional PostgreSQL schema and SQLite's busy timeout; ``await open()`` (or ``async with``)
    connects and migrates the schema.
    """
