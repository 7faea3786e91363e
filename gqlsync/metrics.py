"""Prometheus metrics of this process's hub, read when Prometheus scrapes.

Needs prometheus-client (``pip install prometheus-client`` next to gqlsync, or gqlsync's
``metrics`` extra); the rest of gqlsync never imports it. Mount the view, or add the
collector to the registry your project already serves::

    # settings.py: the bearer token Prometheus sends (Authorization: Bearer <token>)
    GQLSYNC = {"METRICS_TOKEN": os.environ["GQLSYNC_METRICS_TOKEN"]}

    # urls.py
    path("metrics", gqlsync.metrics.view)

    # or the ASGI router: URLRouter([path("metrics", gqlsync.metrics.app), ...])

    # or, next to django-prometheus (or any /metrics of your own: protect that route)
    gqlsync.metrics.register()  # into prometheus_client.REGISTRY

The metrics are never public by default. The counters are process-wide, so they tell of
activity in every room, seen by the caller or not (which is why the JSON stats route is
for staff only): polling ``gqlsync_events_total`` or the latency histogram would time
the changes of private rooms. :data:`view` and :data:`app` answer only the token of
``GQLSYNC["METRICS_TOKEN"]`` (read at each request) and refuse everyone with ``403``
while it is unset; :func:`make_view` / :func:`make_app` take a token of their own, or
``public=True`` for a route that only your network reaches.

Nothing is counted for Prometheus while events flow. :class:`HubCollector` reads, at
scrape time, the counters the hub keeps anyway (``hub.stats``, which the JSON stats
route shows too), its subscriptions and its open WebSockets. The one figure made per
event is the commit-to-send latency, whose bucket counts the hub keeps
(:class:`gqlsync.hub.Latency`, one observation per event delivered, not per socket), so
this module holds no metric object: the collector can be registered into any number of
registries, and a scrape from another thread (a sync ``/metrics`` view) reads only
counters and sizes, never walks what the hub's loop is changing.

The figures are this process's. Each ASGI worker has its own hub: let Prometheus scrape
every worker (Prometheus' multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, does not
carry custom collectors).
"""
from __future__ import annotations

import hmac
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

try:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
    from prometheus_client import generate_latest as _generate_latest
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as error:
    raise ImportError(
        "gqlsync.metrics needs the prometheus-client package: pip install "
        "prometheus-client (or install gqlsync with its 'metrics' extra)"
    ) from error

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

from gqlsync.conf import get_settings

__all__ = ["COUNTERS", "HubCollector", "app", "exposition", "make_app", "make_view",
           "register", "view"]

#: ``hub.stats`` key -> (counter name without ``_total``, help). A key missing here is
#: exported all the same, as ``gqlsync_hub_<key>_total``.
COUNTERS: dict[str, tuple[str, str]] = {
    "events": ("gqlsync_events",
               "Committed changes the hub handled for local subscribers (once per event, "
               "however many subscribers)."),
    "deliveries": ("gqlsync_deliveries",
                   "Changes handed to a subscription (once per subscriber reached)."),
    "executions": ("gqlsync_executions",
                   "Selection sets executed for deliveries (shared by subscribers with the "
                   "same document, variables and permission scope)."),
    "dropped": ("gqlsync_dropped_messages",
                "Channel-layer messages to this process lost on the way (then replayed "
                "from the log, or their subscribers told to resync)."),
    "slow_consumers": ("gqlsync_slow_consumers",
                       "WebSocket connections closed with 1013 because their unwritten "
                       "frames passed CONNECTION_QUEUE_BYTES."),
    "slow_subscriptions": ("gqlsync_slow_subscriptions",
                           "Subscriptions ended because they fell behind "
                           "(SUBSCRIPTION_QUEUE_SIZE, SUBSCRIPTION_QUEUE_BYTES)."),
    "resynced": ("gqlsync_resyncs",
                 "Subscriptions ended with RESYNC: what they missed could not be told "
                 "exactly, the client refetches."),
    "errors": ("gqlsync_errors",
               "Channel-layer messages the hub failed to handle (logged by gqlsync.hub)."),
    "isolated": ("gqlsync_isolated_subscriptions",
                 "Subscriptions ended because their own filter, permission or selection "
                 "failed on a change."),
    "revoked": ("gqlsync_revoked_connections",
                "Connections closed with 4403 because their credentials no longer held."),
    "stale": ("gqlsync_stale_events",
              "Changes whose row was gone when read and whose values did not travel."),
    "fallbacks": ("gqlsync_evaluation_fallbacks",
                  "Changes whose conditions could not be asked in one query and were asked "
                  "one by one."),
    "resumed": ("gqlsync_resumed_subscriptions",
                "Subscriptions caught up from an after: cursor."),
    "healed": ("gqlsync_healed_events",
               "Changes replayed from the log after a drop or a channel-layer outage."),
    "outages": ("gqlsync_layer_outages",
                "Times the channel layer failed under the hub (it retries, then heals)."),
    "superseded": ("gqlsync_superseded_events",
                   "Changes skipped because a later change of the same row was handled "
                   "first."),
    "connected": ("gqlsync_connections_opened",
                  "WebSocket connections accepted."),
    "disconnected": ("gqlsync_connections_closed",
                     "WebSocket connections that ended, for any reason."),
}

#: the gauges, and the histogram (seconds, in its base unit)
CONNECTIONS = ("gqlsync_connections", "WebSocket connections open now.")
SUBSCRIPTIONS = ("gqlsync_subscriptions", "Subscriptions open now.")
GROUPS = ("gqlsync_groups", "Channel-layer groups with local subscriptions.")
LATENCY = ("gqlsync_commit_to_send_seconds",
           "Seconds from the commit of a change (the writing process's clock) to the hub "
           "handing it to its subscribers' sockets (this process's); once per change "
           "delivered.")


class HubCollector(Collector):
    """The hubs of this process (one per event loop; one in a server), summed."""

    def collect(self) -> Iterator[Metric]:
        from gqlsync.hub import LATENCY_BUCKETS, hubs

        stats: dict[str, int] = {}
        subscriptions = groups = 0
        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        seconds = 0.0
        for hub in hubs():
            # copies taken at once (a dict's or a list's copy, a len: no walk of what
            # the loop may be changing, if this thread is not the loop's)
            for key, value in dict(hub.stats).items():
                stats[key] = stats.get(key, 0) + value
            subscriptions += sum(len(members) for members in list(hub.groups.values()))
            groups += len(hub.groups)
            for index, count in enumerate(list(hub.latency.counts)):
                counts[index] += count
            seconds += hub.latency.sum
        for key, (name, documentation) in COUNTERS.items():
            yield CounterMetricFamily(name, documentation, value=stats.get(key, 0))
        for key in sorted(stats.keys() - COUNTERS.keys()):  # a counter added since
            yield CounterMetricFamily(f"gqlsync_hub_{key}",
                                      f"The hub's {key!r} counter (hub.stats).",
                                      value=stats[key])
        yield GaugeMetricFamily(*CONNECTIONS, value=stats.get("connected", 0)
                                - stats.get("disconnected", 0))
        yield GaugeMetricFamily(*SUBSCRIPTIONS, value=subscriptions)
        yield GaugeMetricFamily(*GROUPS, value=groups)
        cumulative, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        yield HistogramMetricFamily(*LATENCY, buckets=buckets, sum_value=seconds)

    def describe(self) -> Iterator[Metric]:
        """The names, for a registry's duplicate check (without reading any hub)."""
        for name, documentation in COUNTERS.values():
            yield CounterMetricFamily(name, documentation)
        for gauge in (CONNECTIONS, SUBSCRIPTIONS, GROUPS):
            yield GaugeMetricFamily(*gauge)
        yield HistogramMetricFamily(*LATENCY)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


#: an ASGI connection scope
Scope = dict[str, Any]
_TEXT = "text/plain; charset=utf-8"
_registered: weakref.WeakKeyDictionary[CollectorRegistry, HubCollector] = (
    weakref.WeakKeyDictionary())


def register(registry: CollectorRegistry | None = None) -> HubCollector:
    """Add gqlsync's collector to ``registry`` (default: ``prometheus_client.REGISTRY``,
    the one django-prometheus and ``make_asgi_app()`` serve); once per registry, so
    calling it again (from ``AppConfig.ready()``, from the view) is harmless.

    The route that serves ``registry`` is yours, and so is its protection: gqlsync's
    figures in it are as telling as on :data:`view` (django-prometheus' ``/metrics``, for
    one, answers anyone)."""
    registry = REGISTRY if registry is None else registry
    collector = _registered.get(registry)
    if collector is None:
        collector = HubCollector()
        registry.register(collector)  # raises if another collector has these names
        _registered[registry] = collector
    return collector


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """(body, content type) of a scrape of ``registry`` (default: ``REGISTRY``, with
    gqlsync's collector added to it if it is not yet)."""
    if registry is None:
        register()
        registry = REGISTRY
    return _generate_latest(registry), CONTENT_TYPE_LATEST


def make_view(token: str | None = None, *, public: bool = False,
              ) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """A Django view serving ``prometheus_client.REGISTRY`` with gqlsync's metrics (and
    whatever else the process registered: ``process_*``, ``python_*``…).

    It answers only a request carrying ``Authorization: Bearer <token>`` (``401``
    otherwise), which Prometheus sends from its scrape configuration (``authorization:
    credentials_file``). The token is ``token``, or with none given the setting
    ``GQLSYNC["METRICS_TOKEN"]``, read at each request; while that is unset too, the
    view refuses everyone with ``403``. ``public=True`` (without a token) answers anyone
    who reaches the route: only for a route that your network alone reaches. Async, so
    under ASGI it runs on the hub's own loop."""
    refusal = _access(token, public)

    async def metrics_view(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        refused = refusal(request.headers.get("authorization"))
        if refused is not None:
            status, text, headers = refused
            return HttpResponse(text, status=status, content_type=_TEXT,
                                headers=dict(headers))
        body, content_type = exposition()
        return HttpResponse(body, content_type=content_type)

    return metrics_view


def make_app(token: str | None = None, *, public: bool = False,
             ) -> Callable[[Scope, Any, Any], Awaitable[None]]:
    """The same as an ASGI application, for the ASGI router (``URLRouter``), outside
    Django's URLconf and middleware; ``token`` and ``public`` as for :func:`make_view`."""
    refusal = _access(token, public)

    async def metrics_app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"gqlsync's metrics serve HTTP, not {scope['type']!r}")
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"Method Not Allowed", _TEXT, [(b"allow", b"GET, HEAD")])
            return
        header = dict(scope.get("headers") or ()).get(b"authorization")
        refused = refusal(None if header is None else header.decode("latin-1"))
        if refused is not None:
            status, text, headers = refused
            await _respond(send, status, b"" if method == "HEAD" else text.encode(), _TEXT,
                           [(name.lower().encode(), value.encode()) for name, value in headers])
            return
        body, content_type = exposition()
        await _respond(send, 200, b"" if method == "HEAD" else body, content_type)

    return metrics_app


#: (status, plain-text body, headers) of a refused request
_Refusal = tuple[int, str, tuple[tuple[str, str], ...]]

_UNAUTHORIZED: _Refusal = (401, "Unauthorized\n", (("WWW-Authenticate", "Bearer"),))
#: while no token is set: for everyone, and saying how to serve the metrics
_NOT_CONFIGURED: _Refusal = (403, (
    "Forbidden: gqlsync's metrics are not public, and no token is set for them.\n"
    "Set GQLSYNC[\"METRICS_TOKEN\"] in the Django settings and have Prometheus send it "
    "(Authorization: Bearer <token>), or serve gqlsync.metrics.make_view(public=True) "
    "(make_app(public=True)) on a route that only your network reaches.\n"), ())


def _access(token: str | None, public: bool) -> Callable[[str | None], _Refusal | None]:
    """What refuses a request, given its ``Authorization`` header (``None``: answer)."""
    if public and token is not None:
        raise ValueError("pass a metrics token or public=True, not both")
    if token is not None and not token.strip():
        raise ValueError("an empty metrics token would let anyone in: pass public=True "
                         "to serve the metrics without one")

    def refusal(header: str | None) -> _Refusal | None:
        if public:
            return None
        expected = token if token is not None else _setting()
        if expected is None:
            return _NOT_CONFIGURED
        return None if _authorized(header, expected) else _UNAUTHORIZED

    return refusal


def _setting() -> str | None:
    """``GQLSYNC["METRICS_TOKEN"]``, now; ``None`` for no token (unset, or blank: a blank
    token would match an empty credential)."""
    token = get_settings()["METRICS_TOKEN"]
    return token if isinstance(token, str) and token.strip() else None


def _authorized(header: str | None, token: str) -> bool:
    """``header`` is ``Bearer <token>`` (the token compared in constant time)."""
    scheme, _, credential = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode(), token.encode())


async def _respond(send: Any, status: int, body: bytes, content_type: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


#: answer only ``Authorization: Bearer <GQLSYNC["METRICS_TOKEN"]>``; everyone, with
#: ``403``, while that setting is unset
view = make_view()
app = make_app()
