"""Rows: the database work of one event, done once for every subscriber of a process.

The hub calls these in its database thread (one ``sync_to_async`` call per event):

- :func:`evaluate` loads the changed row with its forward foreign keys and, in the same
  query, asks every *distinct* condition of the local subscriptions (filters and
  permission views) as an ``EXISTS`` column; exact-match filters are answered from the
  loaded row in Python. A deleted row is rebuilt from the last state that travelled
  with its event (:func:`rebuild`), never read back.
- :func:`diff_rows` loads the rows that entered or left a view when a model the view
  depends on changed.
"""

from __future__ import annotations

import copy
import datetime
import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.db.models import Exists, OuterRef
from django.db.models.expressions import RawSQL

from gqlsync import images, registry
from gqlsync.events import Event, Op, pk_key, to_primitive
from gqlsync.matching import KNOWN_FIELDS, RowFilter, TrackedView

logger = logging.getLogger("gqlsync.rows")


def rebuild(reg: registry.Registration, before: dict[str, Any] | None, pk: Any) -> models.Model:
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
            related.append((f, rebuild(target, nested, nested.get(target_pk.attname))))
    meta_pk = reg.model._meta.pk
    assert meta_pk is not None
    values.setdefault(meta_pk.attname, meta_pk.to_python(pk))
    instance = reg.model(**values)
    instance._state.adding = False
    instance.__dict__[KNOWN_FIELDS] = frozenset(values)
    for fk, target_instance in related:
        fk.set_cached_value(instance, target_instance)
    return instance


def previous_state(instance: models.Model, event: Event) -> models.Model:
    """The row as it was before an update: the loaded row with ``before`` laid over it.

    A changed field whose old value did not travel (``register(exclude=...)``) is blanked
    rather than shown with its new value, which the subscriber may no longer see.
    """
    previous = copy.copy(instance)
    previous._state = copy.copy(instance._state)
    previous._state.fields_cache = {}
    before = event.before or {}
    changed = set(event.changed)
    for f in instance._meta.concrete_fields:
        if f.attname in before:
            raw = before[f.attname]
            setattr(previous, f.attname, None if raw is None else f.to_python(raw))
        elif f.name in changed and not f.primary_key:
            setattr(previous, f.attname, None)
    return previous


@dataclass
class Answers:
    instance: models.Model | None
    previous: models.Model | None
    checks: dict[Hashable, bool]
    views: dict[Hashable, tuple[bool, bool]]
    #: conditions (check or view keys) that raised: their subscriptions end, no one else's
    failed: dict[Hashable, BaseException] = field(default_factory=dict)
    #: the combined query failed and each condition was asked on its own
    fallback: bool = False
    #: views without keys whose "before" this event cannot tell (a column the rule reads
    #: did not travel, an m2m change, an unknown change): their subscribers refetch
    untold: set[Hashable] = field(default_factory=set)


def blame(error: BaseException) -> bool:
    """Is ``error`` the fault of the condition that raised it? Not when the database
    connection itself is gone (a restart, an idle timeout, a pooler): that is the hub's
    problem, and ending the subscriptions that happened to be asked would punish the
    innocent."""
    return not (isinstance(error, DatabaseError) and not connection.is_usable())


def _isolated(failed: dict[Hashable, BaseException], key: Hashable,
              ask: Callable[[], bool]) -> bool:
    """Ask one condition on its own: a condition that raises (a pattern the database
    refuses, a value it cannot bind, a bug in a custom filter) is recorded as failed and
    answers False, so it can only ever end its own subscriptions."""
    try:
        return bool(_isolated_query(ask))
    except Exception as error:
        if not blame(error):
            raise
        failed[key] = error
        return False


def _fresh_connection() -> None:
    """Drop the hub thread's connection if a query on it failed and it is no longer
    usable, as Django does around each request (the hub is a long-lived task, not a
    request). Not its age: ``CONN_MAX_AGE = 0`` would mean a new connection per event."""
    if (connection.connection is not None and connection.errors_occurred
            and not connection.in_atomic_block):
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


_logged_fallback = 0.0


def _fallback_noticed(error: BaseException) -> None:
    global _logged_fallback
    now = time.monotonic()
    if now - _logged_fallback > 60:  # at most once a minute: it may be every event
        _logged_fallback = now
        logger.warning("gqlsync: the combined condition query failed (%s: %s); asking each "
                       "condition on its own", type(error).__name__, error)


def evaluate(
    event: Event, checks: dict[Hashable, RowFilter], views: dict[Hashable, TrackedView]
) -> Answers:
    """Load the row, move it through every view, answer every filter.

    The common case is one query for the row and every condition. If that query fails,
    one of the conditions is at fault: the row is loaded alone and each condition asked
    on its own, and the ones that fail are reported in ``Answers.failed``.
    """
    _fresh_connection()
    try:
        return _evaluate(event, checks, views)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()  # the connection died under us: once more, on a new one
        return _evaluate(event, checks, views)


def _evaluate(
    event: Event, checks: dict[Hashable, RowFilter], views: dict[Hashable, TrackedView]
) -> Answers:
    reg = registry.get(event.model)
    failed: dict[Hashable, BaseException] = {}
    if event.op is Op.DELETED:
        instance = rebuild(reg, event.before, event.pk)
        transitions = {key: view.transition(event.pk, True)
                       for key, view in views.items() if view.keeps_keys()}
        # a view without keys: could the deleted row's last state be seen? Not when a
        # column its rule reads did not travel (NULL could satisfy a negated rule)
        missing = _missing(reg, instance)
        cannot = {k for k, v in views.items()
                  if not v.keeps_keys() and missing and v.reads(missing)}
        judged = {k: v for k, v in views.items() if not v.keeps_keys() and k not in cannot}
        if judged:
            was = _held(judged, instance, failed)
            transitions.update({k: (was[k], False) for k in judged if k not in failed})
        answers = {k: _isolated(failed, k, functools.partial(f.matches_deleted, instance))
                    for k, f in checks.items()}
        return Answers(instance, instance, answers, transitions, failed, untold=cannot)
    # One query: the row with its foreign keys, and whether every distinct filter and
    # every view selects it, so the cost grows with distinct conditions, not subscribers.
    plan = _plan(reg, checks, views)
    by_equality, asked, cohorts = plan.by_equality, plan.asked, plan.cohorts
    annotations, conditions = plan.annotations, plan.conditions
    holds: dict[tuple[str, Hashable], bool] = {}
    fallback = False
    try:
        loaded = _isolated_query(
            lambda: _loader(reg).filter(pk=event.pk).annotate(**annotations).first())
        if loaded is not None:
            holds = {conditions[name]: bool(getattr(loaded, name)) for name in conditions}
            holds.update(cohorts.read(loaded))
    except Exception as error:
        if not annotations or not blame(error):
            raise  # the row itself cannot be read: the hub's problem, not a subscriber's
        fallback = True
        _fallback_noticed(error)
        loaded = _loader(reg).filter(pk=event.pk).first()
        if loaded is not None:
            for kind, key, _ in asked:
                condition = checks[key] if kind == "check" else views[key]
                queryset = condition.selects()
                assert queryset is not None
                holds[(kind, key)] = _isolated(
                    failed, key, queryset.filter(pk=event.pk).exists)
    if loaded is None:
        if event.after is not None:
            return _on_images(reg, event, checks, views, failed, fallback)
        # deleted since, and what this change wrote did not travel: leave the views
        # alone, so that its DELETED finds it as the subscribers last saw it
        return Answers(None, None, {}, {}, failed, fallback)
    if event.after is not None and _moved_on(loaded, event.after):
        # later commits changed the row already: judge this change on the state it
        # describes, not on the row as it is now
        return _on_images(reg, event, checks, views, failed, fallback)
    answers = {k: holds.get(("check", k), False) for k in checks}
    for key, check in by_equality.items():
        answers[key] = _isolated(failed, key, functools.partial(_equal, check, loaded, event.pk))
    row_key = pk_key(event.pk)
    keyless = [k for k, view in views.items() if view.pks is None and k not in failed]
    transitions = {k: view.record_key(row_key, holds.get(("view", k), False))
                   for k, view in views.items() if view.pks is not None and k not in failed}
    previous = None
    # a view without keys: before is the rule's answer for the previous state, or
    # after's when the change wrote nothing the rule reads
    changed = set(event.changed) if event.op is Op.UPDATED else set()
    unknown = _untravelled(reg, changed, event.before)
    untold: set[Hashable] = set()
    ask: dict[Hashable, TrackedView] = {}
    for k in keyless:
        view = views[k]
        after = holds.get(("view", k), False)
        if event.op is Op.CREATED:
            transitions[k] = (False, after)
        elif not changed or (unknown and view.reads(unknown)):
            untold.add(k)
        elif view.reads(changed):
            ask[k] = view
        else:
            transitions[k] = (after, after)
    if ask:
        previous = previous_state(loaded, event)
        was = _held(ask, previous, failed)
        transitions.update({k: (was[k], holds.get(("view", k), False))
                            for k in ask if k not in failed})
    # Did the row match before this change? For a view that let it go, and for every
    # filter the change touched: ("previous", key). A filter the change did not touch
    # matched before as it matches now (the hub reads it so), and needs no work.
    leaving = any(before and not after for before, after in transitions.values())
    touched = [k for k, f in checks.items() if changed and f.touched_by(changed)]
    if leaving or touched:
        previous = previous if previous is not None else previous_state(loaded, event)
        for k in (checks if leaving else touched):
            answers[("previous", k)] = _isolated(
                failed, k, functools.partial(checks[k].matches_deleted, previous))
    return Answers(loaded, previous, answers, transitions, failed, fallback, untold)


@dataclass
class Plan:
    """How one set of distinct conditions is asked: built once, kept while the hub's
    conditions for the model stay the same (the same dicts, see
    :meth:`gqlsync.matching.Members.distinct`)."""

    checks: dict[Hashable, RowFilter]
    views: dict[Hashable, TrackedView]
    by_equality: dict[Hashable, RowFilter]
    asked: list[tuple[str, Hashable, Any]]
    cohorts: Cohorts
    annotations: dict[str, Any]
    conditions: dict[str, tuple[str, Hashable]]


#: plans by (model, id of the checks, id of the views); an entry holds the two dicts, so
#: their ids are not reused while it is kept
_PLANS: OrderedDict[tuple[str, int, int], Plan] = OrderedDict()
_PLANS_SIZE = 64


def _plan(reg: registry.Registration, checks: dict[Hashable, RowFilter],
          views: dict[Hashable, TrackedView]) -> Plan:
    key = (reg.label, id(checks), id(views))
    found = _PLANS.get(key)
    if found is not None and found.checks is checks and found.views is views:
        _PLANS.move_to_end(key)
        return found
    by_equality = {k: f for k, f in checks.items() if f.equality is not None}
    asked: list[tuple[str, Hashable, Any]] = []
    for kind, conditions_of in (("check", checks), ("view", views)):
        for condition_key, condition in conditions_of.items():
            if kind == "check" and condition_key in by_equality:
                continue  # answered from the loaded row
            queryset = condition.selects()
            if queryset is not None:
                asked.append((kind, condition_key, queryset))
    cohorts = _cohorts(reg, asked)
    annotations: dict[str, Any] = {}
    conditions: dict[str, tuple[str, Hashable]] = {}
    for kind, condition_key, queryset in asked:
        if (kind, condition_key) in cohorts.members:
            continue
        name = f"_gqlsync_{len(annotations)}"
        annotations[name] = Exists(queryset.filter(pk=OuterRef("pk")))
        conditions[name] = (kind, condition_key)
    annotations.update(cohorts.annotations)
    plan = Plan(checks, views, by_equality, asked, cohorts, annotations, conditions)
    _PLANS[key] = plan
    if len(_PLANS) > _PLANS_SIZE:
        _PLANS.popitem(last=False)
    return plan


#: conditions compiled as EXISTS over the loader's base table, by (model, condition key)
_COMPILED: OrderedDict[tuple[str, Hashable], tuple[str, tuple[Any, ...]] | None] = OrderedDict()
_COMPILED_SIZE = 20_000
#: the smallest cohort asked as one: fewer conditions are as cheap one by one
COHORT_MIN = 2


@dataclass
class Cohorts:
    """Conditions that differ only in their parameters (one rule, many users: Hasura's
    *cohorts*), asked together: one ``ARRAY(SELECT ... FROM (VALUES ...))`` column per
    shape, which lists the conditions that hold. The database plans one subquery per
    shape, not one per condition, and the hub compiles each condition once."""

    annotations: dict[str, Any] = field(default_factory=dict)
    #: annotation name -> the (kind, key) of each VALUES row, by index
    rows: dict[str, list[tuple[str, Hashable]]] = field(default_factory=dict)
    members: set[tuple[str, Hashable]] = field(default_factory=set)

    def read(self, loaded: models.Model) -> dict[tuple[str, Hashable], bool]:
        holds: dict[tuple[str, Hashable], bool] = {}
        for name, keys in self.rows.items():
            held = set(getattr(loaded, name) or ())
            for index, key in enumerate(keys):
                holds[key] = index in held
        return holds


#: cohorts built, by (model, the conditions asked): an event asks the same conditions as
#: the one before it until a subscription comes or goes (bounded, least recent first)
_COHORTS: OrderedDict[tuple[str, tuple[tuple[str, Hashable], ...]], Cohorts] = OrderedDict()
_COHORTS_SIZE = 16


def _cohorts(reg: registry.Registration, asked: list[tuple[str, Hashable, Any]]) -> Cohorts:
    """Group the conditions by their SQL with the parameters left out (PostgreSQL with
    client-side binding, Django's default: a ``VALUES`` list of literals types itself).

    The parameters are rendered into the SQL as literals by the driver
    (``connection.ops.compose_sql``), once for as long as the same conditions are asked,
    so that an event does not have a thousand users' parameters parsed and bound again.
    """
    if (len(asked) < COHORT_MIN or connection.vendor != "postgresql"
            or connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")):
        return Cohorts()
    signature = (reg.label, tuple((kind, key) for kind, key, _ in asked))
    cached = _COHORTS.get(signature)
    if cached is not None:
        _COHORTS.move_to_end(signature)
        return cached
    cohorts = Cohorts()
    shapes: dict[tuple[str, int], list[tuple[str, Hashable, tuple[Any, ...]]]] = {}
    for kind, key, queryset in asked:
        compiled = _compiled(reg, key, queryset)
        if compiled is None:
            continue
        sql, params = compiled
        shapes.setdefault((sql, len(params)), []).append((kind, key, params))
    for (sql, width), members in shapes.items():
        if len(members) < COHORT_MIN:
            continue
        try:
            annotation = _cohort_column(sql, width, members)
        except Exception:  # a value the driver cannot render: ask them one by one
            annotation = None
        if annotation is None:
            continue
        name = f"_gqlsync_cohort_{len(cohorts.annotations)}"
        cohorts.annotations[name] = annotation
        cohorts.rows[name] = [(kind, key) for kind, key, _ in members]
        cohorts.members.update((kind, key) for kind, key, _ in members)
    _COHORTS[signature] = cohorts
    if len(_COHORTS) > _COHORTS_SIZE:
        _COHORTS.popitem(last=False)
    return cohorts


#: values whose literal PostgreSQL types by itself (``2``, ``true``, ``'…'::uuid``,
#: ``'…'::timestamptz``): a VALUES column of them compares as the parameter would. Text
#: and NULL are untyped literals, which VALUES would make ``text`` (wrong against an
#: enum, ``char(n)`` or ``citext`` column): a parameter of theirs that differs between
#: the conditions keeps them out of a cohort.
_TYPED = (int, float, Decimal, uuid.UUID, datetime.date, datetime.time, datetime.timedelta)


def _cohort_column(sql: str, width: int,
                   members: list[tuple[str, Hashable, tuple[Any, ...]]]) -> RawSQL | None:
    """The ``ARRAY(SELECT v.i FROM (VALUES ...) v WHERE <sql>)`` column of one cohort:
    the parameters that differ between its conditions become VALUES columns, the ones
    they share stay in place; all rendered to literals by the driver."""
    first = members[0][2]
    varying = [p for p in range(width)
               if any(type(ps[p]) is not type(first[p]) or ps[p] != first[p]
                      for _, _, ps in members)]
    if not varying or any(not isinstance(ps[p], _TYPED) for p in varying
                          for _, _, ps in members):
        return None
    column = {p: f"v.c{j}" for j, p in enumerate(varying)}
    pieces = sql.split("%%")
    position = 0
    shared: list[Any] = []
    for i, piece in enumerate(pieces):
        parts = piece.split("%s")
        rebuilt = parts[0]
        for part in parts[1:]:
            if position >= width:
                return None  # placeholders it did not compile to: ask them one by one
            if position in column:
                rebuilt += column[position] + part
            else:
                rebuilt += "%s" + part
                shared.append(first[position])
            position += 1
        pieces[i] = rebuilt
    if position != width:
        return None
    correlated = "%%".join(pieces)
    row = "(" + ", ".join(["%s"] * (len(varying) + 1)) + ")"
    values = ", ".join([row] * len(members))
    listed = [value for index, (_, _, ps) in enumerate(members)
              for value in (index, *(ps[p] for p in varying))]
    names = ", ".join(f"c{j}" for j in range(len(varying)))
    rendered = cast(Any, connection.ops).compose_sql(
        f"ARRAY(SELECT v.i FROM (VALUES {values}) AS v(i, {names}) WHERE {correlated})",
        [*listed, *shared])
    # literals now, and no placeholders: a % left in the text is a literal percent
    return RawSQL(str(rendered).replace("%", "%%"), ())


def _compiled(reg: registry.Registration, key: Hashable, queryset: Any,
              ) -> tuple[str, tuple[Any, ...]] | None:
    """``EXISTS(queryset.filter(pk=OuterRef("pk")))`` compiled in the loader's query:
    its SQL (the outer row read through the base table's name) and parameters; None if
    it cannot be compiled (it selects nothing, say). Cached: a view lives long."""
    cache_key = (reg.label, key)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
        return _COMPILED[cache_key]
    try:
        outer = _loader(reg).query.clone()
        expression = Exists(queryset.filter(pk=OuterRef("pk"))).resolve_expression(
            outer, allow_joins=True, reuse=None, summarize=False)
        sql, params = outer.get_compiler(connection=connection).compile(expression)
        found: tuple[str, tuple[Any, ...]] | None = (sql, tuple(params))
    except Exception:  # EmptyResultSet and the like: the one-by-one path knows them
        found = None
    _COMPILED[cache_key] = found
    if len(_COMPILED) > _COMPILED_SIZE:
        _COMPILED.popitem(last=False)
    return found


def _moved_on(row: models.Model, after: dict[str, Any]) -> bool:
    """Does the row as loaded differ from what the event's commit wrote? (Compared as
    the fields read them back: ``Decimal("1.5")`` is ``"1.50"``.)"""
    values = row.__dict__
    fields = _fields_by_attname(type(row))
    for name, value in after.items():
        if name not in values or name not in fields:
            continue
        try:
            written = None if value is None else fields[name].to_python(value)
        except Exception:  # cannot be read back: compare as it travelled
            written = value
            if to_primitive(values[name]) != written:
                return True
            continue
        if written != values[name]:
            return True
    return False


@functools.cache
def _fields_by_attname(model: type[models.Model]) -> dict[str, Any]:
    return {f.attname: f for f in model._meta.concrete_fields}


def _on_images(
    reg: registry.Registration, event: Event, checks: dict[Hashable, RowFilter],
    views: dict[Hashable, TrackedView], failed: dict[Hashable, BaseException],
    fallback: bool,
) -> Answers:
    """Judge a change that later commits overtook (the row changed again, or is gone, by
    the time it is handled) on the state it describes: its ``after`` values, and for an
    update the state before it. The row as it is now would give the wrong transition
    (a filter that matched before this change but not after a later one), and a skipped
    change would leave the views believing the row still looks as it did, so that the
    later ``DELETED`` would carry a state its subscribers may never have been entitled
    to see. The later commits' own events follow, and are judged the same way."""
    instance = rebuild(reg, event.after, event.pk)
    previous = previous_state(instance, event) if event.op is Op.UPDATED else None
    changed = set(event.changed) if event.op is Op.UPDATED else set()
    unknown = _missing(reg, instance) | _untravelled(reg, changed, event.before)
    untold = {k for k, v in views.items() if v.pks is None
              and ((unknown and v.reads(unknown)) or (event.op is Op.UPDATED and not changed))}
    keyless = {k for k, v in views.items() if v.pks is None and k not in untold}
    asked: list[tuple[str, Hashable, Any]] = []
    questions: list[tuple[Any, models.Model]] = []
    for kind, found in (("check", checks), ("view", views)):
        for key, condition in found.items():
            queryset = condition.selects()
            if queryset is None:
                continue
            asked.append(("now", key, queryset))
            questions.append((queryset, instance))
            if kind == "view" and key in untold:
                continue
            if (kind == "check" or key in keyless) and previous is not None:
                asked.append(("was", key, queryset))
                questions.append((queryset, previous))
    try:
        replies = _isolated_query(lambda: images.holds(questions))
    except Exception as error:
        if not blame(error):
            raise
        fallback = True
        replies = [_isolated(failed, key, functools.partial(
            lambda q, i: images.holds([(q, i)])[0], queryset, image))
            for (_, key, queryset), (_, image) in zip(asked, questions, strict=True)]
    holds: dict[tuple[str, Hashable], bool] = {}
    for (when, key, _), reply in zip(asked, replies, strict=True):
        holds[(when, key)] = bool(reply)
    answers: dict[Hashable, bool] = {k: holds.get(("now", k), False) for k in checks}
    for k in checks:
        if previous is not None:
            answers[("previous", k)] = holds.get(("was", k), False)
    transitions = {k: view.record(event.pk, holds.get(("now", k), False))
                   for k, view in views.items()
                   if k not in failed and k not in keyless and k not in untold}
    for k in keyless:
        if k not in failed:
            transitions[k] = (holds.get(("was", k), False), holds.get(("now", k), False))
    return Answers(instance, previous, answers, transitions, failed, fallback, untold)


def _missing(reg: registry.Registration, image: models.Model) -> set[str]:
    """Names of the fields a rebuilt row holds no value for (they did not travel)."""
    known = image.__dict__.get(KNOWN_FIELDS)
    if known is None:
        return set()
    return {f.name for f in reg.model._meta.concrete_fields if f.attname not in known}


def _untravelled(reg: registry.Registration, changed: set[str],
                 before: dict[str, Any] | None) -> set[str]:
    """Of the fields an update changed, those whose previous value did not travel (or
    that are no columns of the row: a many-to-many change)."""
    before = before or {}
    by_name = _fields_by_name(reg.model)
    return {name for name in changed
            if name not in by_name or by_name[name].attname not in before}


@functools.cache
def _fields_by_name(model: type[models.Model]) -> dict[str, Any]:
    return {f.name: f for f in model._meta.concrete_fields}


def _held(views: dict[Hashable, TrackedView], image: models.Model,
          failed: dict[Hashable, BaseException]) -> dict[Hashable, bool]:
    """Does each view's rule select ``image`` (a row's state before a change, or a
    deleted row's last one)? One statement for all of them; if it fails, each on its own
    (a view that raises is recorded in ``failed``)."""
    keys = [k for k, view in views.items() if view.selects() is not None]
    questions = [(views[k].queryset, image) for k in keys]
    try:
        replies = _isolated_query(lambda: images.holds(questions))
    except Exception as error:
        if not blame(error):
            raise
        replies = [_isolated(failed, k, functools.partial(
            lambda q: images.holds([(q, image)])[0], views[k].queryset)) for k in keys]
    found = dict.fromkeys(views, False)
    found.update({k: bool(reply) for k, reply in zip(keys, replies, strict=True)})
    return found


def _isolated_query(ask: Callable[[], Any]) -> Any:
    """Run ``ask`` so that, inside a transaction, its failure rolls back only itself
    (a failed query must not poison the transaction)."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return ask()
    return ask()


def _equal(check: RowFilter, loaded: models.Model, pk: Any) -> bool:
    known = check.matches_loaded(loaded)
    return check.matches_row(pk) if known is None else known


@functools.cache
def _forward_relations(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.name for f in model._meta.concrete_fields
                 if f.is_relation and (f.many_to_one or f.one_to_one))


def _loader(reg: registry.Registration) -> Any:
    """The model's rows with their forward foreign keys joined: nodes usually select them,
    and the row is loaded once for every subscriber. A model without any gets the plain
    manager: ``select_related()`` with no names means "follow all" and is deprecated."""
    manager = reg.model._default_manager
    relations = _forward_relations(reg.model)
    return manager.select_related(*relations) if relations else manager.all()


def _load_rows(model: str, pks: set[Any]) -> dict[Any, models.Model]:
    reg = registry.get(model)
    return {
        pk_key(row.pk): row
        for row in _loader(reg).filter(pk__in=list(pks))
    }


def diff_rows(
    model: str, added: set[Any], removed: set[Any], checks: dict[Hashable, RowFilter],
    failed: dict[Hashable, BaseException],
) -> tuple[dict[Any, models.Model], dict[tuple[Hashable, Any], bool]]:
    """Rows that entered or left a view, and each filter's answer for each of them
    (a filter that raises is recorded in ``failed`` and answers False)."""
    rows = _load_rows(model, added | removed)
    answers: dict[tuple[Hashable, Any], bool] = {}
    for key, check in checks.items():
        for pk, row in rows.items():
            # rows are loaded joined: no query if exact
            answers[(key, pk)] = _isolated(
                failed, key, functools.partial(_equal, check, row, pk))
    return rows, answers
