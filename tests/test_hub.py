"""The hub: one group membership per process, however many subscriptions share it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db.models import Q
from django.test import override_settings

from gqlsync import broker
from gqlsync.exceptions import ResyncRequired, SlowConsumerError
from gqlsync.hub import Subscription, get_hub
from gqlsync.matching import RowFilter
from gqlsync.testing import settle
from schema_examples.bookstore.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)

BOOKS = broker.model_group("bookstore.book")


def group_members(group: str) -> set[str]:
    layer = get_channel_layer()
    return set(layer.groups.get(group, {}))


@pytest.fixture
async def lee() -> Author:
    return await Author.objects.acreate(name="Lee Child", email="lee@child.com")


async def test_many_subscriptions_share_one_group_membership() -> None:
    hub = get_hub()
    subs = [Subscription("bookstore.book", BOOKS) for _ in range(50)]
    for sub in subs:
        await hub.subscribe(sub)
    assert group_members(BOOKS) == {hub.channel}
    for sub in subs[:-1]:
        hub.unsubscribe(sub)
    await asyncio.sleep(0.05)
    assert group_members(BOOKS) == {hub.channel}, "still one subscription: stay in the group"
    hub.unsubscribe(subs[-1])
    await asyncio.sleep(0.05)
    assert group_members(BOOKS) == set()
    await hub.close()


async def test_the_hub_stays_in_its_groups_past_the_layers_group_expiry(lee: Author) -> None:
    """Channels' layers forget a group member ``group_expiry`` seconds after it was added
    (a day by default): a process whose subscribers stay longer must keep receiving."""
    layer = get_channel_layer()
    expiry = layer.group_expiry
    layer.group_expiry = 1
    hub = get_hub()
    try:
        sub = Subscription("bookstore.book", BOOKS)
        await hub.subscribe(sub)
        await asyncio.sleep(2.5)  # more than twice the expiry
        book = await Book.objects.acreate(title="Killing Floor", author=lee)
        assert (await asyncio.wait_for(sub.next(), 2)).event.pk == book.pk
    finally:
        layer.group_expiry = expiry
        await hub.close()


async def test_a_message_that_is_not_a_dict_does_not_stop_the_hub(
        lee: Author, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever arrives on the hub's channel (a message written to Redis by hand), the
    receive loop goes on: it is every subscriber's only way in."""
    hub = get_hub()
    sub = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(sub)
    receive, garbage = hub.layer.receive, ["not a message", 42]

    async def with_garbage(channel: str) -> Any:
        return garbage.pop() if garbage else await receive(channel)

    monkeypatch.setattr(hub.layer, "receive", with_garbage)
    first = await Book.objects.acreate(title="Killing Floor", author=lee)
    assert (await asyncio.wait_for(sub.next(), 2)).event.pk == first.pk
    second = await Book.objects.acreate(title="Die Trying", author=lee)
    assert (await asyncio.wait_for(sub.next(), 2)).event.pk == second.pk
    assert not garbage
    await hub.close()


async def test_every_subscription_gets_the_event_and_the_row_is_shared(lee: Author) -> None:
    hub = get_hub()
    subs = [Subscription("bookstore.book", BOOKS) for _ in range(3)]
    for sub in subs:
        await hub.subscribe(sub)
    book = await Book.objects.acreate(title="Killing Floor", author=lee)
    deliveries = [await asyncio.wait_for(sub.next(), 2) for sub in subs]
    assert {d.event.pk for d in deliveries} == {book.pk}
    assert len({id(d.instance) for d in deliveries}) == 1, "the row was loaded once"
    assert hub.stats["events"] == 1
    await hub.close()


async def test_filters_are_answered_per_subscription(lee: Author) -> None:
    janet = await Author.objects.acreate(name="Janet", email="janet@evanovich.com")
    hub = get_hub()
    base = Book.objects.all()
    only_lee = Subscription("bookstore.book", BOOKS, [
        RowFilter.where(base, Q(author__email="lee@child.com"))])
    only_janet = Subscription("bookstore.book", BOOKS, [
        RowFilter.where(base, Q(author__email="janet@evanovich.com"))])
    await hub.subscribe(only_lee)
    await hub.subscribe(only_janet)
    book = await Book.objects.acreate(title="Die Trying", author=lee)
    assert (await asyncio.wait_for(only_lee.next(), 2)).event.pk == book.pk
    await asyncio.sleep(0.1)
    assert not only_janet.queue
    await sync_to_async(book.delete)()
    deleted = await asyncio.wait_for(only_lee.next(), 2)
    assert deleted.event.op.value == "DELETED"
    assert deleted.instance.title == "Die Trying"
    await asyncio.sleep(0.1)
    assert not only_janet.queue, "a delete reaches only subscriptions the row matched"
    del janet
    await hub.close()


async def test_ending_one_subscription_leaves_the_others_running(lee: Author) -> None:
    hub = get_hub()
    first = Subscription("bookstore.book", BOOKS)
    second = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(first)
    await hub.subscribe(second)
    hub.unsubscribe(first)
    book = await Book.objects.acreate(title="Still here", author=lee)
    assert (await asyncio.wait_for(second.next(), 2)).event.pk == book.pk
    assert not first.queue
    await hub.close()


async def test_a_row_subscription_joins_only_its_row_group(lee: Author) -> None:
    watched = await Book.objects.acreate(title="Watched", author=lee)
    other = await Book.objects.acreate(title="Other", author=lee)
    hub = get_hub()
    sub = Subscription("bookstore.book", broker.row_group("bookstore.book", watched.pk))
    await hub.subscribe(sub)
    other.title = "Other 2"
    await sync_to_async(other.save)()
    watched.title = "Watched 2"
    await sync_to_async(watched.save)()
    delivery = await asyncio.wait_for(sub.next(), 2)
    assert (delivery.event.pk, delivery.instance.title) == (watched.pk, "Watched 2")
    await hub.close()


async def test_a_slow_subscription_is_ended_without_holding_the_others(
    lee: Author, settings: object
) -> None:
    settings.GQLSYNC = {"SUBSCRIPTION_QUEUE_SIZE": 2}  # type: ignore[attr-defined]
    hub = get_hub()
    slow = Subscription("bookstore.book", BOOKS)
    fast = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(slow)
    await hub.subscribe(fast)
    received = []
    for i in range(4):
        await Book.objects.acreate(title=f"b{i}", author=lee)
        received.append(await asyncio.wait_for(fast.next(), 2))
    assert len(received) == 4
    with pytest.raises(SlowConsumerError):
        await asyncio.wait_for(slow.next(), 2)
    await hub.close()


async def test_an_event_for_a_row_deleted_since_is_skipped(lee: Author) -> None:
    hub = get_hub()
    sub = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(sub)
    layer = get_channel_layer()
    from gqlsync.events import Event, Op

    for group, message in broker.messages_for(Event("bookstore.book", 123456, Op.UPDATED)):
        await layer.group_send(group, message)
    await asyncio.sleep(0.1)
    assert not sub.queue
    assert hub.stats["stale"] == 1
    await hub.close()


def lose_next_update() -> None:
    """The layer loses the next UPDATED sent to the books group (as a full channel would)."""
    layer = get_channel_layer()
    send = layer.group_send
    lost: list[bool] = []

    async def lossy(group: str, message: dict[str, Any]) -> None:
        if group == BOOKS and message.get("op") == "UPDATED" and not lost:
            lost.append(True)
            return
        await send(group, message)

    layer.group_send = lossy


async def test_a_message_the_layer_dropped_is_counted_logged_and_healed_from_the_log(
    lee: Author, caplog: pytest.LogCaptureFixture
) -> None:
    """The next message shows the gap; the hub replays the lost one from the log before
    it, so the subscriber gets both, in order, once."""
    hub = get_hub()
    sub = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(sub)
    book = await Book.objects.acreate(title="one", author=lee)
    await asyncio.wait_for(sub.next(), 2)
    lose_next_update()
    book.title = "two"
    await sync_to_async(book.save)()
    book.title = "three"
    await sync_to_async(book.save)()
    titles = [(await asyncio.wait_for(sub.next(), 2)).instance.title for _ in range(2)]
    assert titles == ["two", "three"]
    await settle()
    assert not sub.queue
    assert hub.stats["dropped"] == 1
    assert hub.stats["healed"] >= 1
    assert "dropped 1 message" in caplog.text
    await hub.close()


async def test_a_drop_the_log_cannot_heal_ends_its_subscribers_with_resync(
    lee: Author,
) -> None:
    """Never silent: without a log to replay from, the subscribers refetch."""
    with override_settings(GQLSYNC={"LOG": None}):
        hub = get_hub()
        sub = Subscription("bookstore.book", BOOKS)
        await hub.subscribe(sub)
        book = await Book.objects.acreate(title="one", author=lee)
        await asyncio.wait_for(sub.next(), 2)
        lose_next_update()
        for title in ("two", "three"):
            book.title = title
            await sync_to_async(book.save)()
        with pytest.raises(ResyncRequired):
            await asyncio.wait_for(sub.next(), 2)
        assert hub.subscription_count() == 0
        await hub.close()


def test_one_query_answers_every_distinct_condition_of_an_event(transactional_db: None) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from gqlsync.events import Event, Op
    from gqlsync.matching import TrackedView
    from gqlsync.rows import evaluate

    lee = Author.objects.create(name="Lee Child", email="lee@child.com")
    book = Book.objects.create(title="Killing Floor", author=lee)
    base = Book.objects.all()
    checks = {f.key: f for f in (RowFilter.where(base, Q(title=f"t{i}")) for i in range(20))}
    exact = RowFilter.where(base, Q(author__email="lee@child.com"))
    checks[exact.key] = exact
    views = {}
    for condition in (Q(author=lee), Q(title="nope"), Q(pk__in=[])):
        view = TrackedView(base.filter(condition))
        view.load()
        views[view.key] = view
    with CaptureQueriesContext(connection) as queries:
        answers = evaluate(Event("bookstore.book", book.pk, Op.UPDATED), checks, views)
    assert len(queries) == 1
    assert answers.instance is not None
    assert answers.instance.author.email == "lee@child.com"  # joined, no extra query
    assert [k for k, ok in answers.checks.items() if ok] == [exact.key]
    assert sorted(answers.views.values()) == [(False, False), (False, False), (True, True)]


def test_a_subscription_that_arrived_during_evaluation_waits_for_the_next_event() -> None:
    """Its conditions were not asked for this event: it gets nothing, not a KeyError
    that would lose the event for everyone else in the group."""
    from gqlsync.events import Event, Op
    from gqlsync.hub import Delivery, Hub
    from gqlsync.rows import Answers

    late = Subscription("bookstore.book", BOOKS, checks=(RowFilter.where(
        Book.objects.all(), Q(title="late")),))
    event = Event("bookstore.book", 1, Op.UPDATED)
    row = Book(id=1, title="late")
    answers = Answers(row, None, {}, {})
    plain = Delivery(event, row, Op.UPDATED)
    assert Hub._delivery_for(late, event, answers, plain) is None


async def test_an_older_change_arriving_after_a_newer_one_does_not_put_the_old_state_back(
    lee: Author,
) -> None:
    """Two processes commit "two" then "three" to one row, and their messages reach this
    hub the other way round: the subscriber ends with "three", not "two"."""
    hub = get_hub()
    sub = Subscription("bookstore.book", BOOKS)
    await hub.subscribe(sub)
    book = await Book.objects.acreate(title="one", author=lee)
    await asyncio.wait_for(sub.next(), 2)
    layer = get_channel_layer()
    send = layer.group_send
    held: list[tuple[str, dict[str, Any]]] = []

    async def reordering(group: str, message: dict[str, Any]) -> None:
        if group == BOOKS and message.get("op") == "UPDATED":
            held.append((group, message))
            return
        await send(group, message)

    layer.group_send = reordering
    for title in ("two", "three"):
        book.title = title
        await sync_to_async(book.save)()
    layer.group_send = send
    for number, (group, message) in enumerate(reversed(held)):
        # as if from two processes: each numbers its own messages
        await send(group, {**message, "origin": f"process-{number}", "seq": 1})
    await settle()
    titles = [d.instance.title for d in list(sub.queue or ())]
    assert titles == ["three"]
    assert hub.stats["superseded"] == 1
    await hub.close()
