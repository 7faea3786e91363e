"""One subscriber can never hurt another.

A filter is checked before its subscription is accepted (a refusal is a GraphQL error to
that client), and whatever still fails while an event is evaluated or executed ends the
subscription it belongs to, alone: every other subscription gets all of its events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import strawberry
from asgiref.sync import sync_to_async
from django.db.models import Q
from django.test import override_settings
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from gqlsync import execute
from gqlsync.hub import get_hub
from gqlsync.testing import GraphQLWSClient, Operation, settle
from schema_examples.bookstore.models import Author, Book
from schema_examples.bookstore.types import BookType
from tests.hostile import hostile_filters

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

FILTERED = "subscription($f: BookFilter) { bookChanged(filters: $f) { op node { title } } }"
ALL = "subscription { bookChanged { op id node { title } } }"


async def _write_burst() -> list[tuple[str, str]]:
    """Create, update and delete a book whose title feeds a backtracking pattern."""
    author = await Author.objects.aget(email="lee@child.com")
    book = await Book.objects.acreate(title="a" * 28 + "!", author=author)
    book.title = "aaaa\u00e9 (%_%)"
    await book.asave()
    await book.adelete()
    return [("CREATED", "a" * 28 + "!"), ("UPDATED", "aaaa\u00e9 (%_%)"),
            ("DELETED", "aaaa\u00e9 (%_%)")]


async def _events(op: Operation, count: int) -> list[tuple[str, str]]:
    found = []
    for _ in range(count):
        data = (await op.next(timeout=10))["data"]["bookChanged"]
        found.append((data["op"], data["node"]["title"]))
    return found


async def _error(op: Operation) -> str | None:
    """The subscribe-time refusal of ``op``, or None if it was accepted."""
    try:
        message = await op.message(timeout=0.05)
    except TimeoutError:
        return None
    if message["type"] == "error":
        return str(message["payload"][0]["message"])
    if message["type"] == "next" and message["payload"].get("errors"):
        return str(message["payload"]["errors"][0]["message"])
    raise AssertionError(f"unexpected answer to a subscribe: {message}")


async def test_a_bad_pattern_is_a_graphql_error_at_subscribe(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        bad = await client.subscribe(FILTERED, {"f": {"title": {"regex": "("}}})
        assert "Regular-expression filters" in str(await _error(bad))
        with override_settings(GQLSYNC={"ALLOW_REGEX_FILTERS": True}):
            bad = await client.subscribe(FILTERED, {"f": {"title": {"regex": "("}}})
            assert "Invalid regular expression" in str(await _error(bad))
            good = await client.subscribe(FILTERED, {"f": {"title": {"regex": "^a+!$"}}})
            assert await _error(good) is None
            await settle()
            expected = await _write_burst()
            assert await _events(good, 1) == expected[:1]


async def test_filters_too_large_or_unbindable_are_refused(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        wide = {"title": {"inList": [f"t{i}" for i in range(51)]}}
        assert "too large" in str(await _error(await client.subscribe(FILTERED, {"f": wide})))
        nul = {"title": {"exact": "a\x00b"}}
        assert "NUL" in str(await _error(await client.subscribe(FILTERED, {"f": nul})))
        fine = {"title": {"inList": [f"t{i}" for i in range(40)]}}
        assert await _error(await client.subscribe(FILTERED, {"f": fine})) is None


async def test_every_hostile_filter_leaves_the_others_complete(application: Any) -> None:
    """Every lookup the schema exposes, every hostile value: the well-behaved subscriber
    next to them receives every event, and each hostile one gets an answer."""
    from schema_examples.schema import schema

    cases = hostile_filters(schema._schema, "BookFilter")
    assert len(cases) > 300
    # one for the witness, then 90 subscriptions per connection (the limit is 100)
    clients = [GraphQLWSClient(application) for _ in range(len(cases) // 90 + 2)]
    for client in clients:
        await client.connect()
    witness = await clients[0].subscribe(ALL, settle=0)
    hostile: list[tuple[str, Operation]] = []
    for i, (label, value) in enumerate(cases):
        client = clients[1 + i // 90]
        hostile.append((label, await client.subscribe(FILTERED, {"f": value}, settle=0)))
    await settle()
    refused = {label for label, op in hostile if await _error(op) is not None}
    expected = await _write_burst()
    got = []
    for _ in expected:
        data = (await witness.next(timeout=10))["data"]["bookChanged"]
        got.append((data["op"], data["node"]["title"]))
    assert got == expected
    await settle()
    # every accepted hostile subscription either got events or was ended, alone
    for label, op in hostile:
        if label in refused:
            continue
        received = []
        while True:
            try:
                received.append(await op.message(timeout=0.01))
            except TimeoutError:
                break
        for i, message in enumerate(received):
            assert message["type"] in ("next", "complete"), (label, message)
            if message["type"] == "next" and message["payload"].get("errors"):
                # an error on an accepted subscription is its end, never a stray event
                assert received[i + 1:] == [{"id": op.id, "type": "complete"}], label
    assert any("regex" in label for label in refused)
    assert any(label.startswith("OR*") for label in refused)
    assert any("\\ud800" in label for label in refused)
    for client in clients:
        await client.communicator.disconnect()


@pytest.mark.usefixtures("postgres")
async def test_a_condition_the_database_refuses_ends_only_its_subscription(
    application: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A pattern Python compiles and PostgreSQL refuses passes every check: the event
    that finds it out ends that subscription, with an error, and no other."""
    with override_settings(GQLSYNC={"ALLOW_REGEX_FILTERS": True}):
        async with GraphQLWSClient(application) as client:
            witness = await client.subscribe(ALL)
            same_model = await client.subscribe(
                FILTERED, {"f": {"title": {"startsWith": "a"}}})
            doomed = await client.subscribe(FILTERED, {"f": {"title": {"regex": "(?P<x>a)"}}})
            assert await _error(doomed) is None
            await settle()
            with caplog.at_level(logging.WARNING, logger="gqlsync.hub"):
                expected = await _write_burst()
                assert await _events(witness, 3) == expected
                assert await _events(same_model, 3) == expected
            ended = await doomed.message(timeout=5)
            assert ended["type"] == "next"
            assert "was ended" in ended["payload"]["errors"][0]["message"]
            assert (await doomed.message())["type"] == "complete"
            assert "could not be evaluated" in caplog.text
            assert get_hub().stats["isolated"] == 1
            # the connection goes on: a new subscription on it works
            again = await client.subscribe(ALL)
            await Book.objects.acreate(title="Again", author=await Author.objects.afirst())
            assert (await again.next())["data"]["bookChanged"]["op"] == "CREATED"


async def test_an_execution_that_fails_ends_only_its_subscribers(
    application: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document whose execution raises (a bug in a resolver's serializer, say) ends
    its own subscribers; other documents on the same event are sent as usual."""
    broken = "subscription { bookChanged { op id } }"
    real = execute._run

    async def failing(operation: execute.SharedOperation, root: Any, context: Any) -> str:
        if operation.query == broken:
            raise RuntimeError("serializer bug")
        return await real(operation, root, context)

    monkeypatch.setattr(execute, "_run", failing)
    async with GraphQLWSClient(application) as client:
        doomed = await client.subscribe(broken)
        witness = await client.subscribe(ALL)
        await settle()
        author = await Author.objects.afirst()
        await Book.objects.acreate(title="Executed", author=author)
        assert (await witness.next())["data"]["bookChanged"]["op"] == "CREATED"
        ended = await doomed.message()
        assert "could not be executed" in json.dumps(ended)
        assert (await doomed.message())["type"] == "complete"


@strawberry.type
class _Query:
    ok: bool = True


@strawberry.type
class _PatternSubscription:
    @strawberry.subscription
    async def matching(self, info: Info, pattern: str) -> AsyncGenerator[str, None]:
        """A hand-written resolver that feeds its argument into ``where=``."""
        async for change in gqlsync.listen(info, BookType, where=Q(title__regex=pattern)):
            yield f"{change.op.name} {change.node.title}"


pattern_application = gqlsync.asgi.application(
    strawberry.Schema(query=_Query, subscription=_PatternSubscription))
MATCHING = "subscription($p: String!) { matching(pattern: $p) }"


@pytest.mark.usefixtures("postgres")
async def test_listen_where_conditions_are_isolated_too() -> None:
    """The same holds for hand-written ``listen(where=...)`` resolvers (Strawberry's
    per-operation path): ``a{99999}`` compiles in Python, PostgreSQL refuses it."""
    async with GraphQLWSClient(pattern_application) as client:
        doomed = await client.subscribe(MATCHING, {"p": "a{99999}"})
        fine = await client.subscribe(MATCHING, {"p": "^a"})
        await settle()
        author = await Author.objects.afirst()
        await Book.objects.acreate(title="aardvark", author=author)
        assert (await fine.next())["data"]["matching"] == "CREATED aardvark"
        ended = await doomed.message(timeout=5)
        assert "was ended" in json.dumps(ended)
        await Book.objects.acreate(title="anteater", author=author)
        assert (await fine.next())["data"]["matching"] == "CREATED anteater"


@pytest.mark.usefixtures("postgres")
async def test_the_hub_recovers_when_its_database_connection_dies(application: Any) -> None:
    """A database restart, a pooler or an idle timeout drops the hub's connection: the
    next event reconnects (and no subscription is blamed for it)."""
    import psycopg
    from django.db import connection

    from gqlsync.events import Op

    settings_dict = connection.settings_dict
    author = await Author.objects.afirst()
    assert author is not None
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(ALL)
        await Book.objects.acreate(title="Before", author=author)
        assert (await sub.next())["data"]["bookChanged"]["node"]["title"] == "Before"
        dsn = (f"host={settings_dict['HOST']} port={settings_dict['PORT']} "
               f"user={settings_dict['USER']} dbname={settings_dict['NAME']}")
        def backend_pid() -> int:  # the connection of the thread the hub's queries use
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return int(cursor.fetchone()[0])

        hub_pid = await sync_to_async(backend_pid)()
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (hub_pid,))
            for title in ("After", "And after"):  # written outside the dead connection
                row = other.execute(
                    "INSERT INTO bookstore_book (title, author_id) VALUES (%s, %s) "
                    "RETURNING id", (title, author.pk)).fetchone()
                assert row is not None
                await sync_to_async(gqlsync.notify)("bookstore.book", row[0], Op.CREATED)
                data = (await sub.next())["data"]["bookChanged"]
                assert (data["op"], data["node"]["title"]) == ("CREATED", title)
        hub = get_hub()
        assert hub.stats["isolated"] == 0
        assert hub.stats["errors"] == 0


async def test_distinct_filters_per_model_are_bounded(application: Any) -> None:
    """Each distinct filter is asked on every event of its model: their number is capped
    per process, so many clients together cannot make every event slow."""
    with override_settings(GQLSYNC={"MAX_DISTINCT_FILTERS": 3}):
        async with GraphQLWSClient(application) as client:
            for word in ("a", "b", "c"):
                sub = await client.subscribe(FILTERED, {"f": {"title": {"contains": word}}})
                assert await _error(sub) is None
            refused = await client.subscribe(FILTERED, {"f": {"title": {"contains": "d"}}})
            assert "as many distinct filters" in str(await _error(refused))
            shared = await client.subscribe(FILTERED, {"f": {"title": {"contains": "a"}}})
            exact = await client.subscribe(FILTERED, {"f": {"title": {"exact": "d"}}})
            assert await _error(shared) is None
            assert await _error(exact) is None
            await Book.objects.acreate(title="ad", author=await Author.objects.afirst())
            assert (await shared.next())["data"]["bookChanged"]["node"]["title"] == "ad"
