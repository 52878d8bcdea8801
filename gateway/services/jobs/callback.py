"""POSTing a finished job to its ``callback_url``, with the download client: the same URL guard (scheme, no
credentials, public addresses unless ``allowed_hosts`` admits them), no redirects followed, retried with backoff on
network errors, 5xx, 408 and 429."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from gateway.core.errors import GatewayError
from gateway.services.intake.url_guard import check_url

log = logging.getLogger("gateway.jobs")
_RETRIED_4XX = (408, 425, 429)


async def deliver(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], *, attempts: int, backoff_s: float, timeout_s: float
) -> dict[str, Any]:
    """POST ``body`` as JSON; the outcome ``{"status": "delivered"|"failed", "attempts", "error"?}``."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = await http.post(
                check_url(url),
                json=body,
                headers={"Accept": "*/*", "Content-Type": "application/json"},
                timeout=timeout_s,
            )
        except GatewayError as exc:  # refused by the guard (UrlRefused) or the host does not resolve
            return {"status": "failed", "attempts": attempt, "error": exc.message}
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            status = response.status_code
            if 200 <= status < 300:
                return {"status": "delivered", "attempts": attempt, "http_status": status}
            last = f"the callback answered HTTP {status}"
            if status < 500 and status not in _RETRIED_4XX:
                return {"status": "failed", "attempts": attempt, "error": last, "http_status": status}
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    log.warning("callback for job %s failed after %d attempts: %s", body.get("id"), attempts, last)
    return {"status": "failed", "attempts": attempts, "error": last}
