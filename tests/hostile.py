"""Hostile filter values for every lookup a schema's filter input exposes.

The isolation tests subscribe with each of these next to a well-behaved subscriber, on
SQLite and on PostgreSQL. The cases come from the schema itself (every leaf of the filter
input, recursively through relations), so a lookup added to the schema is covered
without touching the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    GraphQLString,
    get_nullable_type,
)

#: strings a database or a regex engine may choke on, or take forever with
HOSTILE_TEXT: list[str] = [
    "(",                      # does not compile
    "^(a+)+$",                # catastrophic backtracking
    "(?P<x>a)",               # Python syntax the database's engine refuses
    "a{99999}",               # a repetition count PostgreSQL refuses
    "[[:alpha:]",             # unterminated class
    "\\",                     # a lone escape
    "%_%",                    # LIKE wildcards
    "a\x00b",                 # NUL: PostgreSQL cannot bind it
    "\ud800",                 # a lone surrogate: not encodable as UTF-8
    "'; DROP TABLE bookstore_book; --",
    "é" * 5000,               # long and multi-byte
    "",
]

NESTING = 60  # NOT { NOT { ... } }: deeper than MAX_FILTER_TERMS allows


def _values(kind: Any) -> list[Any]:
    kind = get_nullable_type(kind)
    if isinstance(kind, GraphQLList):
        item = get_nullable_type(kind.of_type)
        if item is GraphQLString:
            return [HOSTILE_TEXT, [], ["x"] * 5000]
        return [[]]
    if kind is GraphQLString:
        return list(HOSTILE_TEXT)
    if kind is GraphQLBoolean:
        return [True, False]
    return []


def _leaves(
    input_type: GraphQLInputObjectType, seen: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, type) of every leaf lookup, following nested filter inputs once each."""
    for name, field in input_type.fields.items():
        kind = get_nullable_type(field.type)
        if isinstance(kind, GraphQLNonNull):
            kind = kind.of_type
        if isinstance(kind, GraphQLInputObjectType):
            if name in ("AND", "OR", "NOT") or kind.name in seen:
                continue
            for path, leaf in _leaves(kind, (*seen, input_type.name)):
                yield (name, *path), leaf
        else:
            yield (name,), kind


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for name in reversed(path):
        value = {name: value}
    return value  # type: ignore[no-any-return]


def hostile_filters(schema: GraphQLSchema, filter_input: str) -> list[tuple[str, Any]]:
    """(label, filters value) for every leaf lookup of ``filter_input`` and every hostile
    value of its type, plus structural attacks (deep nesting, wide OR)."""
    input_type = schema.get_type(filter_input)
    assert isinstance(input_type, GraphQLInputObjectType), filter_input
    cases: list[tuple[str, Any]] = []
    for path, kind in _leaves(input_type):
        for value in _values(kind):
            cases.append((".".join(path) + f"={value!r:.40}", _nest(path, value)))
    leaf_path, _ = next(p for p in _leaves(input_type) if p[0][-1] == "exact")
    deep: dict[str, Any] = _nest(leaf_path, "x")
    for _ in range(NESTING):
        deep = {"NOT": deep}
    cases.append(("NOT*60", deep))
    wide: dict[str, Any] = _nest(leaf_path, "x")
    for i in range(NESTING):
        wide = {"OR": wide, **_nest(leaf_path, f"v{i}")}
    cases.append(("OR*60", wide))
    return cases
