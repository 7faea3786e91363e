"""Events: what changed, as plain data.

An :class:`Event` is the only thing that travels from the write path to the subscribers.
It holds primitives only (strings, numbers, booleans, ``None``, lists and dicts of those),
so any channel layer can carry it and no model instance, queryset or socket ever leaks
across the boundary. It names the row (model label and primary key), the operation, the
fields that changed and, where the subscribers cannot read it from the database any more,
the row's last visible values:

- ``UPDATED`` carries ``before``: the previous values of the changed fields (as far as
  they are known), for consumers that need the transition, not only the new state;
- ``DELETED`` carries ``before``: the row's last values (its registration's travelling
  fields, foreign keys as ids, and the last state of registered rows they point to), which
  become the event's ``node``;
- ``CREATED`` and ``UPDATED`` carry ``after``: the row's travelling values as this commit
  left them, so that an event handled after later commits (the row changed again, or is
  gone) is still judged on the state it describes.

Every event published by the write path also carries ``committed_at``: the wall-clock
time (Unix seconds) of the commit that produced it, which the hub's commit-to-send
latency (:mod:`gqlsync.metrics`) is measured from. Events made elsewhere, and messages
from a version that did not send it, have ``None``: they are delivered all the same.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import itertools
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Keys of the channel-layer message (``type`` is Channels' own routing key).
MESSAGE_TYPE = "gqlsync.event"

#: The model label of identity events: ``pk`` is a user's, ``changed`` says what happened
#: to them (``is_active``, ``password``, ``permissions``, ``logout``…). Hubs re-check that
#: user's connections and re-scope their subscriptions when one arrives.
IDENTITY = "gqlsync.identity"


class Op(enum.Enum):
    """What happened to the row."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


_counter = itertools.count()
_process = f"{os.getpid() & 0xFFFF:04x}{int.from_bytes(os.urandom(2), 'big'):04x}"


def to_primitive(value: Any) -> Any:
    """A JSON-safe form of a model field value (dates as ISO strings, decimals as strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [to_primitive(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_primitive(v) for k, v in value.items()}
    return str(value)


def pk_key(pk: Any) -> int | str:
    """A primary key as events carry it: integers stay, anything else (UUIDs…) is a string.

    Every place that compares keys (events, tracked views, identity follow-up) uses this,
    so a key read from the database matches the same key read from the wire.
    """
    return pk if isinstance(pk, int) else str(pk)


def new_cursor() -> str:
    """A new opaque cursor: sortable by time within a process, unique across processes."""
    return f"{time.time_ns() // 1_000_000:011x}-{next(_counter) & 0xFFFFFF:06x}-{_process}"


def _seconds(value: Any) -> float | None:
    """A message's ``committed_at``: a finite number, or ``None`` (absent, or not a time:
    a NaN or an integer too large for a float is no time either)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    return None


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change to one row."""

    model: str
    """The model's label, lower case: ``"bookstore.book"``."""
    pk: int | str
    """The primary key, as a JSON primitive (UUIDs and other types become strings)."""
    op: Op
    changed: tuple[str, ...] = ()
    """Names of the fields that changed; empty when unknown (every field may have)."""
    before: dict[str, Any] | None = None
    """Previous values of ``changed`` (``UPDATED``) or the last values (``DELETED``)."""
    cursor: str = field(default_factory=new_cursor)
    after: dict[str, Any] | None = None
    """The row's travelling values after the change (``CREATED``/``UPDATED``), when known."""
    committed_at: float | None = field(default=None, compare=False)
    """Unix time of the commit that published the event (set by :mod:`gqlsync.capture`);
    when it happened, not what happened, so events compare equal without it."""

    def to_message(self) -> dict[str, Any]:
        """The channel-layer message; ``type`` routes it, the rest is the event."""
        return {
            "type": MESSAGE_TYPE,
            "model": self.model,
            "pk": self.pk,
            "op": self.op.value,
            "changed": list(self.changed),
            "before": self.before,
            "cursor": self.cursor,
            "after": self.after,
            "committed_at": self.committed_at,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Event:
        """Read an event back from a channel-layer message; raises ``KeyError``/``ValueError``."""
        return cls(
            model=str(message["model"]),
            pk=message["pk"],
            op=Op(message["op"]),
            changed=tuple(message.get("changed") or ()),
            before=message.get("before"),
            cursor=str(message["cursor"]),
            after=message.get("after"),
            committed_at=_seconds(message.get("committed_at")),
        )

    def merge(self, later: Event) -> Event | None:
        """Coalesce two changes to the same row inside one transaction.

        Subscribers see the net effect of a transaction: a row created and updated is
        ``CREATED``; created and deleted is nothing (``None``); updated twice is one
        ``UPDATED`` with the union of changed fields and the *first* previous values;
        updated and deleted is ``DELETED`` whose last state is the committed one (the
        update's previous values win); deleted and created again under the same key is
        ``UPDATED``.
        """
        if (self.model, self.pk) != (later.model, later.pk):
            raise ValueError("only changes to the same row merge")
        first, then = self.op, later.op
        if first is Op.CREATED and then is Op.DELETED:
            return None
        if first is Op.CREATED:
            return Event(self.model, self.pk, Op.CREATED, cursor=later.cursor,
                         after=later.after)
        if then is Op.DELETED:
            # updated, then deleted: the last *committed* values are the update's
            # previous ones, laid over the row as it was when deleted
            last = later.before
            if later.before and self.before:
                # a related row's snapshot travels under the foreign key's name: it no
                # longer matches a key the update's previous values put back
                last = {k: v for k, v in later.before.items()
                        if not (isinstance(v, dict) and f"{k}_id" in self.before)}
                last.update(self.before)
            return Event(self.model, self.pk, Op.DELETED, later.changed, last, later.cursor)
        if first is Op.DELETED:  # deleted, then created again with the same key
            return Event(self.model, self.pk, Op.UPDATED, cursor=later.cursor,
                         after=later.after)
        # UPDATED then UPDATED (or UPDATED then CREATED, which a save() after delete can't be)
        if not self.changed or not later.changed:
            changed: tuple[str, ...] = ()
            before = None
        else:
            changed = tuple(dict.fromkeys((*self.changed, *later.changed)))
            before = {**(later.before or {}), **(self.before or {})}
        return Event(self.model, self.pk, Op.UPDATED, changed, before, later.cursor,
                     later.after)
