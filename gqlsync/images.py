"""Images: would a queryset select a row whose column values are these?

The hub often has to judge a row that is not in its table as described: the state a row
had before an update (its *image* at an earlier commit), or the last state of a deleted
row. ``queryset.filter(pk=pk).exists()`` judges the row as stored now, which is the wrong
row; matching the values in Python (:mod:`gqlsync.matching`) re-implements lookups and
cannot follow joins, collations or custom lookups. :func:`holds` lets the database judge
the image itself, for many (queryset, image) pairs in one statement.

Each queryset is compiled as Django would compile ``queryset.exists()``, except that its
base table is replaced by a one-row relation under the same alias::

    SELECT EXISTS(
        SELECT 1 AS "a"
        FROM (SELECT CAST(%s AS bigint) AS "id", CAST(%s AS bigint) AS "room_id", ...)
             "chat_message"
        INNER JOIN "chat_room_members"
                ON ("chat_message"."room_id" = "chat_room_members"."room_id")
        WHERE "chat_room_members"."user_id" = %s
        LIMIT 1
    ), EXISTS(...), ...

Every reference to the base alias (``"chat_message"."col"`` in WHERE, JOIN ... ON,
GROUP BY, HAVING, ``extra(where=...)``) reads the image. Every other table is read as it
is now, and so is every subquery, even one over the same table: Django gives the tables
of a subquery aliases of their own (``U0``...) and a table name in a FROM clause never
means an outer alias. So in ``pk__in=Message.objects.filter(...)`` or
``Exists(Message.objects.filter(room=OuterRef("room")))`` the outer references
(``OuterRef``) take the image's values and the inner query searches the *stored* rows.

Values are the image's concrete fields as Django would save them
(``field.get_db_prep_save``), read from the instance's ``__dict__`` so that no deferred
field is ever loaded from the stored row. A column is SQL NULL when the instance has no
value for it (deferred), or when ``instance.__dict__[KNOWN_FIELDS]`` (set by
:func:`gqlsync.rows.rebuild`) is present and does not name it. A column of a derived
table has no type of its own, so each value is given the column's:

- PostgreSQL: ``CAST(%s AS <column type>)`` (``field.db_type``; a foreign key has its
  target column's type), so that comparisons type-check as against the table. An
  explicit cast rounds ``numeric(p, s)`` as storing would, but truncates a value too long
  for ``varchar(n)`` where storing it would fail.
- SQLite: no CAST to the declared type (``CAST(x AS datetime)`` would turn
  ``'2024-01-01 10:00:00'`` into ``2024``). Instead each value gets the column's
  *affinity*, which is what governs comparisons there, and only through casts that keep
  the value as storing it would: numbers in an INTEGER, NUMERIC or REAL column
  (``CAST(%s AS NUMERIC)``, ``CAST(%s AS REAL)``; a decimal ``'10.50'`` compares as 10.5,
  not as text), anything in a TEXT column (``CAST(%s AS TEXT)``). Text that would not
  become a number when stored (dates, times) is left as it is.
- Both: a column's ``db_collation`` (or its foreign key target's) is applied with
  ``COLLATE``; a derived table's column keeps the collation of its expression.

The answer is False, without SQL, for a queryset that can select nothing (compiling it
raises ``EmptyResultSet``: ``.none()``, ``pk__in=[]``); one that selects everything
(``FullResultSet``: ``exclude(pk__in=[])``) has no WHERE and holds for any image. Up to
:data:`MAX_QUESTIONS_PER_STATEMENT` questions (and, on SQLite, the backend's
``max_query_params``) go in one statement; more questions take more round trips.

The base table holds the image alone: an aggregate over the model's own rows
(``values("room").annotate(n=Count("id")).filter(n__gt=5)``) counts one row, the image.
Aggregates across relations (``annotate(n=Count("room__messages"))``) read those tables.

Not supported, with an error rather than a wrong answer: models with multi-table
inheritance (the image would span several tables), sliced querysets and
``union()``/``intersection()``/``difference()`` (whether a row is selected then depends
on the other rows), and backends other than PostgreSQL and SQLite.

Django internals used: ``Query.exists()``, ``Query.get_initial_alias()``,
``Query.alias_map`` (replacing the base alias's entry with a subclass of
``django.db.models.sql.datastructures.BaseTable`` whose ``as_sql`` renders the one-row
relation), ``Query.get_compiler(...).as_sql()`` and
``SQLCompiler.quote_name_unless_alias``. They are not public API: Django is pinned in
pyproject.toml (``django>=5.2,<5.3``) and tests/test_images.py exercises each of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.datastructures import BaseTable

from gqlsync.matching import KNOWN_FIELDS

__all__ = ["MAX_QUESTIONS_PER_STATEMENT", "holds"]

#: EXISTS columns in one SELECT at most (PostgreSQL allows 1664 columns, SQLite 2000)
MAX_QUESTIONS_PER_STATEMENT = 1000

_VENDORS = ("postgresql", "sqlite")

# SQLite stores text that reads as a number in a numeric column as that number
_SQLITE_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class _Image:
    """The one-row relation's SQL; compared by identity (two images are never equal)."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql = sql
        self.params = params


class _ImageTable(BaseTable):
    """The base table of a query, replaced by ``(SELECT <values>) <alias>``."""

    def __init__(self, table_name: str, alias: str | None, image: _Image) -> None:
        super().__init__(table_name, alias)
        self.image = image

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[Any, ...]]:
        # the alias is written as column references to it are (compiler.compile(Col));
        # Django 6.1 renamed the compiler's quoting (the old name warns)
        quote = getattr(compiler, "quote_name", None) or compiler.quote_name_unless_alias
        alias = quote(self.table_alias or self.table_name)
        return f"({self.image.sql}) {alias}", self.image.params

    def relabeled_clone(self, change_map: dict[str | None, str]) -> _ImageTable:
        alias = change_map.get(self.table_alias, self.table_alias)
        return self.__class__(self.table_name, alias, self.image)

    @property
    def identity(self) -> tuple[Any, ...]:
        return self.__class__, self.table_name, self.table_alias, self.image


def holds(
    questions: Sequence[tuple[QuerySet[Any], models.Model]], using: str | None = None
) -> list[bool]:
    """For each ``(queryset, instance)``: would ``queryset`` select the row whose column
    values are the instance's, if that row were in its table instead of the stored one
    (all other tables as they are now)?

    All questions in one SELECT statement: ``SELECT EXISTS(q0), EXISTS(q1), ...``.
    ``using`` is the database alias; by default the querysets' own (``queryset.db``),
    which must then be the same for all.
    """
    if not questions:
        return []
    alias = _database(questions, using)
    connection = connections[alias]
    if connection.vendor not in _VENDORS:
        raise NotImplementedError(
            f"gqlsync.images supports PostgreSQL and SQLite, not {connection.vendor}"
        )
    answers = [False] * len(questions)
    compiled: list[tuple[int, str, tuple[Any, ...]]] = []
    for index, (queryset, instance) in enumerate(questions):
        try:
            sql, params = _compile(queryset, instance, alias, connection)
        except EmptyResultSet:
            continue  # selects nothing, whatever the row
        compiled.append((index, sql, params))
    for statement in _statements(compiled, connection):
        sql = "SELECT " + ", ".join(f"EXISTS({part})" for _, part, _ in statement)
        values = [p for _, _, part_params in statement for p in part_params]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            row = cursor.fetchone()
        for (index, _, _), answer in zip(statement, row, strict=True):
            answers[index] = bool(answer)
    return answers


def _database(questions: Sequence[tuple[QuerySet[Any], models.Model]], using: str | None) -> str:
    if using is not None:
        return using
    aliases = {queryset.db for queryset, _ in questions}
    if len(aliases) > 1:
        raise ValueError(
            f"the querysets read different databases ({', '.join(sorted(aliases))}): "
            "pass using= or ask each database separately"
        )
    return aliases.pop()


def _compile(
    queryset: QuerySet[Any],
    instance: models.Model,
    using: str,
    connection: BaseDatabaseWrapper,
) -> tuple[str, tuple[Any, ...]]:
    """``queryset.exists()``'s SQL, with the base table replaced by the instance's image."""
    model = queryset.model
    meta = model._meta
    if meta.concrete_model._meta.parents:
        raise TypeError(
            f"{meta.label} uses multi-table inheritance: its rows span several tables, "
            "which an image of one row cannot replace"
        )
    if not isinstance(instance, models.Model) or (
        instance._meta.concrete_model is not meta.concrete_model
    ):
        raise TypeError(f"the image for a {meta.label} queryset must be a {meta.label}, "
                        f"not {type(instance).__name__}")
    if queryset.query.is_sliced:
        raise ValueError("a sliced queryset cannot judge one row: its answer depends on "
                         "the other rows")
    if queryset.query.combinator:
        raise ValueError(f"a {queryset.query.combinator}() queryset cannot be judged "
                         "against an image")
    query = queryset.query.exists()
    query.select_for_update = False
    if not query.alias_map:
        query.get_initial_alias()
    bases = [
        name for name, table in query.alias_map.items()
        if isinstance(table, BaseTable) and table.join_type is None
        and table.table_name == meta.db_table
    ]
    if len(bases) != 1:
        raise ValueError(f"cannot find the base table of the {meta.label} query")
    base = bases[0]
    query.alias_map[base] = _ImageTable(
        meta.db_table, query.alias_map[base].table_alias, _image(instance, model, connection)
    )
    sql, params = query.get_compiler(using=using).as_sql()
    return sql, tuple(params)


def _image(
    instance: models.Model, model: type[models.Model], connection: BaseDatabaseWrapper
) -> _Image:
    known = instance.__dict__.get(KNOWN_FIELDS)
    quote = connection.ops.quote_name
    columns: list[str] = []
    params: list[Any] = []
    for field in model._meta.concrete_fields:
        attname, column = field.attname, field.column
        assert column is not None  # concrete: it has a column
        if attname not in instance.__dict__ or (known is not None and attname not in known):
            value = None  # unknown: never read from the stored row
        else:
            value = field.get_db_prep_save(instance.__dict__[attname], connection)
            if hasattr(value, "as_sql"):
                raise TypeError(f"{model._meta.label}.{attname} holds an expression "
                                f"({value!r}), not a value")
        columns.append(f"{_placeholder(field, value, connection)} AS {quote(column)}")
        params.append(value)
    return _Image("SELECT " + ", ".join(columns), tuple(params))


def _placeholder(field: models.Field[Any, Any], value: Any, connection: BaseDatabaseWrapper) -> str:
    """``%s``, typed (PostgreSQL) or given an affinity (SQLite) as the column is."""
    db_params = field.db_parameters(connection)
    db_type: str | None = db_params.get("type")
    collation: str | None = db_params.get("collation")
    placeholder = "%s"
    if connection.vendor == "postgresql":
        if db_type:
            placeholder = f"CAST(%s AS {db_type})"
    elif value is not None:
        affinity = _sqlite_affinity(db_type)
        number = (isinstance(value, int | float | Decimal)
                  or (isinstance(value, str) and _SQLITE_NUMBER.fullmatch(value) is not None))
        if affinity == "REAL" and number:
            placeholder = "CAST(%s AS REAL)"
        elif affinity in ("INTEGER", "NUMERIC") and number:
            placeholder = "CAST(%s AS NUMERIC)"
        elif affinity == "TEXT" and not isinstance(value, bytes | bytearray | memoryview):
            placeholder = "CAST(%s AS TEXT)"
    if collation:
        placeholder += f" COLLATE {connection.ops.quote_name(collation)}"
    return placeholder


def _sqlite_affinity(declared: str | None) -> str:
    """The affinity of a column declared as ``declared`` (SQLite's rules, in order)."""
    declared = (declared or "").upper()
    if "INT" in declared:
        return "INTEGER"
    if "CHAR" in declared or "CLOB" in declared or "TEXT" in declared:
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if "REAL" in declared or "FLOA" in declared or "DOUB" in declared:
        return "REAL"
    return "NUMERIC"


def _statements(
    compiled: list[tuple[int, str, tuple[Any, ...]]], connection: BaseDatabaseWrapper
) -> list[list[tuple[int, str, tuple[Any, ...]]]]:
    """The compiled questions in as few statements as the backend's limits allow."""
    max_params = connection.features.max_query_params
    statements: list[list[tuple[int, str, tuple[Any, ...]]]] = []
    current: list[tuple[int, str, tuple[Any, ...]]] = []
    count = 0
    for question in compiled:
        n = len(question[2])
        if current and (len(current) >= MAX_QUESTIONS_PER_STATEMENT
                        or (max_params is not None and count + n > max_params)):
            statements.append(current)
            current, count = [], 0
        current.append(question)
        count += n
    if current:
        statements.append(current)
    return statements
