"""The bundled GraphiQL IDE: page template and static assets, served offline.

``static/graphiql.js`` and ``static/graphiql.css`` are built from ``build/`` (GraphiQL 3,
React 18, graphql-ws) and shipped in the package, so the IDE works without a CDN. The page
runs queries and mutations over HTTP (session cookie included) and subscriptions over
``graphql-transport-ws``; headers typed in its Headers editor travel on both, the
``Authorization`` header as the WebSocket ``connection_init`` payload.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from importlib import resources
from typing import Any

_ROOT = resources.files(__package__)
_ASSETS = ("graphiql.js", "graphiql.css")


@cache
def _template() -> str:
    return (_ROOT / "index.html").read_text(encoding="utf-8")


def render_page(endpoint: str, static_url: str) -> str:
    """The IDE's HTML for a GraphQL ``endpoint`` path, assets under ``static_url``."""
    return _template().replace("{{ endpoint }}", endpoint).replace("{{ static_url }}", static_url)


@cache
def asset(name: str) -> tuple[bytes, str] | None:
    """(content, content type) of a bundled asset, or ``None`` if there is no such asset."""
    if name not in _ASSETS:
        return None
    content = (_ROOT / "static" / name).read_bytes()
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return content, f"{content_type}; charset=utf-8"


class StaticAssets:
    """A tiny ASGI app serving the bundled assets by the last path segment."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["path"].rsplit("/", 1)[-1]
        found = asset(name) if scope.get("method") in ("GET", "HEAD") else None
        if found is None:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Not Found"})
            return
        content, content_type = found
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(content)).encode()),
                (b"cache-control", b"public, max-age=86400"),
            ],
        })
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else content})
