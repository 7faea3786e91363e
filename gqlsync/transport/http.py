"""GraphQL over HTTP (queries, mutations) and the GraphiQL page, on one path."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from cross_web import HTTPException
from django.contrib.auth.models import AnonymousUser
from strawberry.channels import ChannelsRequest, GraphQLHTTPConsumer
from strawberry.channels.handlers.http_handler import ChannelsResponse
from strawberry.http.temporal_response import TemporalResponse
from strawberry.http.websocket_origin import is_same_origin, normalize_allowed_origins

from gqlsync import auth, graphiql
from gqlsync.conf import get_settings


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}


def session_user_allowed(scope: dict[str, Any]) -> bool:
    """May the session cookie speak for this request?

    A browser page on another origin must not act with the user's cookies (CSRF): such
    requests are served as anonymous unless their origin is in ``ALLOWED_ORIGINS``.
    """
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None or headers.get("sec-fetch-site") == "same-origin":
        return True
    if is_same_origin(origin, headers.get("host", "")):
        return True
    allowed = normalize_allowed_origins(get_settings()["ALLOWED_ORIGINS"])
    return "*" in allowed or origin.rstrip("/").lower() in allowed


class GraphQLHTTPHandler(GraphQLHTTPConsumer):  # type: ignore[misc]
    """Strawberry's HTTP consumer with the request's user in the context."""

    async def handle(self, body: bytes) -> None:
        if len(body) > get_settings()["MAX_DOCUMENT_BYTES"]:
            await self.send_response(
                413, b"Request body too large", headers=[(b"Content-Type", b"text/plain")]
            )
            return
        await super().handle(body)

    async def get_context(self, request: ChannelsRequest, response: TemporalResponse) -> Any:
        scope = request.consumer.scope
        token = auth.bearer(_headers(scope).get("authorization"))
        user: Any
        if token is not None:
            try:
                user = await sync_to_async(auth.user_for_token)(token)
            except auth.InvalidToken:
                raise HTTPException(401, "Invalid or expired token") from None
        elif session_user_allowed(scope):
            user = scope.get("user") or AnonymousUser()
        else:
            user = AnonymousUser()
        # strawberry-django's permission extensions read scope["user"]: keep them agreeing
        scope["user"] = user
        return {"request": request, "response": response, "user": user}

    async def render_graphql_ide(self, request: ChannelsRequest) -> ChannelsResponse:
        path: str = request.consumer.scope["path"]
        endpoint = path if path.endswith("/") else path + "/"
        html = graphiql.render_page(endpoint=path, static_url=endpoint + "static/")
        return ChannelsResponse(content=html.encode(), content_type="text/html; charset=utf-8")
