"""GraphQL over WebSocket: both protocols, with Django users.

Strawberry's consumer speaks ``graphql-transport-ws`` and the legacy ``graphql-ws`` and
applies origin checks, the operation limit and the close codes. This subclass gives each
connection its user: a bearer token in the handshake's ``Authorization`` header or in
the ``connection_init`` payload (``{"authorization": "Bearer <token>"}``), else the Django
session. A presented token that does not authenticate closes the connection with
``4403 Forbidden`` (``graphql-transport-ws``) or a ``connection_error`` (``graphql-ws``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from gqlsync import auth
from gqlsync.transport.http import _headers, session_user_allowed

#: Close codes of graphql-transport-ws, by name (sent by Strawberry's handler).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INIT_TIMEOUT = 4408
CLOSE_SUBSCRIBER_EXISTS = 4409
CLOSE_TOO_MANY_INITS = 4429


class GraphQLWSHandler(GraphQLWSConsumer):  # type: ignore[misc]
    """Strawberry's WebSocket consumer with the connection's user in the context."""

    async def get_context(self, request: Any, response: Any) -> Any:
        scope = self.scope
        user = scope.get("user") if session_user_allowed(scope) else None
        context: dict[str, Any] = {
            "request": request, "ws": request, "user": user or AnonymousUser(),
            "rejected": False,
        }
        token = auth.bearer(_headers(scope).get("authorization"))
        if token is not None:
            await self._authenticate(context, token)
        return context

    async def _authenticate(self, context: dict[str, Any], token: str) -> None:
        try:
            context["user"] = await sync_to_async(auth.user_for_token)(token)
        except auth.InvalidToken:
            context["user"] = AnonymousUser()
            context["rejected"] = True

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        params: dict[str, Any] = context.get("connection_params") or {}
        value = params.get("authorization", params.get("Authorization"))
        if value is not None:
            token = auth.bearer(value)
            if token is None:
                context["rejected"] = True
            else:
                await self._authenticate(context, token)
        if context["rejected"]:
            raise ConnectionRejectionError({"message": "Invalid or expired token"})
        ack: UnsetType = UNSET  # connection_ack without a payload
        return ack
