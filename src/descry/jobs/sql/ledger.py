"""The result cache and the delivery ledger in the SQL store: first writer wins, later ones are told so."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from descry.jobs.sql.connection import SqlConnection
from descry.jobs.tables import deliveries, result_cache


class SqlLedger(SqlConnection):
    """Enrichments cached by content, model and parameters; deliveries recorded by idempotency key."""

    async def cache_get(self, content_hash: str, model: str, params_hash: str) -> dict[str, Any] | None:
        async def tx(conn: AsyncConnection) -> dict[str, Any] | None:
            query = sa.select(result_cache.c.enrichment).where(
                result_cache.c.content_hash == content_hash,
                result_cache.c.model == model,
                result_cache.c.params_hash == params_hash,
            )
            return (await conn.execute(query)).scalar_one_or_none()

        return await self._run(tx)

    async def cache_put(self, content_hash: str, model: str, params_hash: str, enrichment: dict[str, Any]) -> bool:
        """Remember an enrichment; False if one was already cached for this key (the first one stays)."""
        row = {
            "content_hash": content_hash,
            "model": model,
            "params_hash": params_hash,
            "enrichment": enrichment,
            "created_at": time.time(),
        }
        return await self._insert_once(result_cache, row)

    async def is_delivered(self, idempotency_key: str) -> bool:
        async def tx(conn: AsyncConnection) -> bool:
            query = sa.select(deliveries.c.idempotency_key).where(deliveries.c.idempotency_key == idempotency_key)
            return (await conn.execute(query)).first() is not None

        return await self._run(tx)

    async def record_delivery(self, idempotency_key: str, sink: str) -> bool:
        """Record a delivery in the ledger; True the first time for this key, False afterwards."""
        row = {"idempotency_key": idempotency_key, "sink": sink, "delivered_at": time.time()}
        return await self._insert_once(deliveries, row)

    async def _insert_once(self, table: sa.Table, row: dict[str, Any]) -> bool:
        async def tx(conn: AsyncConnection) -> bool:
            await conn.execute(table.insert().values(**row))
            return True

        try:
            return await self._run(tx)
        except IntegrityError:
            return False
