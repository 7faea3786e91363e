"""Exact transitions for filters, as for permission views.

A client folding the events of a filtered subscription (``CREATED``/``UPDATED`` upsert,
``DELETED`` removes) must hold what the same filtered query returns: a row that starts
matching the filter arrives as ``CREATED``, one that stops matching as ``DELETED``
carrying its last matching state. (Issue "A subscriber's copy never drifts", item 1.)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
import strawberry
from django.db.models import Q
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from gqlsync.testing import GraphQLWSClient, Operation, settle
from schema_examples.bookstore.models import Author, Book
from schema_examples.bookstore.types import BookType

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

BY_EMAIL = """subscription($email: String!) {
  bookChanged(filters: { author: { email: { exact: $email } } }) { op id node { title } } }"""
BY_TITLE = """subscription($prefix: String!) {
  bookChanged(filters: { title: { startsWith: $prefix } }) { op id node { title } } }"""


def _event(payload: dict[str, Any], field: str = "bookChanged") -> tuple[str, str]:
    data = payload["data"][field]
    return data["op"], data["node"]["title"]


async def _authors() -> tuple[Author, Author]:
    return (await Author.objects.aget(email="janet@evanovich.com"),
            await Author.objects.aget(email="lee@child.com"))


async def test_a_row_moved_out_of_a_filter_is_deleted_and_back_in_is_created(
    application: Any,
) -> None:
    janet, lee = await _authors()
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BY_EMAIL, {"email": "janet@evanovich.com"})
        book = await Book.objects.acreate(title="One for the Money", author=janet)
        assert _event(await sub.next()) == ("CREATED", "One for the Money")
        book.author = lee
        book.title = "Moved"
        await book.asave()
        # its last state that matched the filter, not the new one
        assert _event(await sub.next()) == ("DELETED", "One for the Money")
        book.title = "Still Lee's"
        await book.asave()
        await sub.nothing()
        book.author = janet
        await book.asave()
        assert _event(await sub.next()) == ("CREATED", "Still Lee's")


async def test_a_change_that_does_not_touch_the_filter_stays_an_update(
    application: Any,
) -> None:
    janet, _ = await _authors()
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BY_TITLE, {"prefix": "Two"})
        book = await Book.objects.acreate(title="Two for the Dough", author=janet)
        assert _event(await sub.next()) == ("CREATED", "Two for the Dough")
        book.title = "Two for the Show"
        await book.asave()
        assert _event(await sub.next()) == ("UPDATED", "Two for the Show")
        book.title = "Three to Get Deadly"
        await book.asave()
        assert _event(await sub.next()) == ("DELETED", "Two for the Show")
        book.title = "Two again"
        await book.asave()
        assert _event(await sub.next()) == ("CREATED", "Two again")


async def test_a_queryset_update_moves_rows_in_and_out(application: Any) -> None:
    janet, lee = await _authors()
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BY_EMAIL, {"email": "lee@child.com"})
        book = await Book.objects.acreate(title="Tripwire", author=janet)
        await settle()
        await Book.objects.filter(pk=book.pk).aupdate(author=lee)
        assert _event(await sub.next()) == ("CREATED", "Tripwire")
        await Book.objects.filter(pk=book.pk).aupdate(author=janet)
        assert _event(await sub.next()) == ("DELETED", "Tripwire")


@strawberry.type
class _Query:
    ok: bool = True


@strawberry.type
class _Listening:
    @strawberry.subscription
    async def titled(self, info: Info, prefix: str) -> AsyncGenerator[str, None]:
        async for change in gqlsync.listen(info, BookType, where=Q(title__startswith=prefix)):
            yield f"{change.op.name} {change.node.title}"


listening = gqlsync.asgi.application(strawberry.Schema(query=_Query, subscription=_Listening))


async def test_listen_where_has_the_same_transitions() -> None:
    janet, _ = await _authors()
    async with GraphQLWSClient(listening) as client:
        sub: Operation = await client.subscribe(
            "subscription($p: String!) { titled(prefix: $p) }", {"p": "Hot"})
        book = await Book.objects.acreate(title="Hot Six", author=janet)
        assert (await sub.next())["data"]["titled"] == "CREATED Hot Six"
        book.title = "Cold Seven"
        await book.asave()
        assert (await sub.next())["data"]["titled"] == "DELETED Hot Six"
        book.title = "Hot Eight"
        await book.asave()
        assert (await sub.next())["data"]["titled"] == "CREATED Hot Eight"
