"""Resume: what a subscription missed while its client was away.

A client that reconnects subscribes again with ``after: <the last cursor it received>``.
Its copy holds what it was sent up to that cursor; the hub reads the events published
since from the replay log (:mod:`gqlsync.log`) and this module turns them into the few
changes that make the copy equal to what the same user's query returns *now*:

- a row the subscriber may see now arrives with its current state: ``UPDATED`` if the
  client held it at the cursor, ``CREATED`` if not;
- a row it held at the cursor and may not see now (deleted, moved out of its filter or
  view) arrives as ``DELETED``, carrying the state the client holds — the one it was
  sent, so nothing it was not entitled to see;
- a row it neither held nor may see is not mentioned.

Rows come in the order of their last change. What the client held at the cursor is
worked out exactly: the row's state then is its state now (or its last state, if
deleted) with the previous values of every change since laid back over it, and the
database judges that image against the subscription's conditions (:mod:`gqlsync.images`).
When that state cannot be known (a change whose previous values did not travel), or
when the conditions themselves may have changed meanwhile (a change to a model the
permission depends on, to the subscriber's identity), the subscriber is told to resync
(:class:`~gqlsync.exceptions.ResyncRequired`) rather than given a partial catch-up.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Exists, OuterRef, QuerySet

from gqlsync import images, registry, rows
from gqlsync.events import Event, Op, pk_key
from gqlsync.exceptions import ResyncRequired
from gqlsync.matching import KNOWN_FIELDS


@dataclass(frozen=True, slots=True)
class Missed:
    """One change a resumed subscriber gets: the row's event, as it sees it."""

    event: Event
    instance: models.Model
    op: Op


def net_changes(entries: Sequence[Event]) -> dict[int | str, list[Event]]:
    """The events of each row, oldest first; rows ordered by their last event."""
    by_row: dict[int | str, list[Event]] = {}
    for event in entries:
        key = pk_key(event.pk)
        found = by_row.pop(key, None)  # re-insert: order by the row's last change
        by_row[key] = [*(found or ()), event]
    return by_row


def state_at_cursor(current: models.Model | None, events: Sequence[Event],
                    reg: registry.Registration) -> models.Model | None:
    """The row as it was before ``events`` (``None``: it did not exist), from its state
    after them (``current``; ``None`` if they deleted it).

    Raises :class:`ResyncRequired` when a change's previous values did not travel.
    """
    state = current
    for event in reversed(events):
        if event.op is Op.CREATED:
            state = None
        elif event.op is Op.DELETED:
            state = rows.rebuild(reg, event.before, event.pk)
        else:
            if state is None:
                # an update of a row that, by the later events, did not exist: the log
                # and the database disagree (a write outside the ORM); do not guess
                raise ResyncRequired("This subscription missed changes it cannot replay.")
            state = _undo(state, event, reg)
    return state


def _undo(state: models.Model, event: Event, reg: registry.Registration) -> models.Model:
    changed = set(event.changed)
    if not changed:
        if event.before == {}:
            return state  # a save that changed nothing
        raise ResyncRequired("This subscription missed changes it cannot replay.")
    before = event.before or {}
    undone = copy.copy(state)
    undone._state = copy.copy(state._state)
    undone._state.fields_cache = {}
    for f in reg.model._meta.concrete_fields:
        if f.name not in changed:
            continue
        if f.attname not in before:
            # changed, but its previous value did not travel (register(exclude=...))
            raise ResyncRequired("This subscription missed changes it cannot replay.")
        raw = before[f.attname]
        setattr(undone, f.attname, None if raw is None else f.to_python(raw))
    known = state.__dict__.get(KNOWN_FIELDS)
    if known is not None:
        undone.__dict__[KNOWN_FIELDS] = known
    return undone


def missed(
    model: str,
    by_row: dict[int | str, list[Event]],
    conditions: Sequence[QuerySet[Any] | None],
    view: tuple[QuerySet[Any] | None, set[Any]] | None = None,
) -> list[Missed]:
    """What a subscriber with ``conditions`` (filters: querysets that must all select
    the row; ``None``: one that selects nothing) and ``view`` (its permission's rows and
    the keys the hub holds visible) gets for the rows ``by_row`` changed.

    Whether the subscriber may see a row *now* is the hub's answer for the view (the
    keys it keeps event by event, so that the catch-up and the live events that follow
    agree) and the database's for the filters. Two queries whatever the number of rows:
    the rows as they are now with each filter's answer, and whether each condition
    selected each row's state at the cursor (:func:`gqlsync.images.holds`).
    """
    if not by_row:
        return []
    reg = registry.get(model)
    if view is not None:
        conditions = [*conditions, view[0]]
    if any(c is None for c in conditions):
        return []  # it can see nothing, now or then
    selects = [c for c in conditions if c is not None]
    filters = selects[:-1] if view is not None else selects
    visible_keys = view[1] if view is not None else None
    annotations = {f"_gqlsync_{i}": Exists(c.filter(pk=OuterRef("pk")))
                   for i, c in enumerate(filters)}
    current: dict[int | str, tuple[models.Model, bool]] = {}
    for row in rows._loader(reg).filter(pk__in=list(by_row)).annotate(**annotations):
        key = pk_key(row.pk)
        visible = all(getattr(row, n) for n in annotations)
        current[key] = (row, visible and (visible_keys is None or key in visible_keys))
    # A row gone from the table whose last event read is not its delete was deleted
    # after what the catch-up covers: its state after those events is what the last of
    # them wrote. Its DELETED follows live, but it is judged on the views as the hub
    # holds them, which may have been read after the delete: the catch-up says it.
    after: dict[int | str, models.Model | None] = {}
    for pk, events in list(by_row.items()):
        if pk in current:
            after[pk] = current[pk][0]
        elif events[-1].op is Op.DELETED:
            after[pk] = None
        elif events[-1].after is not None:
            after[pk] = rows.rebuild(reg, events[-1].after, pk)
        else:
            del by_row[pk]  # what it wrote did not travel: left to its live DELETED
    then = {pk: state_at_cursor(after[pk], events, reg) for pk, events in by_row.items()}
    questions = [(c, state) for state in then.values() if state is not None for c in selects]
    answers = iter(images.holds(questions))
    held: dict[int | str, bool] = {}
    for pk, state in then.items():
        judged = [next(answers) for _ in selects] if state is not None else [False]
        held[pk] = all(judged)
    found: list[Missed] = []
    for pk, events in by_row.items():
        last = events[-1]
        now_row, visible = current.get(pk, (None, False))
        if now_row is not None and visible:
            op = Op.UPDATED if held[pk] else Op.CREATED
            found.append(Missed(Event(model, pk, op, cursor=last.cursor), now_row, op))
        elif held[pk]:
            state = then[pk]
            assert state is not None
            found.append(Missed(Event(model, pk, Op.DELETED, cursor=last.cursor), state,
                                Op.DELETED))
    return found
