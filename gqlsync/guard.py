"""Guard: what one subscriber's filter may cost everyone else, checked at subscribe time.

A query's filter runs once. A subscription's runs on *every* change to its model, in the
database (an ``EXISTS`` per distinct filter) and, for deletes, in Python, on the worker
that every other subscriber of the process shares. So before a subscription is accepted
its filter is checked here, and a refusal is a GraphQL error (``BAD_USER_INPUT``) to that
client alone:

- **Regular expressions are off** (``ALLOW_REGEX_FILTERS = False``). Django's ``regex``
  lookups run a backtracking engine (Python's ``re`` on SQLite and for deletes, the
  database's own elsewhere): ``^(a+)+$`` against a 30-character title takes seconds and
  each character doubles it. No pattern can be proven linear in both engines, so a
  project that trusts its subscribers turns them on; a pattern must then compile.
- **Size**: at most ``MAX_FILTER_TERMS`` terms, counting every comparison, every value of
  an ``inList`` and every ``AND``/``OR``/``NOT`` node (nesting costs like breadth).
- **Values the database cannot take**: a text value with a NUL character (PostgreSQL
  refuses to bind it) or a lone surrogate (not encodable as UTF-8).

With these, the per-event work of one subscription is bounded: one ``EXISTS`` over at
most ``MAX_FILTER_TERMS`` comparisons, each an equality, range, ``IS NULL`` or ``LIKE``
with an escaped, wildcard-free pattern: linear in the row's values and the filter's
size. Whatever still fails while an event is evaluated (a database error no check here
foresaw) ends that subscription alone (see :meth:`gqlsync.hub.Hub._fail`).

``listen(where=...)`` conditions are the application's own code: they are checked for
values the database cannot take and patterns that do not compile, not for size or for
regular expressions.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from django.db.models.constants import LOOKUP_SEP
from graphql import GraphQLError

from gqlsync.conf import get_settings

_REGEX_LOOKUPS = frozenset({"regex", "iregex"})


def _refuse(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def _text_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [v for v in value if isinstance(v, str)]
    return []


class _Walk:
    def __init__(self, *, trusted: bool) -> None:
        settings = get_settings()
        self.trusted = trusted
        self.regex = trusted or settings["ALLOW_REGEX_FILTERS"]
        self.budget = settings["MAX_FILTER_TERMS"]
        self.terms = 0

    def count(self, n: int) -> None:
        self.terms += n
        if not self.trusted and self.terms > self.budget:
            raise _refuse(
                f"This filter is too large for a subscription: at most {self.budget} terms "
                "(comparisons, list values and AND/OR/NOT nodes)."
            )

    def node(self, q: Q) -> None:
        self.count(1)
        for child in q.children:
            if isinstance(child, Q):
                self.node(child)
            elif isinstance(child, tuple) and len(child) == 2:
                self.leaf(str(child[0]), child[1])
            else:
                self.count(1)

    def leaf(self, path: str, value: Any) -> None:
        lookup = path.rsplit(LOOKUP_SEP, 1)[-1]
        many = isinstance(value, (list, tuple, set, frozenset))
        self.count(max(1, len(value)) if many else 1)
        for text in _text_values(value):
            if "\x00" in text:
                raise _refuse("Filter values cannot contain NUL (\\u0000) characters.")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no database can bind it
                raise _refuse("Filter values must be valid Unicode text.") from None
        if lookup in _REGEX_LOOKUPS:
            if not self.regex:
                raise _refuse(
                    "Regular-expression filters (regex, iRegex) are turned off for "
                    "subscriptions: use exact, contains, startsWith or inList."
                )
            for text in _text_values(value):
                try:
                    re.compile(text)
                except (re.error, RecursionError, OverflowError) as error:
                    raise _refuse(f"Invalid regular expression {text[:80]!r}: {error}.") \
                        from None


def check_filter(q: Q | None, *, trusted: bool = False) -> None:
    """Refuse a subscription's filter that could hurt other subscribers (see the module
    docstring); ``trusted`` for the application's own ``where=`` conditions."""
    if q is None:
        return
    _Walk(trusted=trusted).node(q)


__all__ = ["check_filter"]
