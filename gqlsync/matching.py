"""Matching: does a changed row belong to a subscription?

A subscription's interest is a list of :class:`RowFilter`: the GraphQL ``filters`` argument,
a ``where=`` Q object, a permission's visible rows. Each is a queryset over the model,
and the hub asks every *distinct* one once per event (two subscriptions whose querysets
compile to the same SQL share the answer).

- A row that exists is matched by the database itself: ``queryset.filter(pk=pk).exists()``,
  with the database's collation, joins and custom filter methods.
- A deleted row is gone from the database, so its last state (from the event) is matched
  in Python against the filter's ``Q``: local fields with Django's lookup semantics for
  the common lookups, relations by following the row's foreign keys to rows that still
  exist and asking the database from there. A lookup this cannot decide (a reverse or
  many-to-many relation of the deleted row, a custom filter method) does not match, and
  is logged once: a delete is never sent to a subscription that may not have matched it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import models
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP

from gqlsync.events import pk_key

logger = logging.getLogger("gqlsync.matching")

#: set by the hub on rebuilt rows: the attnames that have real values (see rows.rebuild)
KNOWN_FIELDS = "_gqlsync_known_fields"


class Undecidable(Exception):
    """The deleted row's last state cannot tell whether it matched."""


def _ci(v: Any) -> str:
    return str(v).casefold()


_LOOKUPS: dict[str, Callable[[Any, Any], bool]] = {
    "exact": lambda a, b: a == b if b is not None else a is None,
    "iexact": lambda a, b: a is not None and _ci(a) == _ci(b),
    "contains": lambda a, b: a is not None and str(b) in str(a),
    "icontains": lambda a, b: a is not None and _ci(b) in _ci(a),
    "startswith": lambda a, b: a is not None and str(a).startswith(str(b)),
    "istartswith": lambda a, b: a is not None and _ci(a).startswith(_ci(b)),
    "endswith": lambda a, b: a is not None and str(a).endswith(str(b)),
    "iendswith": lambda a, b: a is not None and _ci(a).endswith(_ci(b)),
    "in": lambda a, b: a in list(b),
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "range": lambda a, b: a is not None and b[0] <= a <= b[1],
    "isnull": lambda a, b: (a is None) == bool(b),
    "regex": lambda a, b: a is not None and re.search(b, str(a)) is not None,
    "iregex": lambda a, b: a is not None and re.search(b, str(a), re.I) is not None,
}


def _value_of(value: Any) -> Any:
    return value.pk if isinstance(value, models.Model) else value


def _leaf(instance: models.Model, path: str, value: Any) -> bool:
    parts = path.split(LOOKUP_SEP)
    model = type(instance)
    name, rest = parts[0], parts[1:]
    if name == "pk":
        name = model._meta.pk.name  # type: ignore[union-attr]
    try:
        field: Any = model._meta.get_field(name)
    except FieldDoesNotExist:
        raise Undecidable(f"{model._meta.label}.{name}") from None
    if field.many_to_many or field.one_to_many or (field.one_to_one and not field.concrete):
        raise Undecidable(f"{model._meta.label}.{name} is a reverse or many-to-many relation")
    known = instance.__dict__.get(KNOWN_FIELDS)
    if known is not None and field.attname not in known:
        raise Undecidable(f"{model._meta.label}.{name} did not travel with the delete")
    if field.is_relation and rest and rest[0] not in _LOOKUPS:
        target_pk = getattr(instance, field.attname)
        if target_pk is None:
            return False
        if field.is_cached(instance):
            # the target's last state travelled with the delete (it may be gone too)
            return _leaf(field.get_cached_value(instance), LOOKUP_SEP.join(rest), value)
        # Follow the foreign key to a row that still exists and let the database decide.
        related: type[models.Model] = field.related_model  # type: ignore[assignment]
        return related._default_manager.filter(
            Q(pk=target_pk) & Q(**{LOOKUP_SEP.join(rest): value})
        ).exists()
    lookup = rest[0] if rest else "exact"
    if len(rest) > 1 or lookup not in _LOOKUPS:
        raise Undecidable(f"lookup {path}")
    attname = field.attname if field.is_relation else field.name
    current = getattr(instance, attname)
    if field.is_relation:
        value = _value_of(value)
        if lookup == "in":
            value = [_value_of(v) for v in value]
    elif value is not None and lookup not in ("isnull", "in", "range", "regex", "iregex"):
        value = field.to_python(value)
    return _LOOKUPS[lookup](current, value)


def matches_instance(q: Q, instance: models.Model) -> bool:
    """Evaluate ``q`` against an (unsaved) instance; raises :class:`Undecidable`."""
    results: list[bool] = []
    for child in q.children:
        if isinstance(child, Q):
            results.append(matches_instance(child, instance))
        elif isinstance(child, tuple):
            results.append(_leaf(instance, child[0], child[1]))
        else:
            raise Undecidable(f"expression {child!r}")
    if not results:
        outcome = True
    elif q.connector == Q.OR:
        outcome = any(results)
    elif q.connector == Q.XOR:
        outcome = sum(results) % 2 == 1
    else:
        outcome = all(results)
    return not outcome if q.negated else outcome


#: the key part of a queryset that can select nothing (``.none()``, ``pk__in=[]``)
_EMPTY = "<empty>"


def _sql_key(queryset: QuerySet[Any]) -> tuple[str, str, str]:
    """(model, SQL, params) naming what a queryset selects; equal keys, equal rows."""
    label = queryset.model._meta.label_lower
    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:
        return label, "", _EMPTY
    return label, sql, repr(params)


_TEXT_EXACT_VENDORS = ("postgresql", "sqlite")


def _equality(model: type[models.Model], q: Q | None) -> tuple[tuple[str, ...], str, Any] | None:
    """``(foreign-key hops, attname, value)`` when ``q`` is one exact match on a column of
    the row or of a row one foreign key away (which the hub loads joined), else ``None``.

    Such a condition is answered from the loaded row in Python, without SQL. Text columns
    only where the database's ``=`` is case- and accent-sensitive as Python's is.
    """
    if q is None or q.negated or len(q.children) != 1:
        return None
    child: Any = q.children[0]
    if isinstance(child, Q):
        return _equality(model, child)
    if not isinstance(child, tuple):
        return None
    path, value = child
    parts = path.split(LOOKUP_SEP)
    if parts[-1] == "exact":
        parts = parts[:-1]
    if not 1 <= len(parts) <= 2 or isinstance(value, (list, tuple, set, QuerySet)):
        return None
    hops: list[str] = []
    current = model
    for name in parts[:-1]:
        try:
            fk: Any = current._meta.get_field(name)
        except FieldDoesNotExist:
            return None
        if not (fk.concrete and (fk.many_to_one or fk.one_to_one)):
            return None
        hops.append(fk.name)
        current = fk.related_model
    try:
        field: Any = (current._meta.pk if parts[-1] == "pk"
                      else current._meta.get_field(parts[-1]))
    except FieldDoesNotExist:
        return None
    if not field.concrete or field.many_to_many:
        return None
    if field.is_relation:
        value = _value_of(value)
    from django.db import connection

    textual = field.get_internal_type() in ("CharField", "TextField", "SlugField",
                                            "EmailField", "URLField")
    if textual and connection.vendor not in _TEXT_EXACT_VENDORS:
        return None
    try:
        target = field.target_field if field.is_relation else field
        value = None if value is None else target.to_python(value)
    except Exception:
        return None
    return tuple(hops), field.attname, value


def _fields_of(q: Q) -> set[str]:
    """The row's own fields a ``Q`` names (the first part of each lookup path)."""
    found: set[str] = set()
    for child in q.children:
        if isinstance(child, Q):
            found |= _fields_of(child)
        elif isinstance(child, tuple):
            found.add(str(child[0]).split(LOOKUP_SEP, 1)[0])
    return found


class RowFilter:
    """One condition on rows: a queryset for live rows, its ``Q`` for deleted ones."""

    __slots__ = ("equality", "key", "q", "queryset")

    def __init__(self, queryset: QuerySet[Any], q: Q | None) -> None:
        self.queryset = queryset
        self.q = q  # None: cannot judge deleted rows
        self.key = ("filter", *_sql_key(queryset))
        self.equality = _equality(queryset.model, q)

    def matches_loaded(self, instance: models.Model) -> bool | None:
        """Answer from a row loaded with its foreign keys, or ``None`` if only SQL can."""
        if self.equality is None:
            return None
        hops, attname, value = self.equality
        found = _value_at(instance, (hops, attname))
        if found is _UNKNOWN:
            return None  # not joined: ask the database
        return bool(found == value)  # no related row is None: like a LEFT JOIN

    def touched_by(self, changed: set[str]) -> bool:
        """Can a change to the fields ``changed`` (names) change whether a row matches?
        Only through the fields the filter names; a filter without a ``Q`` (a custom
        method) is not judged on previous states, so never."""
        if self.q is None:
            return False
        return not changed.isdisjoint(_fields_of(self.q))

    @classmethod
    def where(cls, queryset: QuerySet[Any], q: Q) -> RowFilter:
        return cls(queryset.filter(q), q)

    def matches_row(self, pk: Any) -> bool:
        """Is the live row ``pk`` in the filtered queryset? (one query)"""
        if self.key[-1] == _EMPTY:
            return False
        return self.queryset.filter(pk=pk).exists()

    def selects(self) -> QuerySet[Any] | None:
        """The filtered queryset, or ``None`` when it can select nothing."""
        return None if self.key[-1] == _EMPTY else self.queryset

    def matches_deleted(self, instance: models.Model) -> bool:
        """Did the deleted row, by its last state, match?"""
        if self.q is None:
            _warn_once(self.key, "filter has no Q (custom method)")
            return False
        try:
            return matches_instance(self.q, instance)
        except Undecidable as why:
            _warn_once(self.key, str(why))
            return False

    def __repr__(self) -> str:
        return f"<RowFilter {self.key[0]} {self.q!r}>"


_warned: set[Any] = set()


def _warn_once(key: Any, why: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning("gqlsync: a delete cannot be matched to a filter (%s); not sent", why)


class TrackedView:
    """The rows one permission lets one scope see, as the hub follows them event by event.

    For each distinct visible queryset (shared by every subscription whose permission
    yields the same SQL) the hub needs, on every event, whether the row was visible
    *before* the change and is *after* it. After is the database's answer. Before is
    answered one of two ways:

    - a view with at most ``limit`` rows (``VIEW_KEYS_MAX``) keeps their primary keys:
      loaded when the first subscription arrives, updated with each change, reloaded when
      a model the permission depends on changes, so that rows entering and leaving the
      view then are announced one by one;
    - a larger view keeps nothing (``pks is None``): before is the rule's answer for the
      row's previous state (the event's ``before`` values laid over the row, or a deleted
      row's last state: :mod:`gqlsync.images`), or simply after's when the change wrote
      no column the rule reads (:meth:`reads`). Its memory does not grow with the table
      and it is live as soon as ``limit + 1`` keys have been counted. A change to a model
      its rule depends on cannot be diffed: its subscribers are told to refetch.
    """

    __slots__ = ("key", "limit", "pks", "position", "queryset", "sql")

    def __init__(self, queryset: QuerySet[Any], limit: int | None = None) -> None:
        self.queryset = queryset
        self.key = ("view", *_sql_key(queryset))
        #: what the rule reads: its SQL selecting the primary key only, unordered
        self.sql = _sql_key(queryset.order_by().values("pk"))[1]
        #: the most keys kept; ``None``: no bound
        self.limit = limit
        #: the visible keys, or ``None`` for a view too large to keep them
        self.pks: set[int | str] | None = set()
        #: where the replay log of the model stood when the keys were read (the hub
        #: sets it): changes logged after it may not have been handled yet
        self.position: tuple[int, int] | None = None

    def keeps_keys(self) -> bool:
        return self.pks is not None

    def load(self) -> None:
        """Read the visible keys, at most ``limit + 1`` of them (sync: runs in the hub's
        database thread); past ``limit``, keep none."""
        if self.key[-1] == _EMPTY:
            self.pks = set()
            return
        keys = self.queryset.order_by().values_list("pk", flat=True)
        if self.limit is not None:
            keys = keys[: self.limit + 1]
        found = {pk_key(pk) for pk in keys}
        self.pks = None if self.limit is not None and len(found) > self.limit else found

    def reads(self, changed: set[str]) -> bool:
        """Can a change to the fields ``changed`` (names; empty: unknown) change whether
        the rule selects the row? Only through a column of the model that the rule's SQL
        names; a name found anywhere in it counts (raw SQL included), so the answer errs
        towards asking."""
        if self.key[-1] == _EMPTY:
            return False
        if not changed:
            return True
        meta = self.queryset.model._meta
        for name in changed:
            try:
                found: Any = meta.get_field(name)
            except Exception:  # not a field (a name of our own): cannot tell
                return True
            if not getattr(found, "concrete", False) or found.column is None:
                return True  # an m2m or reverse relation: its rows are not the row's
            if re.search(rf"\b{re.escape(found.column)}\b", self.sql):
                return True
        return False

    def transition(self, pk: Any, deleted: bool) -> tuple[bool, bool]:
        """(visible before, visible after) a change to row ``pk``; updates the set (a
        view that keeps its keys only)."""
        empty = self.key[-1] == _EMPTY
        return self.record(pk, False if deleted or empty else self.queryset.filter(pk=pk).exists())

    def record(self, pk: Any, after: bool) -> tuple[bool, bool]:
        """Note that row ``pk`` is (``after``) visible now; returns (before, after)
        (a view that keeps its keys only)."""
        return self.record_key(pk_key(pk), after)

    def record_key(self, key: int | str, after: bool) -> tuple[bool, bool]:
        """:meth:`record` for a key already made with :func:`gqlsync.events.pk_key`."""
        assert self.pks is not None, "a view without keys is judged on previous states"
        before = key in self.pks
        if after:
            self.pks.add(key)
            if self.limit is not None and len(self.pks) > self.limit:
                self.pks = None  # grown past the bound: judged on previous states now
        else:
            self.pks.discard(key)
        return before, after

    def selects(self) -> QuerySet[Any] | None:
        """The visible queryset, or ``None`` when it can select nothing."""
        return None if self.key[-1] == _EMPTY else self.queryset

    def refresh(self) -> tuple[set[int | str], set[int | str]] | None:
        """Reload; returns (rows that became visible, rows that stopped being visible),
        or None when the view keeps no keys (any more): what changed cannot be told."""
        old = self.pks
        if old is None:
            return None
        self.load()
        if self.pks is None:
            return None
        return self.pks - old, old - self.pks


S = TypeVar("S", bound="Interested")


class Interested(Protocol):
    """What :class:`Members` reads of a subscription."""

    checks: Sequence[RowFilter]
    view: TrackedView | None


_Dimension = tuple[tuple[str, ...], str]  # (foreign-key hops, attname)
_UNKNOWN = object()


def _value_at(instance: models.Model, dimension: _Dimension) -> Any:
    """The row's value of ``dimension`` (following loaded foreign keys), or ``_UNKNOWN``
    when it cannot be read without the database or did not travel with a delete."""
    hops, attname = dimension
    current: Any = instance
    for hop in hops:
        fk: Any = current._meta.get_field(hop)
        known = current.__dict__.get(KNOWN_FIELDS)
        if known is not None and fk.attname not in known:
            return _UNKNOWN
        if not fk.is_cached(current):
            return _UNKNOWN
        current = getattr(current, hop)
        if current is None:
            return None  # no related row: matches only an equality with None
    known = current.__dict__.get(KNOWN_FIELDS)
    if known is not None and attname not in known:
        return _UNKNOWN
    return getattr(current, attname)


def _values_at(rows: Sequence[models.Model | None], dimension: _Dimension) -> set[Any] | None:
    """The rows' values of ``dimension``; None if any is unknown or unhashable."""
    values: set[Any] = set()
    for row in rows:
        if row is None:
            continue
        value = _value_at(row, dimension)
        if value is _UNKNOWN:
            return None
        try:
            values.add(value)
        except TypeError:
            return None
    return values


class Members(Generic[S]):
    """One group's subscriptions, indexed so that an event touches only those it can
    reach, with their distinct conditions kept up to date.

    A subscription with an exact-match filter (``author.email = x``, ``room_id = 3``) is
    filed under that value; the others are always candidates. For a row, the candidates
    are the unfiled subscriptions plus those filed under the row's values (and, when a
    change took the row out of a view, under its previous values): a change to one
    room's message touches that room's subscribers, not every subscriber of the model.
    The distinct filters and views are counted as subscriptions come and go, so an event
    asks each once without walking the subscribers.
    """

    __slots__ = ("_distinct", "all", "checks", "index", "rest", "views")

    def __init__(self) -> None:
        self.all: set[S] = set()
        self.rest: set[S] = set()
        self.index: dict[_Dimension, dict[Any, set[S]]] = {}
        self.checks: dict[Hashable, list[Any]] = {}  # key -> [RowFilter, count]
        self.views: dict[Hashable, list[Any]] = {}  # key -> [TrackedView, count]
        #: (distinct checks, distinct views), made once until a condition comes or goes
        self._distinct: tuple[dict[Hashable, RowFilter], dict[Hashable, TrackedView]] | None = (
            None)

    def __bool__(self) -> bool:
        return bool(self.all)

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self) -> Iterator[S]:
        return iter(self.all)

    @staticmethod
    def _filed(sub: S) -> tuple[_Dimension, Any] | None:
        for check in sub.checks:
            if check.equality is not None:
                hops, attname, value = check.equality
                try:
                    hash(value)
                except TypeError:
                    continue
                return (hops, attname), value
        return None

    def add(self, sub: S) -> None:
        if sub in self.all:
            return
        self.all.add(sub)
        # equal filters share one instance (and its queryset) within the group
        sub.checks = tuple(self.checks[c.key][0] if c.key in self.checks else c
                           for c in sub.checks)
        filed = self._filed(sub)
        if filed is None:
            self.rest.add(sub)
        else:
            dimension, value = filed
            self.index.setdefault(dimension, {}).setdefault(value, set()).add(sub)
        for check in sub.checks:
            self._count(self.checks, check.key, check, 1)
        if sub.view is not None:
            self._count(self.views, sub.view.key, sub.view, 1)

    def discard(self, sub: S) -> None:
        if sub not in self.all:
            return
        self.all.discard(sub)
        filed = self._filed(sub)
        if filed is None:
            self.rest.discard(sub)
        else:
            dimension, value = filed
            by_value = self.index[dimension]
            by_value[value].discard(sub)
            if not by_value[value]:
                del by_value[value]
                if not by_value:
                    del self.index[dimension]
        for check in sub.checks:
            self._count(self.checks, check.key, check, -1)
        if sub.view is not None:
            self._count(self.views, sub.view.key, sub.view, -1)

    def _count(self, counts: dict[Hashable, list[Any]], key: Hashable, item: Any,
               step: int) -> None:
        entry = counts.get(key)
        if entry is None:
            counts[key] = [item, step]
            self._distinct = None
            return
        entry[1] += step
        if entry[1] <= 0:
            del counts[key]
            self._distinct = None

    def distinct(self) -> tuple[dict[Hashable, RowFilter], dict[Hashable, TrackedView]]:
        """The distinct filters and views, by key: the same two dicts (do not change
        them) for as long as no condition comes or goes, so that what is built from
        them per event (:func:`gqlsync.rows.evaluate`'s plan) can be kept."""
        if self._distinct is None:
            self._distinct = ({key: entry[0] for key, entry in self.checks.items()},
                              {key: entry[0] for key, entry in self.views.items()})
        return self._distinct

    def distinct_checks(self) -> dict[Hashable, RowFilter]:
        return self.distinct()[0]

    def distinct_views(self) -> dict[Hashable, TrackedView]:
        return self.distinct()[1]

    def candidates(self, *rows: models.Model | None) -> list[S]:
        """The subscriptions a change to these states of one row can reach."""
        if not self.index:
            return list(self.all)
        found: list[S] = list(self.rest)
        for dimension, by_value in self.index.items():
            values = _values_at(rows, dimension)
            if values is None:
                found.extend(sub for subs in by_value.values() for sub in subs)
                continue
            seen: set[S] = set()
            for value in values:
                subs = by_value.get(value)
                if subs:
                    seen.update(subs)
            found.extend(seen)
        return found
