"""Hub: one listener per process, fanning events out to the local subscriptions.

However many sockets subscribe, a process joins each group once (ref-counted), so one
change costs one channel-layer message per process. For each event the hub

1. loads the row once (or, for a delete, rebuilds it from the event's last state),
2. asks each *distinct* condition once: stateless filters
   (:class:`~gqlsync.matching.RowFilter`, keyed by SQL) and permission views
   (:class:`~gqlsync.matching.TrackedView`, the visible keys of one scope), so users
   whose permission yields the same rows share the answer,
3. hands every subscription what it may see: the change itself, or — when the change
   moved the row into or out of the subscriber's view — a ``CREATED`` or a ``DELETED``
   carrying the last state the subscriber could see.

Events of models a permission ``depends_on`` reload the views that use it, and the rows
that entered or left them are announced. Identity events (a user deactivated, logged out,
their password, groups or permissions changed) make the hub re-check that user's
connections in this process: a connection whose credentials no longer hold is closed
(``4403``), the others get their subscriptions re-scoped.

All database work for one event happens in one ``sync_to_async`` call
(:mod:`gqlsync.rows`), subscriptions are filed per group by the value of their
exact-match filter (:class:`~gqlsync.matching.Members`), and events are
handled in arrival order, so each row's changes reach a subscription in commit order.
A subscription's queue is bounded (``SUBSCRIPTION_QUEUE_SIZE`` items, and
``SUBSCRIPTION_QUEUE_BYTES`` of unwritten frames): a client that does not keep up is
ended with :class:`~gqlsync.exceptions.SlowConsumerError` instead of holding memory or
slowing the others.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import contextvars
import logging
import sys
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.db import models

from gqlsync import broker, control, execute, resume, rows
from gqlsync.conf import get_settings
from gqlsync.events import IDENTITY, MESSAGE_TYPE, Event, Op, pk_key
from gqlsync.exceptions import ResyncRequired, SlowConsumerError, SubscriptionEnded
from gqlsync.log import Gap, Position, get_log
from gqlsync.matching import Members, RowFilter, TrackedView

logger = logging.getLogger("gqlsync.hub")

#: close code for a connection whose user is no longer who they were (graphql-ws' Forbidden)
CLOSE_FORBIDDEN = 4403

#: the inbox item that catches a resumed subscription up, in line with the events
RESUME = "gqlsync.resume"
#: the inbox item that replays, from the log, what groups missed (a drop, an outage)
HEAL = "gqlsync.heal"
#: distinct catch-ups kept for sharing while no event arrives (each holds its rows and
#: their payloads); past it they are forgotten and computed again
SHARED_CATCH_UPS = 32
#: rows whose latest handled change a hub remembers (about 100 bytes each)
RECENT_ROWS = 100_000
#: log positions a hub remembers handling, per group (so a healed message that still
#: arrives is not handled twice)
RECENT = 4096

#: Set by the transport around each operation it runs: that operation's way out. A
#: subscription that finds it hands its sending to the hub (shared execution).
current_sender: contextvars.ContextVar[execute.FrameSender | None] = contextvars.ContextVar(
    "gqlsync_current_sender", default=None
)


class Connection(Protocol):
    """What the hub needs of a transport connection (the WebSocket handler implements it)."""

    user: Any

    async def revalidate(self) -> bool:
        """Re-read the connection's credentials; refresh ``user``; False if they are void."""

    async def close_for(self, code: int, reason: str) -> None:
        """Close the connection (its subscriptions end with it)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscription receives: the event, the row as one shared instance, and the
    operation as this subscriber sees it (a row entering its view is ``CREATED``)."""

    event: Event
    instance: models.Model
    op: Op


class Rescope(Protocol):
    """How a subscription recomputes its conditions for a user (``fields.listen`` sets it)."""

    def __call__(self, user: Any) -> tuple[Hashable, Any] | SubscriptionEnded:
        """(scope, visible queryset or None) for ``user``; if they may no longer
        subscribe, the error that ends the subscription (the refusal of the check they
        fail, with its code: made where the permission is known, not here)."""


def frame_bytes(frame: str) -> int:
    """The memory a queued frame holds: its ``str`` object's size (about one byte per
    character of ASCII text, up to four for other text), read in constant time."""
    return sys.getsizeof(frame)


#: upper bounds, in seconds, of the commit-to-send latency's buckets (:class:`Latency`)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)


class Latency:
    """Seconds from a change's commit to the hub handing it to its subscribers, as a
    histogram's bucket counts (:mod:`gqlsync.metrics` exports them when scraped).

    One observation per event delivered, not per subscriber or socket: a bisection and
    two additions, and no lock, since only the hub's own loop observes.
    """

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        #: observations per bucket of ``LATENCY_BUCKETS``, the last over them all
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # the writer's host's clock may be a little ahead
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


@dataclass(eq=False, slots=True)
class Subscription:
    """One local subscriber's interest in a group.

    Unshared subscriptions (``listen()`` in your own resolvers) read their deliveries with
    :meth:`next`; shared ones (generated fields) have their frames written by the hub
    through ``sender``. Either way at most ``limit`` items wait unsent, and a shared
    subscription's unwritten frames hold at most ``limit_bytes`` (plus the socket's own
    bound, ``CONNECTION_QUEUE_BYTES``, in the transport's writer). An unshared
    subscription's queue holds :class:`Delivery` objects, whose rows are shared with
    the other subscribers of the event; Strawberry writes their frames one at a time,
    waiting for the socket, so they are bounded by ``limit`` only.
    """

    model: str
    group: str
    checks: Sequence[RowFilter] = ()
    #: the one row watched (``id:`` subscriptions), or None for the whole model
    pk: Any = None
    #: resume from here (``after:``): catch up from the log, then go live
    after: Position | None = None
    #: catching up: live events wait for the catch-up, which covers them
    resuming: bool = False
    #: events at or before this log position reached it by catching up: skip them live
    floor: tuple[int, int] | None = None
    #: who is asking, as a permission scope: equal scopes see the same rows and fields
    scope: Hashable = None
    #: the rows this subscriber's permission lets it see, when that can change over time
    view_queryset: Any = None
    #: groups of models whose changes can change the view (permission.depends_on)
    depends_on: Sequence[str] = ()
    connection: Connection | None = None
    rescope: Rescope | None = None
    view: TrackedView | None = None
    #: set for shared execution: what the subscriber runs and how to reach its socket
    shared: execute.SharedOperation | None = None
    sender: execute.FrameSender | None = None
    #: how a delivery becomes the subscription field's value
    to_root: Callable[[Delivery], Any] | None = None
    #: called instead of queuing the error when the subscription ends (the transport's
    #: own subscribe step uses it to send the error and ``complete``)
    on_end: Callable[[BaseException], None] | None = None
    ended: bool = False
    limit: int = field(default_factory=lambda: get_settings()["SUBSCRIPTION_QUEUE_SIZE"])
    #: bytes of shared frames that may wait unwritten (``SUBSCRIPTION_QUEUE_BYTES``)
    limit_bytes: int = field(
        default_factory=lambda: get_settings()["SUBSCRIPTION_QUEUE_BYTES"])
    #: shared frames queued on the socket and not written yet, and their bytes
    pending: int = 0
    pending_bytes: int = 0
    #: bounded by ``limit``; a deque and one waiter, not an asyncio.Queue (whose three
    #: deques and event cost kilobytes per idle subscription); made on first use
    queue: collections.deque[Delivery | BaseException] | None = None
    _waiter: asyncio.Future[None] | None = None
    _execution_key: Hashable = None
    _document_key: Hashable = None

    def execution_key(self) -> Hashable:
        """(document, variables, operation name, scope): equal keys, equal payloads."""
        if self._execution_key is None and self.shared is not None:
            self._execution_key = self.shared.key(self.scope)
        return self._execution_key

    def document_key(self) -> Hashable:
        """(document, variables, operation name, schema): what the payload depends on
        besides the row and, when the execution reads the context, the scope."""
        if self._document_key is None and self.shared is not None:
            self._document_key = self.shared.key(None)[:4]  # type: ignore[index]
        return self._document_key

    def rescoped(self, scope: Hashable) -> None:
        self.scope = scope
        self._execution_key = None

    def deliver(self, delivery: Delivery | str) -> None:
        """Queue a delivery, or a ready frame on the socket's outbound queue (shared
        execution), without ever waiting. Past ``limit`` unsent items, or when a frame
        would take its unwritten frames past ``limit_bytes`` (:func:`frame_bytes`; one
        frame always fits when none waits), the subscription ends with
        :class:`SlowConsumerError`; the others on the socket go on."""
        if self.ended:
            return
        queued = len(self.queue) if self.queue is not None else 0
        size = frame_bytes(delivery) if isinstance(delivery, str) else 0
        if queued + self.pending >= self.limit or (
                self.pending_bytes and self.pending_bytes + size > self.limit_bytes):
            self.end(SlowConsumerError(
                "This subscription fell too far behind and was ended; subscribe again."
            ))
            with contextlib.suppress(RuntimeError):  # no loop: a Subscription on its own
                get_hub().stats["slow_subscriptions"] += 1
            return
        if isinstance(delivery, str):  # a frame: only shared subscriptions get them
            assert self.sender is not None
            self.pending += 1
            self.pending_bytes += size

            def sent() -> None:
                self.pending -= 1
                self.pending_bytes -= size

            self.sender.enqueue(delivery, sent)
            return
        if self.queue is None:
            self.queue = collections.deque()
        self.queue.append(delivery)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, error: BaseException) -> None:
        """End the subscription: its reader gets ``error`` next, ahead of anything queued
        (or ``on_end`` is called with it)."""
        if self.ended:
            return
        self.ended = True
        if self.on_end is not None:
            self.on_end(error)
            return
        self.queue = collections.deque([error])
        self._wake()

    async def next(self) -> Delivery:
        while not self.queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self.queue.popleft()
        if isinstance(item, BaseException):
            raise item
        return item


# --------------------------------------------------------------------------- the hub


def _load_view(view: TrackedView) -> None:
    """Read a view's keys, noting first where the model's log stood (sync)."""
    log = get_log()
    if log is not None:
        try:
            view.position = log.head(broker.model_group(view.queryset.model._meta.label_lower)
                                     ).key()
        except Exception:  # no log position: refreshes cannot tell pending rows
            logger.exception("gqlsync hub: the replay log could not be read")
    view.load()


class _Views:
    """Shared, ref-counted :class:`TrackedView` objects, by key."""

    def __init__(self) -> None:
        self.views: dict[Hashable, tuple[TrackedView, int]] = {}

    async def acquire(self, queryset: Any) -> TrackedView:
        candidate = TrackedView(queryset, limit=get_settings()["VIEW_KEYS_MAX"])
        found = self.views.get(candidate.key)
        if found is not None:
            view, count = found
            self.views[candidate.key] = (view, count + 1)
            return view
        await sync_to_async(_load_view)(candidate)
        found = self.views.get(candidate.key)  # another subscriber may have loaded it
        if found is not None:
            view, count = found
            self.views[candidate.key] = (view, count + 1)
            return view
        self.views[candidate.key] = (candidate, 1)
        return candidate

    def release(self, view: TrackedView | None) -> None:
        if view is None or view.key not in self.views:
            return
        _, count = self.views[view.key]
        if count <= 1:
            del self.views[view.key]
        else:
            self.views[view.key] = (view, count - 1)


class Hub:
    """The process's listener on one event loop. Get it with :func:`get_hub`."""

    def __init__(self) -> None:
        self.layer = broker.get_layer()
        self.channel: str | None = None
        #: group -> subscriptions receiving that group's changes, indexed by filter value
        self.groups: dict[str, Members[Subscription]] = {}
        #: group -> subscriptions whose views depend on that group's model
        self.watchers: dict[str, set[Subscription]] = {}
        #: user pk -> this process's connections of that user
        self.connections: dict[Any, set[Connection]] = {}
        self.views = _Views()
        self._joined: set[str] = set()
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._busy = False
        self._identity_group = broker.model_group(IDENTITY)
        #: control requests being answered (a flood of them is dropped past a few)
        self._answering = 0
        #: counters, for tests, the stats endpoint and benchmarks
        self.stats = {"events": 0, "deliveries": 0, "executions": 0, "stale": 0, "errors": 0,
                      "revoked": 0, "dropped": 0, "isolated": 0,
                      "fallbacks": 0, "resumed": 0, "healed": 0, "resynced": 0,
                      "outages": 0, "superseded": 0,
                      # WebSockets opened and closed (the transport counts them), and
                      # ended for falling behind: whole connections, single subscriptions
                      "connected": 0, "disconnected": 0, "slow_consumers": 0,
                      "slow_subscriptions": 0}
        self.latency = Latency()
        self._last_seq: dict[tuple[str, str], int] = {}
        #: model group -> log position of the newest of its events this hub handled
        self._handled: dict[str, tuple[int, int]] = {}
        self._handled_cursor: dict[str, str] = {}
        #: groups a subscription is joining (kept joined before it is a member)
        self._pins: collections.Counter[str] = collections.Counter()
        #: group -> where its model's log stood when this hub joined it
        self._joined_at: dict[str, Position] = {}
        #: group -> (model label, pk) of the rows it carries (pk None: a model group)
        self._sources: dict[str, tuple[str, Any]] = {}
        #: events handled so far; catch-ups and payloads are shared within one count
        self._generation = 0
        self._cached_at = -1
        self._caught_up: dict[Hashable, tuple[list[Delivery], tuple[int, int]]] = {}
        #: payloads shared with later catch-ups of the same generation, with the row they
        #: were made from: a key names the row by id(), and holding the row keeps that id
        #: from being reused for another row while the entry lives
        self._bodies: dict[Hashable, tuple[models.Model, str]] = {}
        #: (group, pk) -> log position of the row's latest change handled
        self._row_latest: collections.OrderedDict[tuple[str, Any], tuple[int, int]] = (
            collections.OrderedDict())
        #: group -> log positions handled lately (a healed message may arrive again)
        self._recent: dict[str, tuple[collections.deque[tuple[int, int]],
                                      set[tuple[int, int]]]] = {}

    # ------------------------------------------------------------------ membership

    async def _start(self) -> None:
        if self.channel is None:
            # The default prefix matters: channels-redis reads all of a process's
            # "specific." channels with one multiplexed receive loop; a channel with its
            # own prefix would wait behind every consumer's blocking read.
            self.channel = await self.layer.new_channel()
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._receive()), loop.create_task(self._work())]
            expiry = getattr(self.layer, "group_expiry", None)
            if isinstance(expiry, int | float) and expiry > 0:
                self._tasks.append(loop.create_task(self._renew(expiry / 3)))
            await control.join(self)  # answer `manage.py gqlsync stats`

    async def _join(self, group: str) -> None:
        await self._start()
        if group not in self._joined:
            await self.layer.group_add(group, self.channel)
            self._joined.add(group)
            await self._note_join_position(group)
            # numbering restarts for us: what was sent while we were away is not a drop
            for key in [k for k in self._last_seq if k[1] == group]:
                del self._last_seq[key]

    async def _note_join_position(self, group: str) -> None:
        """Where the group's model log stood when this hub joined: healing a group that
        has handled nothing yet starts there."""
        log = get_log()
        label = broker.model_of(group) or broker.model_of(group.rsplit(".", 1)[0])
        if log is None or label is None or group == self._identity_group:
            return
        stream = broker.model_group(label)
        try:
            head = (await asyncio.to_thread(log.head, stream) if log.blocking
                    else log.head(stream))
        except Exception:  # the log is unreachable: this group heals by resyncing
            logger.exception("gqlsync hub: the replay log could not be read")
            return
        self._joined_at[group] = head

    def _needed(self, group: str) -> bool:
        if group == self._identity_group:
            return any(self.connections.values())
        return (bool(self.groups.get(group)) or bool(self.watchers.get(group))
                or group in self._pins)

    async def _leave_unused(self, groups: Sequence[str]) -> None:
        async with self._lock:
            for group in groups:
                if group in self._joined and not self._needed(group):
                    self._joined.discard(group)
                    self.groups.pop(group, None)
                    self.watchers.pop(group, None)
                    await self.layer.group_discard(group, self.channel)

    async def _answer(self, message: dict[str, Any]) -> None:
        try:
            await control.answer(self, message)
        finally:
            self._answering -= 1

    def _later(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def subscribe(self, subscription: Subscription) -> None:
        self._admit(subscription)
        subscription.resuming = subscription.after is not None
        group = subscription.group
        self._pins[group] += 1  # joined from now on, even before it is a member
        try:
            if subscription.resuming:
                # Join before the view's rows are read: every change committed after the
                # read then arrives here, so the view and the catch-up agree.
                async with self._lock:
                    await self._join(group)
            if subscription.view_queryset is not None:
                subscription.view = await self.views.acquire(subscription.view_queryset)
            await self._register(subscription)
        finally:
            self._pins[group] -= 1
            if not self._pins[group]:
                del self._pins[group]

    async def _register(self, subscription: Subscription) -> None:
        self._sources[subscription.group] = (subscription.model, subscription.pk)
        async with self._lock:
            await self._join(subscription.group)
            self.groups.setdefault(subscription.group, Members()).add(subscription)
            for group in subscription.depends_on:
                await self._join(group)
                self.watchers.setdefault(group, set()).add(subscription)
        if subscription.resuming:
            # joined first, then read the log: whatever is sent from now on is either in
            # what the catch-up reads or arrives after it (and is past its floor)
            self._inbox.put_nowait({"type": RESUME, "subscription": subscription})

    def _admit(self, subscription: Subscription) -> None:
        """Refuse a subscription whose filter would be one distinct SQL condition too many
        for its model in this process (``MAX_DISTINCT_FILTERS``): every event of the model
        asks each of them, so their number, not one filter's size, is what many clients
        together could make every event cost. Filters equal to one already asked, and
        exact matches (answered from the loaded row), are always admitted."""
        limit = get_settings()["MAX_DISTINCT_FILTERS"]
        members = self.groups.get(subscription.group)
        if members is None:
            return
        new = [c for c in subscription.checks
               if c.equality is None and c.key not in members.checks]
        if not new:
            return
        asked = sum(1 for entry in members.checks.values() if entry[0].equality is None)
        if asked + len(new) > limit:
            from graphql import GraphQLError

            raise GraphQLError(
                "This server is following as many distinct filters on this model as it "
                "can: subscribe with a filter others use, or an exact match.",
                extensions={"code": "TOO_MANY_FILTERS"})

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription now; leave its groups in the background if unused."""
        subscription.ended = True
        members = self.groups.get(subscription.group)
        if members is not None:
            members.discard(subscription)
        for group in subscription.depends_on:
            self.watchers.get(group, set()).discard(subscription)
        self.views.release(subscription.view)
        subscription.view = None
        self._later(self._leave_unused([subscription.group, *subscription.depends_on]))

    async def connect(self, user_pk: Any, connection: Connection) -> None:
        """Follow ``user_pk``'s identity changes for ``connection``."""
        async with self._lock:
            await self._join(self._identity_group)
            self.connections.setdefault(pk_key(user_pk), set()).add(connection)

    def disconnect(self, user_pk: Any, connection: Connection) -> None:
        key = pk_key(user_pk)
        connections = self.connections.get(key)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self.connections[key]
        self._later(self._leave_unused([self._identity_group]))

    def subscriptions_of(self, connection: Connection) -> list[Subscription]:
        """The subscriptions ``connection`` holds in this process (a list: the caller may
        end them as it goes)."""
        return [s for members in self.groups.values() for s in members
                if s.connection is connection]

    def subscription_count(self) -> int:
        return len({s for members in self.groups.values() for s in members})

    # ------------------------------------------------------------------ events

    async def _receive(self) -> None:
        """Drain the layer channel at once, so the layer's capacity is never the limit.

        When the layer fails (Redis restarting, unreachable), keep trying; once it
        answers again, join every group anew (a restarted Redis forgot them) and heal
        what was missed meanwhile from the replay log (an inbox item, in line with the
        events), or tell the subscribers to resync. Sockets stay open throughout.
        """
        failing = False
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                if not failing:
                    failing = True
                    self.stats["outages"] += 1
                    logger.exception("gqlsync hub: the channel layer failed; retrying")
                await asyncio.sleep(0.5)
                try:
                    await self._rejoin()
                except Exception:  # still down
                    continue
                failing = False
                logger.warning("gqlsync hub: the channel layer is back; healing")
                self._inbox.put_nowait({"type": HEAL, "groups": list(self._joined)})
                continue
            if isinstance(message, dict) and control.is_request(message):
                # a question, not an event: answered at once, beside the events
                if self._answering < control.MAX_IN_FLIGHT:
                    self._answering += 1
                    self._later(self._answer(message))
                continue
            self._inbox.put_nowait(message)

    async def _rejoin(self) -> None:
        async with self._lock:
            for group in list(self._joined):
                await self.layer.group_add(group, self.channel)

    async def _renew(self, every: float) -> None:
        """Add the hub to its groups again, every third of the layer's ``group_expiry``.

        Channels' layers (in-memory, channels-redis core) forget a group member
        ``group_expiry`` seconds (a day by default) after it was added, and say nothing:
        a process whose subscribers stayed a day would stop receiving their changes.
        Consumers usually live shorter than that; the hub lives as long as its process.
        Adding again only moves the member's timestamp. A failure is the receive loop's
        business (it rejoins and heals when the layer is back).
        """
        while True:
            await asyncio.sleep(every)
            try:
                await self._rejoin()
            except Exception as error:
                logger.warning("gqlsync hub: renewing group membership failed: %r", error)

    async def _work(self) -> None:
        while True:
            message = await self._inbox.get()
            self._busy = True
            try:
                await self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["errors"] += 1
                logger.exception("gqlsync hub: an event could not be dispatched")
            finally:
                self._busy = False

    def idle(self) -> bool:
        """Nothing received is waiting or being handled (``gqlsync.testing.settle``)."""
        return self._inbox.empty() and not self._busy

    def _count_drops(self, message: dict[str, Any]) -> bool:
        """Channels drops group messages to a full channel without a word; the broker
        numbers each origin's messages per group, so a skipped number is a drop.
        True when this message shows one."""
        origin, seq, group = message.get("origin"), message.get("seq"), message.get("group")
        if not isinstance(origin, str) or not isinstance(seq, int) or not isinstance(group, str):
            return False
        last = self._last_seq.get((origin, group))
        self._last_seq[(origin, group)] = max(seq, last or 0)
        if last is not None and seq > last + 1:
            missing = seq - last - 1
            self.stats["dropped"] += missing
            logger.error(
                "gqlsync hub: the channel layer dropped %d message(s) of group %s; raise the "
                "layer's capacity (see docs: scaling)", missing, group,
            )
            return True
        return False

    def _superseded(self, group: str, pk: Any, position: tuple[int, int]) -> bool:
        """Has a later logged change of row ``pk`` been handled already? (Remembers the
        last ``RECENT_ROWS`` rows handled.)"""
        key = (group, pk_key(pk))
        latest = self._row_latest.get(key)
        if latest is not None and position < latest:
            return True
        self._row_latest[key] = position
        self._row_latest.move_to_end(key)
        if len(self._row_latest) > RECENT_ROWS:
            self._row_latest.popitem(last=False)
        return False

    def _first_time(self, group: str, position: tuple[int, int]) -> bool:
        """Note that the event at ``position`` of ``group`` is handled; False if it was."""
        recent = self._recent.get(group)
        if recent is None:
            recent = self._recent[group] = (collections.deque(), set())
        order, seen = recent
        if position in seen:
            return False
        order.append(position)
        seen.add(position)
        if len(order) > RECENT:
            seen.discard(order.popleft())
        return True

    async def _heal(self, groups: Sequence[str]) -> None:
        """Replay from the log what ``groups`` may have missed since the last event this
        hub handled of each; a group whose log cannot tell (trimmed past it, a hole, a
        log that restarted, no log) has its subscribers told to resync instead. Never a
        silent gap."""
        for group in groups:
            if group not in self._joined:
                continue
            if group == self._identity_group:
                await self._heal_identity()
                continue
            try:
                entries = await sync_to_async(self._missed_by)(group)
            except Exception as error:
                if isinstance(error, Gap | ResyncRequired) or get_log() is None:
                    self._resync(group, str(error))
                    continue
                raise
            for cursor, body in entries:
                self.stats["healed"] += 1
                await self.dispatch({**body, "type": MESSAGE_TYPE, "group": group,
                                     "cursor": cursor})

    def _missed_by(self, group: str) -> list[tuple[str, dict[str, Any]]]:
        """Log entries of ``group`` after the last one handled (sync)."""
        log = get_log()
        source = self._sources.get(group)
        label = source[0] if source is not None else broker.model_of(group)
        if log is None or label is None:
            raise ResyncRequired("no log to heal from")
        # with its epoch: a log that restarted meanwhile (an empty Redis) is a gap
        cursor = self._handled_cursor.get(group)
        since = Position.parse(cursor) if cursor is not None else self._joined_at.get(group)
        if since is None:
            raise ResyncRequired("nothing known of this group's place in the log")
        entries, _ = log.read(broker.model_group(label), since)
        if any(body.get("hole") for _, body in entries):
            raise ResyncRequired("the log has a hole")
        pk = source[1] if source is not None else None
        return [(c, b) for c, b in entries if pk is None or pk_key(b.get("pk")) == pk_key(pk)]

    def _resync(self, group: str, why: str) -> None:
        subs = [*(self.groups.get(group) or ()), *self.watchers.get(group, ())]
        if subs:
            logger.error("gqlsync hub: %d subscription(s) of %s cannot be healed (%s): "
                         "they are told to resync", len(subs), group, why)
        for sub in subs:
            self.stats["resynced"] += 1
            sub.end(ResyncRequired(
                "Changes to this subscription's data may have been lost on the way: "
                "refetch, then subscribe again."))
            self.unsubscribe(sub)

    async def _heal_identity(self) -> None:
        """Identity events may have been lost: re-check every connection (as if each
        user's identity had changed)."""
        for user_pk in list(self.connections):
            await self._identity(Event(IDENTITY, user_pk, Op.UPDATED, ("healed",)))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Serve one channel-layer message to the local subscriptions of its group."""
        if message.get("type") == RESUME:
            await self._resume(message["subscription"])
            return
        if message.get("type") == HEAL:
            await self._heal(message["groups"])
            return
        group = message.get("group", "")
        if self._count_drops(message):
            # the messages lost come before this one: replay them from the log first
            await self._heal([group])
        position = _position(str(message.get("cursor", "")))
        if position[0] != sys.maxsize and not self._first_time(group, position):
            return  # healed from the log already
        if group == self._identity_group:
            await self._identity(Event.from_message(message))
            return
        members = self.groups.get(group)
        watchers = list(self.watchers.get(group, ()))
        if not members and not watchers:
            return
        if position[0] != sys.maxsize and self._superseded(group, message.get("pk"), position):
            # a later change of this row, from another process, was handled first; what
            # it sent already covers this one, which would only put an older state back
            self.stats["superseded"] += 1
            return
        event = Event.from_message(message)
        self.stats["events"] += 1
        self._generation += 1  # the hub's views and rows move on: shared catch-ups expire
        if position[0] != sys.maxsize and position >= self._handled.get(group, position):
            self._handled[group] = position
            self._handled_cursor[group] = event.cursor
        if members:
            await self._changes(event, members)
        if watchers:
            await self._refresh({s.view.key: s.view for s in watchers if s.view is not None},
                                watchers)

    async def _changes(self, event: Event, members: Members[Subscription]) -> None:
        # every distinct condition is asked once (views must follow every change), but
        # only the subscriptions the row's values can reach are visited
        answers = await sync_to_async(rows.evaluate)(event, *members.distinct())
        if answers.fallback:
            self.stats["fallbacks"] += 1
        if answers.failed:
            self._fail(list(members), answers.failed)
        if answers.untold:
            for sub in [s for s in members if s.view is not None
                        and s.view.key in answers.untold]:
                self._resync_one(sub, "A change this subscription's view is too large to "
                                      "judge exactly arrived: refetch, then subscribe "
                                      "again.")
        if answers.instance is None:
            self.stats["stale"] += 1
            return
        plain = Delivery(event, answers.instance, event.op)
        position: tuple[int, int] | None = None
        # subscriptions with the same conditions get the same answer (and, for shared
        # execution, the same Delivery object, so they group without comparing rows)
        decided: dict[tuple[Sequence[RowFilter], Any], Any] = {}
        pairs: list[tuple[Subscription, Delivery | None]] = []
        for sub in members.candidates(answers.instance, answers.previous):
            if sub.resuming:
                continue  # its catch-up, still to come, covers this event
            if sub.floor is not None:
                if position is None:
                    position = _position(event.cursor)
                if position <= sub.floor:
                    continue  # it reached the subscriber by catching up
            if not sub.checks and sub.view is None:
                pairs.append((sub, plain))
                continue
            # what _delivery_for reads: the filters' answers and the view's transition
            conditions = (sub.checks, None if sub.view is None
                          else answers.views.get(sub.view.key, _UNANSWERED))
            found = decided.get(conditions, _UNDECIDED)
            if found is _UNDECIDED:
                found = decided[conditions] = self._delivery_for(sub, event, answers, plain)
            pairs.append((sub, found))  # type: ignore[arg-type]
        if await self._send(pairs) and event.committed_at is not None:
            self.latency.observe(time.time() - event.committed_at)

    async def _send(self, pairs: Sequence[tuple[Subscription, Delivery | None]]) -> int:
        """Hand each subscription its delivery; run shared ones once per distinct key;
        how many deliveries there were.

        Shared subscriptions are grouped by document and delivery. One execution, with
        the context of the group's first subscriber, also tells whether its bytes are
        every scope's (:func:`gqlsync.execute.shareable_payload`): then the whole group
        gets them; otherwise each scope of the group is executed on its own.
        """
        groups: dict[Hashable, list[Subscription]] = {}
        deliveries: dict[Hashable, Delivery] = {}
        delivered = 0
        for sub, delivery in pairs:
            if delivery is None:
                continue
            delivered += 1
            if sub.sender is None:
                sub.deliver(delivery)
                continue
            key = (sub.document_key(), delivery.op, id(delivery.instance))
            members = groups.get(key)
            if members is None:
                groups[key] = [sub]
                deliveries[key] = delivery
            else:
                members.append(sub)
        self.stats["deliveries"] += delivered
        self._fresh_caches()
        across = get_settings()["SHARE_ACROSS_SCOPES"]
        caching = self._cached_at == self._generation  # shared with later catch-ups
        for grouping, subs in groups.items():
            delivery = deliveries[grouping]
            body = self._body((grouping, _ANY_SCOPE), delivery)
            known: dict[Hashable, str] = {}
            if body is None and across:
                first = subs[0]
                assert first.shared is not None
                if not execute.reads_context(first.shared):
                    trial = await self._execute(first, delivery, shareable=True)
                    if trial is not None:
                        body, shareable = trial
                        if not shareable:
                            known[first.scope] = body
                            body = None
                        elif caching:
                            self._bodies[(grouping, _ANY_SCOPE)] = (delivery.instance, body)
            if body is not None:
                for sub in subs:
                    assert sub.sender is not None
                    sub.deliver(sub.sender.frame(body))
                continue
            by_scope: dict[Hashable, list[Subscription]] = {}
            for sub in subs:
                by_scope.setdefault(sub.scope, []).append(sub)
            for scope, scoped in by_scope.items():
                body = known.get(scope) or self._body((grouping, scope), delivery)
                if body is None:
                    try:
                        done = await self._execute(scoped[0], delivery, shareable=False,
                                                   raising=True)
                    except Exception as error:  # this document's failure ends its own only
                        self._fail(scoped, {"execution": error},
                                   "its selection could not be executed")
                        continue
                    assert done is not None
                    body = done[0]
                    if caching:
                        self._bodies[(grouping, scope)] = (delivery.instance, body)
                for sub in scoped:
                    assert sub.sender is not None
                    sub.deliver(sub.sender.frame(body))
        return delivered

    def _body(self, key: Hashable, delivery: Delivery) -> str | None:
        """A payload cached this generation for ``key``, if it was made from this very
        row instance."""
        found = self._bodies.get(key)
        return found[1] if found is not None and found[0] is delivery.instance else None

    async def _execute(self, sub: Subscription, delivery: Delivery, *, shareable: bool,
                       raising: bool = False) -> tuple[str, bool] | None:
        """Run ``sub``'s selection set for ``delivery``: (payload, whether it is every
        scope's). A trial (``shareable``) that raises returns None: each scope is then
        executed, and fails, on its own."""
        assert sub.shared is not None
        assert sub.to_root is not None
        root = sub.to_root(delivery)
        try:
            if shareable:
                done = await execute.shareable_payload(sub.shared, root)
            else:
                done = (await execute.payload(sub.shared, root), False)
        except Exception:
            if raising:
                raise
            return None
        self.stats["executions"] += 1
        return done

    def _fail(self, subs: Sequence[Subscription], failed: dict[Hashable, BaseException],
              what: str = "its filter or permission could not be evaluated") -> None:
        """End the subscriptions a failure belongs to, and no others.

        ``failed`` maps condition keys (a filter's or a view's) to what they raised; a
        subscription whose conditions include one ends with a GraphQL error, is forgotten,
        and every other subscription of the group is served as if nothing happened. (The
        special key ``"execution"`` ends every subscription in ``subs``.)
        """
        ended = 0
        for sub in subs:
            if sub.ended:
                continue
            keys: set[Hashable] = {c.key for c in sub.checks}
            if sub.view is not None:
                keys.add(sub.view.key)
            keys.add("execution")
            causes = [failed[k] for k in keys if k in failed]
            if not causes:
                continue
            ended += 1
            logger.warning("gqlsync hub: a subscription to %s was ended: %s (%s: %s)",
                           sub.group, what, type(causes[0]).__name__, causes[0])
            sub.end(SubscriptionEnded(
                f"This subscription was ended: {what} for a change to the data. "
                "Check its arguments, then subscribe again."))
            self.unsubscribe(sub)
        self.stats["isolated"] += ended

    @staticmethod
    def _delivery_for(
        sub: Subscription, event: Event, answers: rows.Answers, plain: Delivery
    ) -> Delivery | None:
        """What this subscription sees of the change (``plain``: the change itself).

        Whether the row was in the subscriber's view *and* matched its filters before
        the change, and whether it does after, decide: in both, the change itself; only
        after, ``CREATED``; only before, ``DELETED`` carrying the last state it could see.
        """
        assert answers.instance is not None
        if (any(c.key not in answers.checks for c in sub.checks)
                or (sub.view is not None and sub.view.key not in answers.views)):
            return None  # it subscribed while the row was being evaluated: from the next
        now = all(answers.checks[c.key] for c in sub.checks)
        seen_before, seen_after = (answers.views[sub.view.key] if sub.view is not None
                                   else (event.op is not Op.CREATED, True))
        if event.op is Op.DELETED:
            return plain if seen_before and now else None
        was = all(answers.checks.get(("previous", c.key), answers.checks[c.key])
                  for c in sub.checks)
        before, after = seen_before and was, seen_after and now
        if after:
            if before or event.op is Op.CREATED:
                return plain
            return Delivery(event, answers.instance, Op.CREATED)
        if before and answers.previous is not None:
            # the change took the row out of this subscriber's view or filter: from where
            # it stands the row is gone, and the last state it could see is the previous
            return Delivery(event, answers.previous, Op.DELETED)
        return None

    async def _refresh(
        self, views: dict[Hashable, TrackedView], subs: Sequence[Subscription]
    ) -> None:
        """A model the views depend on changed: reload them and announce the difference.

        A view that keeps no keys (more rows than ``VIEW_KEYS_MAX``) cannot tell what
        changed: its subscribers are told to refetch (``RESYNC``), which is exact, where
        announcing up to every row of a large table one by one would not be better."""
        diffs = {}
        failed: dict[Hashable, BaseException] = {}
        untold: set[Hashable] = set()
        pending: dict[str, set[Any]] = {}  # read once per model for all its views
        for key, view in views.items():
            if not view.keeps_keys():
                untold.add(key)
                continue
            try:
                diff = await sync_to_async(self._refreshed)(view, pending)
            except Exception as error:
                if not await sync_to_async(rows.blame)(error):
                    raise  # the database is gone, not this view's fault
                failed[key] = error
                continue
            if diff is None:
                untold.add(key)
            else:
                diffs[key] = diff
        if failed:
            self._fail(subs, failed)
        if untold:
            for sub in [s for s in subs if s.view is not None and s.view.key in untold]:
                self._resync_one(sub, "What this subscription may see changed, and its "
                                      "view is too large to tell how: refetch, then "
                                      "subscribe again.")
        for key, (added, removed) in diffs.items():
            if added or removed:
                await self._announce([s for s in subs if s.view and s.view.key == key],
                                     added, removed)

    def _resync_one(self, sub: Subscription, message: str) -> None:
        if sub.ended:
            return
        self.stats["resynced"] += 1
        sub.end(ResyncRequired(message))
        self.unsubscribe(sub)

    def _refreshed(self, view: TrackedView, pending_by_model: dict[str, set[Any]],
                   ) -> tuple[set[Any], set[Any]] | None:
        """Reload ``view`` (sync); the rows that entered and left it because of the
        change being handled, or None when it keeps no keys after the reload (it grew
        past ``VIEW_KEYS_MAX``).

        The reload reads the rows as they are *now*, which may include later commits
        whose events this hub has not handled yet. Those rows are left as they were:
        their own events follow and move them with the exact transition (and the last
        state the subscriber saw), instead of the reload announcing a state the
        subscriber may never have been entitled to see.
        """
        old = set(view.pks or ())
        diff = view.refresh()
        if diff is None or view.pks is None:
            return None
        added, removed = diff
        label = view.queryset.model._meta.label_lower
        if label not in pending_by_model:
            pending_by_model[label] = self._pending(view)
        pending = pending_by_model[label]
        for pk in pending:
            if pk in old:
                view.pks.add(pk)
            else:
                view.pks.discard(pk)
        return added - pending, removed - pending

    def _pending(self, view: TrackedView) -> set[Any]:
        """Rows of the view's model with logged changes this hub has not handled yet."""
        log = get_log()
        stream = broker.model_group(view.queryset.model._meta.label_lower)
        # changes after the last one handled; before any, after the view was read
        since = self._handled.get(stream) or view.position
        if log is None or since is None:
            return set()
        try:
            entries, _ = log.read(stream, Position(*since))
        except Gap:
            return set()
        return {pk_key(m["pk"]) for _, m in entries if "pk" in m}

    async def _announce(self, subs: Sequence[Subscription], added: set[Any],
                        removed: set[Any]) -> None:
        """Send rows entering (CREATED) and leaving (DELETED) the subscribers' view."""
        subs = [s for s in subs if not s.resuming]  # their catch-up sees the change
        if not subs:
            return
        model = subs[0].model
        checks: dict[Hashable, RowFilter] = {c.key: c for s in subs for c in s.checks}
        failed: dict[Hashable, BaseException] = {}
        loaded, answers = await sync_to_async(rows.diff_rows)(
            model, added, removed, checks, failed)
        if failed:
            self._fail(subs, failed)
        # a subscriber that resumes from here is caught up on the model's own events;
        # the change that moved these rows is after it, so it refetches (RESYNC)
        cursor = self._handled_cursor.get(broker.model_group(model))
        for pk in sorted(loaded, key=str):
            op = Op.CREATED if pk in added else Op.DELETED
            event = Event(model, pk, op) if cursor is None else Event(model, pk, op,
                                                                        cursor=cursor)
            delivery = Delivery(event, loaded[pk], op)
            await self._send([
                (sub, delivery if all(answers[(c.key, pk)] for c in sub.checks) else None)
                for sub in subs
            ])

    # ------------------------------------------------------------------ resuming

    async def _resume(self, sub: Subscription) -> None:
        """Catch ``sub`` up on what it missed since its cursor, then let it go live.

        Runs in line with the events (an inbox item), so no event is handled for it
        while it catches up; events the catch-up covered are skipped when they arrive.
        """
        if sub.ended:
            return
        # A view's rows are what this hub has handled (or read, for a view just
        # loaded): the catch-up covers the log up to there, the rest arrives live.
        upper = None
        if sub.view is not None:
            known = [p for p in (self._handled.get(sub.group), sub.view.position)
                     if p is not None]
            upper = max(known) if known else None
        self._fresh_caches()
        user = getattr(sub.connection, "user", None)
        key = (sub.model, sub.group, sub.after, upper, tuple(c.key for c in sub.checks),
               None if sub.view is None else sub.view.key, getattr(user, "pk", None))
        try:
            cached = self._caught_up.get(key)
            if cached is None:
                # subscribers resuming from the same place with the same conditions,
                # with no event handled in between, share one catch-up (and, through
                # _send, one execution per row): a server restart resumes them all
                missed, head = await sync_to_async(_catch_up)(sub, self._identity_group,
                                                              upper)
                deliveries = [Delivery(m.event, m.instance, m.op) for m in missed]
                self._fresh_caches()
                cached = self._caught_up[key] = (deliveries, head)
        except ResyncRequired as error:
            sub.end(error)
            self.unsubscribe(sub)
            return
        except Exception as error:
            if not await sync_to_async(rows.blame)(error):
                raise
            self._fail([sub], {"execution": error}, "its missed changes could not be read")
            return
        if sub.ended:
            return
        deliveries, sub.floor = cached
        sub.resuming = False
        self.stats["resumed"] += 1
        await self._send([(sub, delivery) for delivery in deliveries])

    def _fresh_caches(self) -> None:
        """Forget shared catch-ups and payloads once an event has been handled since."""
        if self._cached_at != self._generation or len(self._caught_up) >= SHARED_CATCH_UPS:
            self._caught_up.clear()
            self._bodies.clear()
            self._cached_at = self._generation

    # ------------------------------------------------------------------ identity

    async def _identity(self, event: Event) -> None:
        for connection in list(self.connections.get(event.pk, ())):
            try:
                valid = event.op is not Op.DELETED and await connection.revalidate()
            except Exception:  # this connection's credentials could not be read: it alone
                logger.exception("gqlsync hub: a connection could not be re-validated")
                valid = False
            if not valid:
                self.stats["revoked"] += 1
                await connection.close_for(CLOSE_FORBIDDEN, "Forbidden: credentials revoked")
                continue
            for sub in self.subscriptions_of(connection):
                try:
                    await self._rescope(sub, connection.user)
                except Exception as error:  # its permission failed: it ends, alone
                    self._fail([sub], {"execution": error},
                               "its permission could not be re-checked")

    async def _rescope(self, sub: Subscription, user: Any) -> None:
        """The subscriber's identity changed: recompute its scope and view, send the diff."""
        if sub.rescope is None or sub.ended:
            return
        outcome = await sync_to_async(sub.rescope)(user)
        if sub.ended:  # completed or disconnected meanwhile
            return
        if isinstance(outcome, SubscriptionEnded):
            # end first: unsubscribe() marks it ended, and the reader must hear why: the
            # check that now refuses them, with its code
            sub.end(outcome)
            self.unsubscribe(sub)
            return
        scope, queryset = outcome
        sub.rescoped(scope)
        old_view = sub.view
        new_view = await self.views.acquire(queryset) if queryset is not None else None
        if sub.ended:
            self.views.release(new_view)
            return
        if old_view is not None and new_view is not None and old_view.key == new_view.key:
            # Same SQL, but what it selects may have changed (object permissions granted):
            # reload, and tell everyone who shares this view.
            self.views.release(new_view)
            if old_view.pks is None:
                # too large to reload and diff: this subscriber refetches (not everyone
                # sharing the view, on every identity event of anyone)
                self._resync_one(sub, "What you may see may have changed, and this "
                                      "subscription's view is too large to tell how: "
                                      "refetch, then subscribe again.")
                return
            sharing = [s for members in self.groups.values() for s in members
                       if s.view is old_view]
            await self._refresh({old_view.key: old_view}, sharing)
            return
        members = self.groups.get(sub.group)
        if members is not None:
            members.discard(sub)  # it is counted under its view
        sub.view, sub.view_queryset = new_view, queryset
        if members is not None:
            members.add(sub)
        self.views.release(old_view)
        if old_view is not None and new_view is not None:
            if old_view.pks is None or new_view.pks is None:
                self._resync_one(sub, "What you may see changed, and this subscription's "
                                      "view is too large to tell how: refetch, then "
                                      "subscribe again.")
                return
            await self._announce([sub], new_view.pks - old_view.pks,
                                 old_view.pks - new_view.pks)

    async def close(self) -> None:
        """Stop listening and end every subscription (tests, shutdown)."""
        # ending a subscription may unsubscribe it (the transport's on_end): iterate a copy
        for sub in [s for members in self.groups.values() for s in members]:
            sub.end(SubscriptionEnded("The server is shutting down."))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self.channel is not None:
            for group in list(self._joined):
                await self.layer.group_discard(group, self.channel)
        self._joined.clear()
        self.groups.clear()
        self.watchers.clear()
        self.channel = None


def _position(cursor: str) -> tuple[int, int]:
    try:
        return Position.parse(cursor).key()
    except Gap:  # not from the log (it is off): never at or before a floor
        return (sys.maxsize, 0)


#: a view's transition the evaluation did not give (it subscribed meanwhile), and "not
#: decided yet" (None is a decision: nothing to send)
_UNANSWERED = object()
_UNDECIDED = object()

#: the key of a payload cached for every scope (its execution read nothing of the context)
_ANY_SCOPE = object()

#: the last sequence number a position can have: "anything at this millisecond or later"
_ANY = 2**62


def _catch_up(sub: Subscription, identity: str, upper: tuple[int, int] | None,
              ) -> tuple[list[resume.Missed], tuple[int, int]]:
    """What ``sub`` missed since ``sub.after`` (sync: the hub's database thread), and
    the log position the catch-up reached (events up to it are skipped live). With
    ``upper``, the catch-up stops there: its view's rows are known up to it. Raises
    :class:`ResyncRequired` when what was missed cannot be told exactly."""
    log = get_log()
    after = sub.after
    assert after is not None
    if log is None:
        raise ResyncRequired("This server keeps no log to resume from: refetch, then "
                             "subscribe without a cursor.")
    try:
        entries, head = log.read(broker.model_group(sub.model), after)
        # what the subscriber may see may have changed since: rules' dependencies, and
        # the subscriber's own identity (groups, permissions)
        since = Position(max(after.ms - 1, 0), _ANY)
        for group in sub.depends_on:
            if log.read(group, since)[0]:
                raise ResyncRequired("What this subscription may see changed while it was "
                                     "away: refetch, then subscribe again.")
        user = getattr(sub.connection, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            mine = pk_key(user.pk)
            if any(pk_key(m.get("pk")) == mine for _, m in log.read(identity, since)[0]):
                raise ResyncRequired("Your permissions changed while this subscription was "
                                     "away: refetch, then subscribe again.")
    except Gap as gap:
        raise ResyncRequired(f"This subscription cannot be resumed from its cursor ({gap}): "
                             "refetch, then subscribe again.") from gap
    if any(message.get("hole") for _, message in entries):
        raise ResyncRequired("Changes made while the replay log was unreachable cannot be "
                             "replayed: refetch, then subscribe again.")
    reached = head.key()
    if upper is not None:
        entries = [(c, m) for c, m in entries if Position.parse(c).key() <= upper]
        reached = max(upper, after.key())
    events = [Event.from_message({**message, "cursor": cursor}) for cursor, message in entries]
    if sub.pk is not None:
        events = [e for e in events if pk_key(e.pk) == pk_key(sub.pk)]
    view = sub.view
    conditions = [c.selects() for c in sub.checks]
    if view is not None and view.pks is None:
        # a view without keys is the rule's answer now, as the database gives it
        conditions.append(view.selects())
        view = None
    missed = resume.missed(sub.model, resume.net_changes(events), conditions,
                           view=None if view is None else (view.selects(), view.pks or set()))
    return missed, reached


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per process in a server; one per test loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


def hubs() -> list[Hub]:
    """The process's hubs whose event loop is open, from any thread (metrics read them)."""
    while True:
        try:
            return [hub for loop, hub in list(_hubs.items()) if not loop.is_closed()]
        except RuntimeError:  # a loop made its hub meanwhile, on another thread
            continue
