"""Hub: one listener per process, fanning events out to the local subscriptions.

However many sockets subscribe, a process joins each group once (ref-counted), so one
change costs one channel-layer message per process. For each event the hub

1. loads the row once (or, for a delete, rebuilds it from the event's last state),
2. asks each *distinct* condition once (:class:`gqlsync.matching.RowFilter`, keyed by its
   SQL: subscriptions with the same filter, or users whose permission yields the same
   rows, share the answer),
3. hands the event and the shared row to every subscription whose conditions all hold.

All database work for one event happens in one ``sync_to_async`` call. Events are handled
in arrival order, so each row's changes reach a subscription in commit order.

A subscription's queue is bounded (``SUBSCRIPTION_QUEUE_SIZE``): a client that does not
keep up is ended with :class:`~gqlsync.exceptions.SlowConsumerError` instead of holding
memory or slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import models

from gqlsync import broker, registry
from gqlsync.conf import get_settings
from gqlsync.events import Event, Op
from gqlsync.exceptions import SlowConsumerError, SubscriptionEnded
from gqlsync.matching import KNOWN_FIELDS, RowFilter

logger = logging.getLogger("gqlsync.hub")



@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscription receives: the event and the row as one shared instance."""

    event: Event
    instance: models.Model


@dataclass(eq=False)
class Subscription:
    """One local subscriber's interest in a group, with its own bounded queue."""

    model: str
    group: str
    checks: Sequence[RowFilter] = ()
    #: who is asking, as a permission scope: equal scopes see the same rows and fields
    scope: Hashable = None
    queue: asyncio.Queue[Delivery | BaseException] = field(
        default_factory=lambda: asyncio.Queue(get_settings()["SUBSCRIPTION_QUEUE_SIZE"])
    )
    ended: bool = False

    def deliver(self, delivery: Delivery) -> None:
        if self.ended:
            return
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.end(SlowConsumerError(
                "This subscription fell too far behind and was ended; subscribe again."
            ))

    def end(self, error: BaseException) -> None:
        """End the subscription: its reader gets ``error`` next, ahead of anything queued."""
        if self.ended:
            return
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(error)

    async def next(self) -> Delivery:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item


def _rebuild(reg: registry.Registration, before: dict[str, Any] | None, pk: Any) -> models.Model:
    """An unsaved instance holding a deleted row's last travelling values.

    Fields that did not travel keep no value the matcher could mistake for the row's:
    their names are left out of ``KNOWN_FIELDS`` and lookups on them are undecidable.
    Registered rows that foreign keys pointed to come back from their own snapshot
    (see :func:`gqlsync.registry.last_state`), cached on the instance.
    """
    values: dict[str, Any] = {}
    before = before or {}
    related: list[tuple[Any, models.Model]] = []
    for f in reg.model._meta.concrete_fields:
        if f.attname in before:
            raw = before[f.attname]
            values[f.attname] = None if raw is None else f.to_python(raw)
        nested = before.get(f.name) if f.is_relation and f.name != f.attname else None
        target_model = f.related_model
        if (isinstance(nested, dict) and isinstance(target_model, type)
                and registry.is_registered(target_model)):
            target = registry.get(target_model)
            target_pk = target.model._meta.pk
            assert target_pk is not None
            related.append((f, _rebuild(target, nested, nested.get(target_pk.attname))))
    meta_pk = reg.model._meta.pk
    assert meta_pk is not None
    values.setdefault(meta_pk.attname, meta_pk.to_python(pk))
    instance = reg.model(**values)
    instance._state.adding = False
    instance.__dict__[KNOWN_FIELDS] = frozenset(values)
    for fk, target_instance in related:
        fk.set_cached_value(instance, target_instance)
    return instance


def _evaluate(
    event: Event, checks: dict[Hashable, RowFilter]
) -> tuple[models.Model | None, dict[Hashable, bool]]:
    """Load the row and answer every distinct condition (runs in a worker thread)."""
    reg = registry.get(event.model)
    if event.op is Op.DELETED:
        instance = _rebuild(reg, event.before, event.pk)
        return instance, {k: f.matches_deleted(instance) for k, f in checks.items()}
    loaded = reg.model._default_manager.filter(pk=event.pk).first()
    if loaded is None:
        return None, {}  # deleted since: its DELETED event follows
    return loaded, {k: f.matches_row(event.pk) for k, f in checks.items()}


class Hub:
    """The process's listener on one event loop. Get it with :func:`get_hub`."""

    def __init__(self) -> None:
        self.layer = broker.get_layer()
        self.channel: str | None = None
        self.groups: dict[str, set[Subscription]] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        #: counters, for tests, the management command and benchmarks
        self.stats = {"events": 0, "deliveries": 0, "stale": 0, "errors": 0}

    # ------------------------------------------------------------------ membership

    async def subscribe(self, subscription: Subscription) -> None:
        async with self._lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel("gqlsync.hub.")
                loop = asyncio.get_running_loop()
                self._tasks = [loop.create_task(self._receive()), loop.create_task(self._work())]
            members = self.groups.get(subscription.group)
            if members is None:
                await self.layer.group_add(subscription.group, self.channel)
                members = self.groups[subscription.group] = set()
            members.add(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription now; leave its group in the background if it was the last."""
        subscription.ended = True
        members = self.groups.get(subscription.group)
        if members is None:
            return
        members.discard(subscription)
        if not members:
            task = asyncio.get_running_loop().create_task(self._leave(subscription.group))
            self._tasks.append(task)
            task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _leave(self, group: str) -> None:
        async with self._lock:
            if not self.groups.get(group) and group in self.groups:
                del self.groups[group]
                await self.layer.group_discard(group, self.channel)

    def subscription_count(self) -> int:
        return sum(len(members) for members in self.groups.values())

    # ------------------------------------------------------------------ events

    async def _receive(self) -> None:
        """Drain the layer channel at once, so the layer's capacity is never the limit."""
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("gqlsync hub: receiving failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self._inbox.put_nowait(message)

    async def _work(self) -> None:
        while True:
            message = await self._inbox.get()
            try:
                await self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["errors"] += 1
                logger.exception("gqlsync hub: an event could not be dispatched")

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Serve one channel-layer message to the local subscriptions of its group."""
        members = list(self.groups.get(message.get("group", ""), ()))
        if not members:
            return
        event = Event.from_message(message)
        self.stats["events"] += 1
        checks: dict[Hashable, RowFilter] = {}
        for sub in members:
            for check in sub.checks:
                checks.setdefault(check.key, check)
        instance, answers = await sync_to_async(_evaluate)(event, checks)
        if instance is None:
            self.stats["stale"] += 1
            return
        delivery = Delivery(event, instance)
        for sub in members:
            if all(answers[c.key] for c in sub.checks):
                sub.deliver(delivery)
                self.stats["deliveries"] += 1

    async def close(self) -> None:
        """Stop listening and end every subscription (tests, shutdown)."""
        for members in self.groups.values():
            for sub in members:
                sub.end(SubscriptionEnded("The server is shutting down."))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self.channel is not None:
            for group in list(self.groups):
                await self.layer.group_discard(group, self.channel)
        self.groups.clear()
        self.channel = None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per process in a server; one per test loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


def reset_hub() -> None:
    """Forget the running loop's hub (for tests that swap channel layers)."""
    _hubs.pop(asyncio.get_running_loop(), None)
