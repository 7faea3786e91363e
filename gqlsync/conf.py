"""gqlsync settings, read from ``settings.GQLSYNC`` in one place.

Every setting has a default here, and nothing else in the package reads Django settings
for gqlsync directly: call :func:`get_settings` and use the typed result. The dictionary
is merged over the defaults on every call (it is small), so ``override_settings`` in tests
takes effect immediately.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from django.conf import settings as django_settings


class GQLSyncSettings(TypedDict):
    #: Alias of the channel layer (``CHANNEL_LAYERS`` key) events travel on.
    CHANNEL_LAYER: str
    #: Prefix of every group name gqlsync sends to. Keep it short: Channels caps group
    #: names at 100 characters.
    GROUP_PREFIX: str
    #: Events waiting for one slow subscription before it is ended with an error
    #: (the other subscriptions never wait for it).
    SUBSCRIPTION_QUEUE_SIZE: int
    #: Bytes of written-out frames (shared execution) that may wait unsent for one
    #: subscription before it is ended with ``SlowConsumerError``. 4 MiB: hundreds of
    #: ordinary events (a few KB each), or a few of the largest a 64 KiB document can ask
    #: for, yet a socket full of stalled subscriptions still meets
    #: ``CONNECTION_QUEUE_BYTES`` first. One frame always fits when none waits.
    SUBSCRIPTION_QUEUE_BYTES: int
    #: Bytes of frames waiting unwritten for one WebSocket connection, all its
    #: subscriptions together. Past it the connection is closed at once with close code
    #: ``1013`` (Try Again Later) and its queued frames are dropped. 16 MiB: four
    #: subscriptions at their own bound; the most a client that stops reading can make the
    #: process hold (a thousand such clients: 16 GiB, so lower it for many untrusted
    #: clients). A socket that keeps up never queues anything.
    CONNECTION_QUEUE_BYTES: int
    #: Dotted path of the callable that turns a bearer token into a user (or ``None`` for
    #: a bad token): ``(token: str) -> AbstractBaseUser | None``. ``None`` here turns
    #: bearer tokens off: every presented token is refused.
    TOKEN_AUTHENTICATOR: str | None
    #: Seconds a token made by :func:`gqlsync.auth.make_token` stays valid.
    TOKEN_MAX_AGE: int
    #: Origins (``https://app.example.com``) allowed to open a WebSocket from a browser
    #: page on another origin. Same-origin pages and non-browser clients are always allowed.
    ALLOWED_ORIGINS: list[str]
    #: Operations (subscriptions, and queries/mutations over the socket) one connection
    #: may run at once; the next gets a "Subscription limit reached" error.
    MAX_SUBSCRIPTIONS_PER_CONNECTION: int
    #: Seconds a client has between opening the socket and ``connection_init``.
    CONNECTION_INIT_TIMEOUT: float
    #: Serve the bundled GraphiQL IDE on GET requests from browsers.
    GRAPHIQL: bool
    #: Deepest nesting of selections one operation may have (introspection not counted).
    MAX_QUERY_DEPTH: int
    #: Most tokens one GraphQL document may have (checked while parsing).
    MAX_QUERY_TOKENS: int
    #: Most aliases one document may use.
    MAX_ALIASES: int
    #: Largest HTTP body or WebSocket message, in bytes (413 / close code 1009 beyond).
    MAX_DOCUMENT_BYTES: int
    #: Allow introspection (``__schema``); ``None`` follows ``settings.DEBUG``.
    INTROSPECTION: bool | None
    #: Accept ``regex``/``iRegex`` lookups in subscription filters. Off: a backtracking
    #: pattern runs on every change, for everyone (see :mod:`gqlsync.guard`).
    ALLOW_REGEX_FILTERS: bool
    #: Most terms (comparisons, list values, AND/OR/NOT nodes) in one subscription's
    #: filter: the per-event cost of a subscription is bounded by it.
    MAX_FILTER_TERMS: int
    #: Most distinct filters one process asks the database per event of one model;
    #: past it, a subscription bringing a new one is refused (equal filters and exact
    #: matches are always admitted). About a millisecond each per event on PostgreSQL.
    MAX_DISTINCT_FILTERS: int
    #: The replay log subscriptions resume from (``after:``): ``"auto"`` (a Redis Stream
    #: per model with channels-redis, process memory with the in-memory layer), a
    #: backend's dotted path, or ``None`` (no resuming: ``after`` gets ``RESYNC``).
    LOG: str | None
    #: Events the log keeps per model; a cursor older than the oldest kept gets
    #: ``RESYNC``. 10,000 events of a few hundred bytes: a few MB per model in Redis.
    LOG_MAX_EVENTS: int
    #: Seconds the log keeps an event: a client away longer refetches instead.
    LOG_MAX_AGE: float
    #: The Redis the log lives in (a channels-redis ``hosts`` entry); ``None``: the
    #: channel layer's first host.
    LOG_REDIS: Any
    #: Give each WebSocket connection a channel of its own on the channel layer, as
    #: Channels' consumers have by default (Strawberry's ``listen_to_channel`` in your own
    #: resolvers needs it). Off: gqlsync's hub needs none, and sockets then live through
    #: a channel-layer outage (a Redis restart) instead of closing with it.
    SOCKET_CHANNELS: bool
    #: Send one execution's bytes to subscribers of other permission scopes when the
    #: execution read nothing of the context (so nothing of who is asking) and they
    #: receive the same row. Turn it off only if a resolver finds the current user
    #: other than through ``info.context`` (a thread-local "current user", say).
    SHARE_ACROSS_SCOPES: bool
    #: Rows of one permission view whose primary keys a process keeps, so that a change
    #: to a model the rule ``depends_on`` is announced row by row (``CREATED`` and
    #: ``DELETED``). A view with more rows keeps none: memory per view stays bounded
    #: whatever the table's size, its events are judged on the rows' previous states,
    #: and a change to what its rule depends on tells its subscribers to refetch
    #: (``RESYNC``). 5,000 keys: about 400 KB per distinct view.
    VIEW_KEYS_MAX: int
    #: The bearer token Prometheus sends to ``gqlsync.metrics.view`` and ``.app``
    #: (``Authorization: Bearer <token>``), read at each scrape. ``None`` (or blank):
    #: they refuse everyone with ``403``. The counters are process-wide, so they tell of
    #: activity in rooms the caller may not see: never public by default.
    METRICS_TOKEN: str | None


DEFAULTS: GQLSyncSettings = {
    "CHANNEL_LAYER": "default",
    "GROUP_PREFIX": "gqlsync",
    "SUBSCRIPTION_QUEUE_SIZE": 1000,
    "SUBSCRIPTION_QUEUE_BYTES": 4 * 1024 * 1024,
    "CONNECTION_QUEUE_BYTES": 16 * 1024 * 1024,
    "TOKEN_AUTHENTICATOR": "gqlsync.auth.authenticate_signed_token",
    "TOKEN_MAX_AGE": 14 * 24 * 3600,
    "ALLOWED_ORIGINS": [],
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 100,
    "CONNECTION_INIT_TIMEOUT": 60.0,
    "GRAPHIQL": True,
    "MAX_QUERY_DEPTH": 15,
    "MAX_QUERY_TOKENS": 5000,
    "MAX_ALIASES": 30,
    "MAX_DOCUMENT_BYTES": 64 * 1024,
    "INTROSPECTION": None,
    "ALLOW_REGEX_FILTERS": False,
    "MAX_FILTER_TERMS": 50,
    "MAX_DISTINCT_FILTERS": 200,
    "LOG": "auto",
    "LOG_MAX_EVENTS": 10_000,
    "LOG_MAX_AGE": 3600.0,
    "LOG_REDIS": None,
    "SOCKET_CHANNELS": False,
    "SHARE_ACROSS_SCOPES": True,
    "VIEW_KEYS_MAX": 5000,
    "METRICS_TOKEN": None,
}


def get_settings() -> GQLSyncSettings:
    """Return the defaults overlaid with ``settings.GQLSYNC``; unknown keys are an error."""
    user: dict[str, Any] = getattr(django_settings, "GQLSYNC", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        from gqlsync.exceptions import ConfigurationError

        raise ConfigurationError(
            f"Unknown GQLSYNC setting(s): {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(DEFAULTS))}."
        )
    return cast(GQLSyncSettings, {**DEFAULTS, **user})
