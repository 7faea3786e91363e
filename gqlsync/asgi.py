"""One ASGI application: GraphQL over HTTP and WebSocket, GraphiQL, your Django app.

::

    # asgi.py
    import django
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()  # sets Django up before the schema is imported

    import gqlsync.asgi
    from myproject.schema import schema

    application = gqlsync.asgi.application(schema, django_application=django_app)

On ``path`` (default ``/graphql/``): POST and GET queries and mutations, both WebSocket
subscription protocols, the GraphiQL IDE for browsers (assets under ``<path>static/``).
Everything else goes to ``django_application``. Users come from the Django session
(``AuthMiddlewareStack``) or a bearer token (:mod:`gqlsync.auth`).
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, cast

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from cross_web import HTTPException
from django.urls import re_path
from strawberry.schema import BaseSchema

from gqlsync import limits as gqlsync_limits
from gqlsync.conf import get_settings
from gqlsync.graphiql import StaticAssets
from gqlsync.hub import get_hub
from gqlsync.transport.http import GraphQLHTTPHandler, session_user_allowed, token_user
from gqlsync.transport.websocket import GraphQLWSHandler, with_raw_send


class HubStats:
    """JSON counters of this process's hub (opt-in: ``application(stats=True)``).

    For staff users only (``is_staff``, by session or bearer token): the counters tell
    of activity in every room, seen or not. Anyone else gets ``403``; a token that does
    not authenticate, ``401``.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            user = await token_user(scope)
        except HTTPException:
            await _respond(send, 401, {"error": "Invalid or expired token"})
            return
        if user is None and session_user_allowed(scope):
            user = scope.get("user")
        if not (getattr(user, "is_active", False) and getattr(user, "is_staff", False)):
            await _respond(send, 403, {"error": "Staff only"})
            return
        hub = get_hub()
        await _respond(send, 200, {
            **hub.stats,
            "groups": len(hub.groups),
            "subscriptions": hub.subscription_count(),
        })


async def _respond(send: Any, status: int, data: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


def application(
    schema: BaseSchema,
    *,
    path: str = "/graphql/",
    django_application: Any = None,
    stats: bool = False,
    limits: bool = True,
) -> ProtocolTypeRouter:
    """Build the ASGI application serving ``schema`` on ``path``.

    ``limits=True`` adds the depth, token, alias and introspection limits of
    :mod:`gqlsync.limits` to ``schema`` (pass ``False`` if you configure your own).

    ``stats=True`` adds ``<path>stats``: this process's hub counters as JSON (events,
    deliveries, groups, subscriptions), for health checks and tests; staff users only
    (session or bearer token), ``403`` for anyone else.
    """
    if not path.startswith("/") or not path.endswith("/"):
        raise ValueError("path must start and end with '/', e.g. '/graphql/'")
    settings = get_settings()
    if limits:
        gqlsync_limits.apply(schema)
    gqlsync_limits.share_documents(schema)
    base = re.escape(path.lstrip("/"))
    endpoint = f"^{base[:-1] if base.endswith('/') else base}/?$"
    http_routes: list[Any] = [
        re_path(f"^{base}static/[A-Za-z0-9_.-]+$", cast(Any, StaticAssets())),
        re_path(endpoint, GraphQLHTTPHandler.as_asgi(
            schema=schema, graphql_ide="graphiql" if settings["GRAPHIQL"] else None,
        )),
    ]
    if stats:
        http_routes.insert(0, re_path(f"^{base}stats$", cast(Any, HubStats())))
    if django_application is not None:
        http_routes.append(re_path(r"", django_application))
    ws_consumer = GraphQLWSHandler.as_asgi(
        schema=schema,
        allowed_origins=settings["ALLOWED_ORIGINS"],
        max_subscriptions_per_connection=settings["MAX_SUBSCRIPTIONS_PER_CONNECTION"],
        connection_init_wait_timeout=datetime.timedelta(
            seconds=settings["CONNECTION_INIT_TIMEOUT"]
        ),
    )
    return ProtocolTypeRouter({
        "http": AuthMiddlewareStack(URLRouter(http_routes)),
        "websocket": with_raw_send(
            AuthMiddlewareStack(URLRouter([re_path(endpoint, ws_consumer)]))),
    })
