"""GraphQL over HTTP (queries, mutations) and the GraphiQL page, on one path."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from cross_web import HTTPException
from django.contrib.auth.models import AnonymousUser
from strawberry.channels import ChannelsRequest, GraphQLHTTPConsumer
from strawberry.channels.handlers.http_handler import ChannelsResponse
from strawberry.http.temporal_response import TemporalResponse
from strawberry.http.websocket_origin import normalize_allowed_origins, normalize_origin

from gqlsync import auth, graphiql
from gqlsync.conf import get_settings


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}


#: a WebSocket's scheme, as the scheme of the page that would share its origin
_PAGE_SCHEMES = {"ws": "http", "wss": "https"}


def own_origin(scope: dict[str, Any]) -> str | None:
    """The origin this request was sent to (``scheme://host[:port]``), as a browser on the
    same site would send it in ``Origin``; ``None`` without a ``Host``.

    The scheme counts (``https://host`` is another origin than ``http://host``): it is
    the ASGI scope's (``ws`` as ``http``, ``wss`` as ``https``), or, behind a proxy that
    terminates TLS, what Django's ``SECURE_PROXY_SSL_HEADER`` says, as ``is_secure()``
    reads it.
    """
    from django.conf import settings

    headers = _headers(scope)
    host = headers.get("host", "").strip()
    if not host:
        return None
    default = "ws" if scope.get("type") == "websocket" else "http"
    scheme = str(scope.get("scheme") or default).lower()
    scheme = _PAGE_SCHEMES.get(scheme, scheme)
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        forwarded = headers.get(name.removeprefix("HTTP_").lower().replace("_", "-"))
        if forwarded is not None:
            secure = forwarded.split(",", 1)[0].strip() == secure_value
            scheme = "https" if secure else "http"
    return normalize_origin(f"{scheme}://{host}")


def same_origin(origin: str, scope: dict[str, Any]) -> bool:
    """Is ``origin`` (an ``Origin`` header) this request's own origin, scheme included?"""
    own = own_origin(scope)
    return own is not None and normalize_origin(origin) == own


def session_user_allowed(scope: dict[str, Any]) -> bool:
    """May the session cookie speak for this request?

    A browser page on another origin must not act with the user's cookies (CSRF): such
    requests are served as anonymous unless their origin is in ``ALLOWED_ORIGINS``. The
    same host under another scheme is another origin (see :func:`own_origin`).
    """
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None or headers.get("sec-fetch-site") == "same-origin":
        return True
    if same_origin(origin, scope):
        return True
    allowed = normalize_allowed_origins(get_settings()["ALLOWED_ORIGINS"])
    return "*" in allowed or origin.rstrip("/").lower() in allowed


async def token_user(scope: dict[str, Any]) -> Any:
    """The user of the request's bearer token, ``None`` without one; a token that does
    not authenticate, or a malformed bearer credential (``"Bearer "``), is ``401``."""
    try:
        token = auth.bearer_credential(_headers(scope).get("authorization"))
        if token is None:
            return None
        return await sync_to_async(auth.user_for_token)(token)
    except auth.InvalidToken:
        raise HTTPException(401, "Invalid or expired token") from None


#: a channel-layer alias no configuration uses (Channels' consumers then read none)
_NO_LAYER = "gqlsync.no-consumer-channel"


@property  # type: ignore[misc]
def consumer_channel_layer(self: Any) -> str:
    """Channels gives every consumer (each request, each socket) a channel of its own on
    the layer and reads it. gqlsync's hub needs none, and a consumer reading one fails
    when the layer does (a Redis restart: requests answer 500, sockets close). Off
    unless ``SOCKET_CHANNELS`` asks for it: an alias no layer has makes Channels skip it.
    """
    settings = get_settings()
    return settings["CHANNEL_LAYER"] if settings["SOCKET_CHANNELS"] else _NO_LAYER


class GraphQLHTTPHandler(GraphQLHTTPConsumer):  # type: ignore[misc]
    """Strawberry's HTTP consumer with the request's user in the context."""

    channel_layer_alias = consumer_channel_layer

    async def handle(self, body: bytes) -> None:
        if len(body) > get_settings()["MAX_DOCUMENT_BYTES"]:
            await self.send_response(
                413, b"Request body too large", headers=[(b"Content-Type", b"text/plain")]
            )
            return
        await super().handle(body)

    async def get_context(self, request: ChannelsRequest, response: TemporalResponse) -> Any:
        scope = request.consumer.scope
        user: Any = await token_user(scope)
        if user is None:
            allowed = session_user_allowed(scope)
            user = (scope.get("user") if allowed else None) or AnonymousUser()
        # strawberry-django's permission extensions read scope["user"]: keep them agreeing
        scope["user"] = user
        return {"request": request, "response": response, "user": user}

    async def render_graphql_ide(self, request: ChannelsRequest) -> ChannelsResponse:
        path: str = request.consumer.scope["path"]
        endpoint = path if path.endswith("/") else path + "/"
        html = graphiql.render_page(endpoint=path, static_url=endpoint + "static/")
        return ChannelsResponse(content=html.encode(), content_type="text/html; charset=utf-8")
