"""Per-tenant request rate limit: the `limits` library's moving window on Redis (one Lua call per
request, shared by every gateway replica), REALRAG_TENANTS' `requests_per_minute` or
REALRAG_DEFAULT_REQUESTS_PER_MINUTE. Over it: 429 `rate_limited` with `Retry-After`.

With auth off (no tenants) nothing is metered: there is one trusted local caller.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from services.errors import ApiError
from services.settings import Settings
from services.tenants import Tenant


def too_many(code: str, message: str, retry_after_s: int, **details: object) -> ApiError:
    error = ApiError(429, code, message, retry_after_s=retry_after_s, **details)
    error.headers["Retry-After"] = str(retry_after_s)
    return error


class TenantRateLimits:
    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.enabled = settings.auth_enabled
        # the job store's pool (limits types its pass-through options as scalars only)
        pool: Any = client.connection_pool
        storage = RedisStorage(f"async+{settings.redis_url}", implementation="redispy", connection_pool=pool, key_prefix="realrag:limits")
        self.limiter = MovingWindowRateLimiter(storage)

    async def hit(self, tenant: Tenant) -> None:
        """Count one request of `tenant`; 429 if it is over its requests per minute."""
        if not self.enabled:
            return
        item = RateLimitItemPerMinute(tenant.requests_per_minute)
        if await self.limiter.hit(item, "rpm", tenant.name):
            return
        reset_at = (await self.limiter.get_window_stats(item, "rpm", tenant.name)).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise too_many(
            "rate_limited",
            f"more than {tenant.requests_per_minute} requests per minute; retry after {retry_after} s",
            retry_after,
            limit_per_minute=tenant.requests_per_minute,
        )
