"""Who may call the API: ``AccessControl.admit`` checks the API key (``auth=keys``) and the caller's rate limit.

With ``auth=open`` no key is needed and the rate limit applies per client address instead.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from gateway.core.errors import RateLimited, Unauthorized
from gateway.core.settings import Settings
from gateway.services.access.api_keys import KeyStore, key_id_of
from gateway.services.access.rate_limit import RateLimiter

log = logging.getLogger("gateway.access")

KEY_HINT = "send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"


@dataclass(frozen=True)
class Caller:
    """An admitted caller: the key id (None with open access) and the client address."""

    key_id: str | None
    client: str


class AccessControl:
    """The access policy of one gateway app (built in the lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.open = settings.auth == "open"
        self.store = None if self.open else KeyStore(settings.api_keys_path)
        self.rate_per_minute = settings.rate_per_minute
        self.open_rate_per_minute = settings.open_rate_per_minute
        self.limiter = RateLimiter()

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.store is None:
            limit = f"{self.open_rate_per_minute}/min per client address" if self.open_rate_per_minute else "none"
            return f"access is OPEN: no API key is needed (auth=open); rate limit {limit}"
        limit = f"{self.rate_per_minute}/min per key by default" if self.rate_per_minute else "none by default"
        return f"access: API keys from {self.store.path} ({self.store.active_count} active); rate limit {limit}"

    def admit(self, presented: str | None, client: str, request_id: str | None = None) -> Caller:
        """The caller, or Unauthorized / RateLimited. Nothing here logs or returns the key's secret."""
        if self.store is None:
            self._limit(f"ip:{client}", self.open_rate_per_minute, "per client address")
            return Caller(None, client)
        if not presented:
            raise Unauthorized(f"this API needs an API key: {KEY_HINT}")
        record = self.store.verify(presented)
        if record is None:
            log.info("request %s: refused key id=%s from %s", request_id, key_id_of(presented) or "malformed", client)
            raise Unauthorized("the API key is not valid")
        if not record.active:
            log.info("request %s: refused revoked key id=%s from %s", request_id, record.id, client)
            raise Unauthorized(f"the API key {record.id} was revoked on {record.revoked}")
        rate = self.rate_per_minute if record.rate_per_minute is None else record.rate_per_minute
        self._limit(f"key:{record.id}", rate, f"for API key {record.id}")
        return Caller(record.id, client)

    def _limit(self, bucket: str, per_minute: int, whose: str) -> None:
        wait = self.limiter.take(bucket, per_minute)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"rate limit of {per_minute} requests per minute {whose} reached; retry in {retry} s",
                retry_after_s=retry,
            )
