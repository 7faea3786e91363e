"""GraphQL over HTTP (queries, mutations) and the GraphiQL page, on one path.

Responses follow the GraphQL-over-HTTP specification's media-type negotiation: a client
whose ``Accept`` asks for ``application/graphql-response+json`` gets that media type,
whose status code tells the outcome (``400`` when the request failed before execution,
``200`` when it ran, field errors or not); a client that accepts only
``application/json``, or sends no ``Accept``, gets ``application/json`` and ``200`` for
every GraphQL result, as before the specification. See :func:`response_media_type`.

A request whose ``Accept`` names a streaming transport's media type
(``text/event-stream``, ``multipart/mixed``) is Strawberry's to answer, never ``406``:
see :func:`asks_for_a_stream`.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from cross_web import HTTPException
from django.contrib.auth.models import AnonymousUser
from strawberry import UNSET
from strawberry.channels import ChannelsRequest, GraphQLHTTPConsumer
from strawberry.channels.handlers.http_handler import (
    ChannelsResponse,
    MultipartChannelsResponse,
)
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.temporal_response import TemporalResponse
from strawberry.http.websocket_origin import normalize_allowed_origins, normalize_origin
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

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


#: the GraphQL-over-HTTP specification's response media type
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
#: the media type of legacy clients (and of clients that send no ``Accept``)
APPLICATION_JSON = "application/json"
_GRAPHQL_RESPONSE_CONTENT_TYPE = GRAPHQL_RESPONSE_JSON + "; charset=utf-8"
_UTF8 = frozenset({"utf-8", "utf8"})


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    """``(type, subtype, q)`` of each media range of an ``Accept`` value (RFC 9110).

    A range with an unreadable ``q`` is dropped, and so is one asking for a charset other
    than UTF-8: answers are always UTF-8, so such a range accepts none of them (a less
    specific range of the same header may still apply). Parameters after ``q`` are
    accept-extensions and are ignored.
    """
    ranges = []
    for item in accept.split(","):
        media_range, *params = item.split(";")
        kind, _, subtype = media_range.strip().lower().partition("/")
        if not kind or not subtype:
            continue
        q, usable = 1.0, True
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"').lower()
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    usable = False
                usable = usable and 0.0 <= q <= 1.0  # NaN fails too
                break
            if name == "charset" and value not in _UTF8:
                usable = False
        if usable:
            ranges.append((kind, subtype, q))
    return ranges


def _quality(ranges: list[tuple[str, str, float]], media_type: str) -> tuple[float, int]:
    """``(q, specificity)`` of ``media_type`` under ``ranges``: the most specific range
    that matches decides (``2`` the type itself, ``1`` ``type/*``, ``0`` ``*/*``);
    ``(0.0, -1)`` when none matches."""
    kind, _, subtype = media_type.partition("/")
    best_q, best_specificity = 0.0, -1
    for range_kind, range_subtype, q in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif (range_kind, range_subtype) == (kind, "*"):
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best_specificity or (specificity == best_specificity and q > best_q):
            best_q, best_specificity = q, specificity
    return best_q, best_specificity


def response_media_type(accept: str | None) -> str | None:
    """The media type to answer a GraphQL request whose ``Accept`` header is ``accept``:
    :data:`GRAPHQL_RESPONSE_JSON`, :data:`APPLICATION_JSON`, or ``None`` when the header
    accepts neither (the server then answers ``406 Not Acceptable``).

    - No ``Accept`` (or an empty one) is ``application/json``: the specification's
      default for clients that predate it (its "legacy watershed").
    - Otherwise the acceptable type with the higher ``q`` wins.
    - At equal ``q``, ``application/graphql-response+json`` wins if the header names it;
      a client that only accepts it through a wildcard (``*/*``, ``application/*``: curl,
      browsers, older libraries) gets ``application/json``, the one it surely reads.
    """
    if accept is None or not accept.strip():
        return APPLICATION_JSON
    ranges = _media_ranges(accept)
    q_new, specificity_new = _quality(ranges, GRAPHQL_RESPONSE_JSON)
    q_json, _ = _quality(ranges, APPLICATION_JSON)
    if q_new <= 0.0 and q_json <= 0.0:
        return None
    if q_new != q_json:
        return GRAPHQL_RESPONSE_JSON if q_new > q_json else APPLICATION_JSON
    return GRAPHQL_RESPONSE_JSON if specificity_new == 2 else APPLICATION_JSON


#: the media types of GraphQL's HTTP streaming transports: GraphQL over Server-Sent Events
#: (``text/event-stream``), multipart subscriptions (``multipart/mixed;subscriptionSpec=1.0``)
#: and incremental delivery (``multipart/mixed;deferSpec=20220824``)
_STREAMING_MEDIA_TYPES = frozenset({("text", "event-stream"), ("multipart", "mixed")})


def asks_for_a_stream(accept: str | None) -> bool:
    """Does ``accept`` name (with ``q`` above 0) the media type of an HTTP streaming
    transport: ``text/event-stream`` or ``multipart/mixed``, whatever its parameters?

    Such a request is not the negotiation's to refuse: a client that accepts only a
    stream (graphql-sse, a multipart subscription) is answered by Strawberry, as it was
    before the negotiation existed. Strawberry streams it when the view turns the
    transport on (``subscription_protocols``); gqlsync's route turns none on
    (subscriptions are served over WebSocket), so Strawberry answers it as a plain
    request, in ``application/json``. Wildcards (``*/*``, ``multipart/*``) do not count.
    """
    if accept is None:
        return False
    return any((kind, subtype) in _STREAMING_MEDIA_TYPES and q > 0.0
               for kind, subtype, q in _media_ranges(accept))


def accept_header(scope: dict[str, Any]) -> str | None:
    """The request's ``Accept`` value, several ``Accept`` fields joined as one (RFC 9110);
    ``None`` without any."""
    values = [v.decode("latin1") for k, v in scope["headers"] if k.lower() == b"accept"]
    return ", ".join(values) if values else None


def is_request_error(result: ExecutionResult) -> bool:
    """Did the operation fail before it began to execute (a GraphQL *request error*: the
    document does not parse or validate, a limit refused it, its variables do not
    coerce)?

    GraphQL says such a response has no ``data`` entry, and field errors, the only
    errors raised during execution, always carry a ``path``; a result with ``data: null``
    and a ``path`` on its errors executed, and its root field failed.
    """
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


class GraphQLHTTPHandler(GraphQLHTTPConsumer):  # type: ignore[misc]
    """Strawberry's HTTP consumer with the request's user in the context, oversized
    bodies refused, and the GraphQL-over-HTTP media types negotiated.

    For ``application/graphql-response+json`` clients: a request error answers ``400``
    without ``data``; a mutation over ``GET`` answers ``405`` (``Allow: POST``); the
    errors Strawberry raises as plain text (a body that is not JSON, a bad token) come
    as GraphQL responses (``{"errors": [{"message": ...}]}``), status unchanged. For
    ``application/json`` clients every answer is what it was before (``200`` for every
    GraphQL result, plain-text errors). Neither acceptable: ``406``, unless the request
    is a browser's for GraphiQL or asks for a stream (:func:`asks_for_a_stream`), which
    Strawberry answers unchanged.
    """

    channel_layer_alias = consumer_channel_layer

    def response_media_type(self) -> str | None:
        """The negotiated media type of this request (a consumer serves one request)."""
        return response_media_type(accept_header(self.scope))

    # Strawberry overloads run() for HTTP and WebSocket requests, both ChannelsRequest
    # here; this consumer only serves HTTP (its is_websocket_request() is False)
    async def run(  # type: ignore[override]
        self, request: ChannelsRequest, context: Any = UNSET, root_value: Any = UNSET
    ) -> ChannelsResponse | MultipartChannelsResponse:
        media_type = self.response_media_type()
        try:
            if len(request.body) > get_settings()["MAX_DOCUMENT_BYTES"]:
                raise HTTPException(413, "Request body too large")
            if (
                media_type is None
                and request.method in ("GET", "POST")
                and not self.should_render_graphql_ide(request)
                and not asks_for_a_stream(accept_header(self.scope))
            ):
                raise HTTPException(
                    406,
                    f"Not Acceptable: GraphQL responses are {GRAPHQL_RESPONSE_JSON} "
                    f"or {APPLICATION_JSON}",
                )
            response: ChannelsResponse | MultipartChannelsResponse = await super().run(
                request, context, root_value
            )
            return response
        except HTTPException as error:
            if media_type != GRAPHQL_RESPONSE_JSON:
                raise  # Strawberry answers it in plain text, as always
            return self._request_error(request, error)

    def _request_error(self, request: ChannelsRequest, error: HTTPException) -> ChannelsResponse:
        """A request Strawberry refused, as a GraphQL response with the error's status;
        a mutation over ``GET`` is ``405``, as the specification requires (with the
        ``Allow`` header every ``405`` needs)."""
        status, headers = error.status_code, {}
        cause = error.__cause__
        if (
            request.method == "GET"
            and isinstance(cause, InvalidOperationTypeError)
            and cause.operation_type == OperationType.MUTATION
        ):
            status, headers = 405, {b"Allow": b"POST"}
        elif status == 405:
            headers = {b"Allow": b"GET, POST"}
        content = self.encode_json({"errors": [{"message": error.reason}]})
        return ChannelsResponse(
            content=content.encode() if isinstance(content, str) else content,
            status=status,
            content_type=_GRAPHQL_RESPONSE_CONTENT_TYPE,
            headers=headers,
        )

    async def process_result(
        self, request: ChannelsRequest, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = await super().process_result(request, result)
        if self.response_media_type() == GRAPHQL_RESPONSE_JSON and is_request_error(result):
            # Strawberry writes "data": null; GraphQL wants no data entry here, and that
            # absence is what the status code of the new media type is decided by
            response.pop("data", None)
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: TemporalResponse,
    ) -> ChannelsResponse:
        response: ChannelsResponse = super().create_response(response_data, sub_response)
        if self.response_media_type() != GRAPHQL_RESPONSE_JSON:
            return response
        response.content_type = _GRAPHQL_RESPONSE_CONTENT_TYPE
        # no "data": the operation never ran (a batch stays 200: its items differ)
        if (
            isinstance(response_data, dict)
            and "data" not in response_data
            and 200 <= response.status < 300
        ):
            response.status = 400
        return response

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
