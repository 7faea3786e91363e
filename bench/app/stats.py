"""``GET /bench/stats``: the subscriptions a baseline or floor server holds, as JSON.

gqlsync's servers answer the same question on ``/graphql/stats`` (its hub counters).
"""

from __future__ import annotations

import json
from typing import Any

#: live subscriptions of this process (the baseline and floor servers count them here)
counters = {"subscriptions": 0}


async def stats_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    found = scope["path"] == "/bench/stats"
    body = json.dumps(counters).encode() if found else b"not found"
    await send({"type": "http.response.start", "status": 200 if found else 404,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
