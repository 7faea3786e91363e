"""Prometheus metrics: what a scrape shows moves as the subscribers and the changes do.

Every test scrapes a real route (the docs' ASGI router or Django URLconf, both in
``docs/examples/``) and reads the exposition text back with prometheus_client's own
parser, as Prometheus would.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import transaction
from django.test import AsyncClient, AsyncRequestFactory, override_settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gqlsync import broker
from gqlsync.events import Event, Op
from gqlsync.hub import LATENCY_BUCKETS, Hub, Subscription, get_hub
from gqlsync.metrics import COUNTERS, HubCollector, exposition, make_app, make_view, register, view
from gqlsync.testing import ClosedError, GraphQLWSClient, capture_events, settle
from gqlsync.transport.websocket import CLOSE_SLOW_CONSUMER
from schema_examples.bookstore.models import Author, Book
from tests.test_docs import copies, load_example
from tests.test_memory_bounds import Gate
from tests.test_transport import graphql

ROOT = Path(__file__).resolve().parents[1]
BOOKS = "subscription { bookChanged { op node { title } } }"

TOKEN = "for-prometheus-only"


@pytest.fixture
def routed(settings: Any) -> Any:
    """The docs' ASGI application: gqlsync's route, and /metrics behind the token of
    ``GQLSYNC["METRICS_TOKEN"]``."""
    settings.GQLSYNC = {**getattr(settings, "GQLSYNC", {}), "METRICS_TOKEN": TOKEN}
    return load_example("metrics_asgi").application


async def scrape(app: Any, path: str = "/metrics", method: str = "GET",
                 authorization: str | None = f"Bearer {TOKEN}",
                 ) -> tuple[int, dict[bytes, bytes], str]:
    """(status, headers, body) of one HTTP request to ``app``."""
    headers = [(b"host", b"testserver")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http",
             "http_version": "1.1"}
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(5)
    body = await comm.receive_output(5)
    return start["status"], dict(start["headers"]), body["body"].decode()


def samples(text: str) -> dict[str, float]:
    """``name{label="v"}`` -> value, for every gqlsync sample of a scrape."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("gqlsync_"):
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


async def metrics(app: Any) -> dict[str, float]:
    status, headers, body = await scrape(app)
    assert status == 200, body
    assert headers[b"content-type"] == CONTENT_TYPE_LATEST.encode()
    return samples(body)


@pytest.fixture(autouse=True)
async def _only_this_tests_hubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The figures are the process's, summed over every hub whose loop is open; a loop an
    earlier test left open (a thread's) would count its hub here too."""
    from gqlsync import hub as hubs

    current = asyncio.get_running_loop()
    mine: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = (
        weakref.WeakKeyDictionary())
    if current in hubs._hubs:
        mine[current] = hubs._hubs[current]
    monkeypatch.setattr(hubs, "_hubs", mine)


@pytest.fixture
async def author(transactional_db: Any) -> Author:
    return await Author.objects.acreate(name="Lee Child", email="lee@child.com")


# --------------------------------------------------------------------------- the figures


@pytest.mark.django_db(transaction=True)
async def test_connections_and_subscriptions_go_up_and_back_down_on_disconnect(routed: Any) -> None:
    before = await metrics(routed)
    assert before["gqlsync_connections"] == 0
    assert before["gqlsync_subscriptions"] == 0
    async with GraphQLWSClient(routed) as first:
        await first.subscribe(BOOKS)
        await first.subscribe(BOOKS)
        async with GraphQLWSClient(routed) as second:
            await second.subscribe(BOOKS)
            during = await metrics(routed)
            assert during["gqlsync_connections"] == 2
            assert during["gqlsync_subscriptions"] == 3
            assert during["gqlsync_connections_opened_total"] == 2
        await settle()
        after_one = await metrics(routed)
        assert after_one["gqlsync_connections"] == 1, "the closed socket is not counted"
        assert after_one["gqlsync_subscriptions"] == 2, "its subscription went with it"
        assert after_one["gqlsync_connections_closed_total"] == 1
    after = await metrics(routed)
    assert after["gqlsync_connections"] == 0
    assert after["gqlsync_subscriptions"] == 0
    assert after["gqlsync_connections_opened_total"] == 2


async def test_events_deliveries_and_the_latency_count_once_per_commit(
        author: Author, routed: Any) -> None:
    async with GraphQLWSClient(routed) as one, GraphQLWSClient(routed) as two:
        subs = [await one.subscribe(BOOKS), await two.subscribe(BOOKS)]
        for i in range(3):
            await Book.objects.acreate(title=f"Book {i}", author=author)
        for sub in subs:
            assert [(await sub.next())["data"]["bookChanged"]["node"]["title"]
                    for _ in range(3)] == ["Book 0", "Book 1", "Book 2"]
        found = await metrics(routed)
    assert found["gqlsync_events_total"] == 3
    assert found["gqlsync_deliveries_total"] == 6, "one per subscriber reached"
    assert found["gqlsync_executions_total"] == 3, "equal subscriptions share an execution"
    # once per event delivered, not once per socket
    assert found["gqlsync_commit_to_send_seconds_count"] == 3
    assert found['gqlsync_commit_to_send_seconds_bucket{le="+Inf"}'] == 3
    assert 0 < found["gqlsync_commit_to_send_seconds_sum"] < 3 * 5
    counts = [found[f'gqlsync_commit_to_send_seconds_bucket{{le="{bound!r}"}}']
              for bound in LATENCY_BUCKETS]
    assert counts == sorted(counts), "buckets are cumulative"


async def test_the_latency_is_measured_from_the_commit(author: Author, routed: Any) -> None:
    """An event committed two seconds before it reaches the hub (a busy layer, a
    backlog) is two seconds late: not the moment the hub received it."""
    book = await Book.objects.acreate(title="Die Trying", author=author)
    async with GraphQLWSClient(routed) as client:
        sub = await client.subscribe(BOOKS)
        late = Event("bookstore.book", book.pk, Op.UPDATED, committed_at=time.time() - 2)
        await broker.apublish([late])
        await sub.next()
        found = await metrics(routed)
    assert found["gqlsync_commit_to_send_seconds_count"] == 1
    assert found['gqlsync_commit_to_send_seconds_bucket{le="1.0"}'] == 0
    assert found['gqlsync_commit_to_send_seconds_bucket{le="2.5"}'] == 1
    assert 2 <= found["gqlsync_commit_to_send_seconds_sum"] < 2.5


async def test_an_event_without_a_commit_time_is_delivered_and_not_timed(
        author: Author, routed: Any) -> None:
    """Messages from a process that does not stamp events (an older version during a
    rolling deploy, an event made by hand) still reach the subscribers."""
    book = await Book.objects.acreate(title="Tripwire", author=author)
    message = Event("bookstore.book", book.pk, Op.UPDATED).to_message()
    del message["committed_at"]
    assert Event.from_message(message).committed_at is None
    assert Event.from_message({**message, "committed_at": "soon"}).committed_at is None
    async with GraphQLWSClient(routed) as client:
        sub = await client.subscribe(BOOKS)
        await broker.apublish([Event.from_message(message)])
        assert (await sub.next())["data"]["bookChanged"]["op"] == "UPDATED"
        found = await metrics(routed)
    assert found["gqlsync_events_total"] == 1
    assert found["gqlsync_commit_to_send_seconds_count"] == 0


@pytest.mark.django_db(transaction=True)
def test_events_carry_the_time_of_their_commit_not_of_the_write() -> None:
    with capture_events() as events, transaction.atomic():
        author = Author.objects.create(name="Janet", email="janet@example.com")
        time.sleep(0.05)
        committing = time.time()
    (event,) = events
    assert event.model == "bookstore.author"
    assert event.committed_at is not None
    assert committing <= event.committed_at <= time.time()
    # outside a transaction (autocommit), the write is its own commit
    before = time.time()
    with capture_events() as events:
        author.name = "Janet Evanovich"
        author.save()
    (event,) = events
    assert event.committed_at is not None
    assert event.committed_at >= before


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_a_slow_consumer_closed_with_1013_is_counted(settings: Any, routed: Any) -> None:
    settings.GQLSYNC = {**settings.GQLSYNC, "CONNECTION_QUEUE_BYTES": 6_000}
    gate = Gate(routed)
    author = await Author.objects.aget(email="lee@child.com")
    async with GraphQLWSClient(gate) as slow, GraphQLWSClient(routed) as fast:
        for _ in range(5):
            await slow.subscribe(BOOKS, settle=0)
        await fast.subscribe(BOOKS)
        await settle()
        assert (await metrics(routed))["gqlsync_connections"] == 2
        gate.open.clear()  # the slow client stops reading
        for i in range(10):
            await Book.objects.acreate(title=f"{i:03d}" + "t" * 250, author=author)
            await settle()
            if (await metrics(routed))["gqlsync_slow_consumers_total"]:
                break
        await settle()
        found = await metrics(routed)
        assert found["gqlsync_slow_consumers_total"] == 1
        assert found["gqlsync_subscriptions"] == 1, "its subscriptions ended with it"
        assert found["gqlsync_connections"] == 1, "it no longer counts as open"
        gate.open.set()
        with pytest.raises(ClosedError) as closed:
            while True:
                await slow.receive(timeout=2)
        assert closed.value.code == CLOSE_SLOW_CONSUMER
    assert (await metrics(routed))["gqlsync_slow_consumers_total"] == 1, "counted once"


async def test_a_subscription_ended_for_falling_behind_is_counted(
        author: Author, routed: Any) -> None:
    hub = get_hub()
    slow = Subscription("bookstore.book", broker.model_group("bookstore.book"), limit=2)
    await hub.subscribe(slow)
    for i in range(4):  # nobody reads: past two queued, it is ended
        await Book.objects.acreate(title=f"Unread {i}", author=author)
        await settle()
    assert slow.ended
    assert (await metrics(routed))["gqlsync_slow_subscriptions_total"] == 1
    await hub.close()


async def test_the_hubs_counters_are_all_exported_by_name(routed: Any) -> None:
    """A counter added to ``hub.stats`` gets a proper name and help here (it would be
    exported as ``gqlsync_hub_<key>_total`` meanwhile)."""
    hub = get_hub()
    assert set(hub.stats) == set(COUNTERS)
    # the figures are the process's: a hub an earlier test left on a still-open loop
    # counts too, so compare before and after
    before = await metrics(routed)
    hub.stats["events"] += 7
    hub.stats["brand_new"] = 2
    try:
        found = await metrics(routed)
    finally:
        del hub.stats["brand_new"]
    assert found["gqlsync_events_total"] - before["gqlsync_events_total"] == 7
    assert found["gqlsync_hub_brand_new_total"] == 2
    names = [family.name for family in HubCollector().describe()]
    assert all(re.fullmatch(r"gqlsync_[a-z_]+", name) for name in names)
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------- the routes


@pytest.mark.django_db(transaction=True)
async def test_the_django_view_serves_the_same_figures(routed: Any) -> None:
    with override_settings(ROOT_URLCONF=load_example("metrics_urls").__name__):
        client = AsyncClient()
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        async with GraphQLWSClient(routed) as ws:
            await ws.subscribe(BOOKS)
            response = await client.get("/metrics", headers=authorized)
            assert response.status_code == 200
            assert response["Content-Type"] == CONTENT_TYPE_LATEST
            found = samples(response.content.decode())
            assert found["gqlsync_connections"] == 1
            assert found["gqlsync_subscriptions"] == 1
        assert (await client.post("/metrics", headers=authorized)).status_code == 405
        assert (await client.get("/metrics")).status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_the_asgi_route_answers_get_only_and_passes_the_rest_on(routed: Any) -> None:
    status, headers, body = await scrape(routed, method="HEAD")
    assert (status, body) == (200, "")
    status, headers, _ = await scrape(routed, method="POST")
    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD"
    answer = await graphql(routed, "{ __typename }")  # the rest: gqlsync's route
    assert answer["data"] == {"__typename": "Query"}


async def test_a_scrape_from_another_thread_reads_the_live_hub(routed: Any) -> None:
    """A sync /metrics view (django-prometheus) scrapes from a worker thread: it reads
    the hub of the loop that serves the sockets."""
    async with GraphQLWSClient(routed) as client:
        await client.subscribe(BOOKS)
        body, _ = await asyncio.to_thread(exposition)
    found = samples(body.decode())
    assert found["gqlsync_connections"] == 1
    assert found["gqlsync_subscriptions"] == 1


async def test_a_closed_loops_hub_is_not_counted(routed: Any) -> None:
    def elsewhere() -> tuple[asyncio.AbstractEventLoop, Hub]:
        async def make() -> tuple[asyncio.AbstractEventLoop, Hub]:
            hub = get_hub()
            hub.stats["events"] = 1000
            return asyncio.get_running_loop(), hub

        return asyncio.run(make())

    before = (await metrics(routed))["gqlsync_events_total"]
    loop, hub = await asyncio.to_thread(elsewhere)  # kept: its hub stays known
    assert loop.is_closed()
    assert hub.stats["events"] == 1000
    assert (await metrics(routed))["gqlsync_events_total"] == before


async def test_the_collector_joins_an_existing_registry_once() -> None:
    example = load_example("metrics_registry")
    config = example.MonitoringConfig("monitoring", example)
    config.ready()
    config.ready()  # again (tests, autoreload): harmless
    assert "gqlsync_events_total" in samples(generate_latest(REGISTRY).decode())
    assert register(example.registry) is register(example.registry)
    before = samples(generate_latest(example.registry).decode())
    get_hub().stats["deliveries"] += 4  # (other tests' hubs may still count too)
    found = samples(generate_latest(example.registry).decode())
    assert found["gqlsync_deliveries_total"] - before["gqlsync_deliveries_total"] == 4
    assert not any(name.startswith("process_") for name in found)


def test_without_prometheus_client_the_error_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "gqlsync.metrics")
    with pytest.raises(ImportError, match="pip install prometheus-client"):
        importlib.import_module("gqlsync.metrics")


# --------------------------------------------------------------------------- who may read


async def get_view(view: Any, authorization: str | None = None) -> Any:
    """A GET of a Django view of this module, by itself (no URLconf)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    return await view(AsyncRequestFactory().get("/metrics", headers=headers))


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}",
                                           f"Bearer {TOKEN}x", "Bearer ", TOKEN])
async def test_without_the_token_the_metrics_are_refused(
        routed: Any, authorization: str | None) -> None:
    status, headers, body = await scrape(routed, authorization=authorization)
    assert status == 401
    assert headers[b"www-authenticate"] == b"Bearer"
    assert "gqlsync" not in body
    response = await get_view(view, authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"gqlsync" not in response.content


async def test_the_token_scheme_is_case_insensitive(routed: Any) -> None:
    status, _, body = await scrape(routed, authorization=f"bearer {TOKEN}")
    assert status == 200
    assert "gqlsync_events_total" in body


@pytest.mark.parametrize("configured", [{}, {"METRICS_TOKEN": None}, {"METRICS_TOKEN": ""},
                                        {"METRICS_TOKEN": "  "}])
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}", "Bearer ", "Bearer  "])
async def test_with_no_token_set_the_metrics_refuse_everyone(
        configured: dict[str, Any], authorization: str | None) -> None:
    """Not public by default: the counters tell of activity in every room. The refusal
    says how to serve them."""
    app = load_example("metrics_asgi").application
    with override_settings(GQLSYNC=configured):
        status, headers, body = await scrape(app, authorization=authorization)
        response = await get_view(view, authorization)
    assert status == 403
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"www-authenticate" not in headers
    assert 'GQLSYNC["METRICS_TOKEN"]' in body
    assert "public=True" in body
    assert "gqlsync_" not in body
    assert response.status_code == 403
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == body


async def test_the_token_is_read_from_the_setting_at_each_request() -> None:
    app = load_example("metrics_asgi").application
    with override_settings(GQLSYNC={"METRICS_TOKEN": "first"}):
        assert (await scrape(app, authorization="Bearer first"))[0] == 200
        assert (await get_view(view, "Bearer first")).status_code == 200
    with override_settings(GQLSYNC={"METRICS_TOKEN": "second"}):
        assert (await scrape(app, authorization="Bearer first"))[0] == 401
        assert (await get_view(view, "Bearer first")).status_code == 401
        status, _, body = await scrape(app, authorization="Bearer second")
    assert status == 200
    assert "gqlsync_events_total" in body


@pytest.mark.parametrize("configured", [{}, {"METRICS_TOKEN": TOKEN}])
async def test_a_token_of_its_own_ignores_the_setting(configured: dict[str, Any]) -> None:
    app, view = make_app(token="its-own"), make_view(token="its-own")
    with override_settings(GQLSYNC=configured):
        assert (await scrape(app, authorization="Bearer its-own"))[0] == 200
        assert (await get_view(view, "Bearer its-own")).status_code == 200
        assert (await scrape(app, authorization=f"Bearer {TOKEN}"))[0] == 401
        assert (await get_view(view, f"Bearer {TOKEN}")).status_code == 401
        assert (await scrape(app, authorization=None))[0] == 401


@pytest.mark.parametrize("configured", [{}, {"METRICS_TOKEN": TOKEN}])
async def test_public_routes_answer_anyone(configured: dict[str, Any]) -> None:
    app, view = make_app(public=True), make_view(public=True)
    with override_settings(GQLSYNC=configured):
        status, _, body = await scrape(app, authorization=None)
        response = await get_view(view)
    assert status == 200
    assert "gqlsync_events_total" in body
    assert response.status_code == 200
    assert b"gqlsync_events_total" in response.content


async def test_a_refused_head_has_no_body() -> None:
    app = load_example("metrics_asgi").application
    with override_settings(GQLSYNC={}):
        assert await scrape(app, method="HEAD") == (
            403, {b"content-type": b"text/plain; charset=utf-8"}, "")
    with override_settings(GQLSYNC={"METRICS_TOKEN": TOKEN}):
        status, _, body = await scrape(app, method="HEAD", authorization=None)
    assert (status, body) == (401, "")


def test_an_empty_token_or_a_token_and_public_are_refused_at_once() -> None:
    for make in (make_app, make_view):
        with pytest.raises(ValueError, match="empty metrics token"):
            make(token=" ")
        with pytest.raises(ValueError, match="not both"):
            make(token=TOKEN, public=True)


# --------------------------------------------------------------------------- the guide

GUIDE = ROOT / "docs" / "guides" / "metrics.md"
EXAMPLES = ("metrics_urls", "metrics_asgi", "metrics_registry")


def test_the_guide_shows_each_example_as_it_is() -> None:
    shown = {block.title: block.text for block in copies(GUIDE)}
    for name in EXAMPLES:
        path = f"docs/examples/{name}.py"
        assert shown.get(path) == (ROOT / path).read_text(encoding="utf-8"), path


def test_the_guide_lists_every_metric() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\|\s*`(gqlsync_[a-z_]+)`", text, re.MULTILINE))
    exported = set()
    for family in HubCollector().describe():
        suffix = "_total" if family.type == "counter" else ""
        exported.add(family.name + suffix)
    assert listed == exported
