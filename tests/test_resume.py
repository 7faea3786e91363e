"""A subscription resumed with ``after`` catches up, then goes live, with nothing lost.

The client keeps the ``cursor`` of the last event it folded. After a reconnect it
subscribes with ``after: <that cursor>`` and gets, before anything live, what changed
while it was away, as it stands now: rows it may see as ``CREATED`` (it did not hold
them) or ``UPDATED`` (it did), rows it held and may no longer see as ``DELETED`` carrying
the state it holds. A cursor that cannot be resumed from gets ``RESYNC``: refetch.
(Issue "A subscriber's copy never drifts", items 4 to 6.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from gqlsync.hub import get_hub
from gqlsync.log import Position
from gqlsync.testing import GraphQLWSClient, Operation, login_session, settle
from schema_examples.bookstore.models import Author, Book
from schema_examples.chat.models import Message, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

BOOKS = """subscription($after: String) {
  bookChanged(after: $after) { op id cursor node { title } } }"""
JANETS = """subscription($after: String) {
  bookChanged(after: $after, filters: { author: { email: { exact: "janet@evanovich.com" } } })
  { op id cursor node { title } } }"""
MESSAGES = """subscription($after: String) {
  messageChanged(room: "general", after: $after) { op id cursor node { text } } }"""


def fold(copy: dict[str, str], payload: dict[str, Any], field: str) -> str:
    """Fold one event into a client's copy (id -> title/text); returns its cursor."""
    event = payload["data"][field]
    node = event["node"]
    value = node.get("title", node.get("text"))
    if event["op"] == "DELETED":
        copy.pop(event["id"], None)
    else:
        copy[event["id"]] = value
    return str(event["cursor"])


async def drain(op: Operation, copy: dict[str, str], field: str = "bookChanged",
                ) -> list[tuple[str, str]]:
    """Fold every event that arrives until the stream is quiet; returns (op, value)s."""
    seen = []
    while True:
        try:
            payload = await op.next(timeout=0.5)
        except TimeoutError:
            return seen
        fold(copy, payload, field)
        event = payload["data"][field]
        seen.append((event["op"], event["node"].get("title", event["node"].get("text"))))


async def subscribed(count: int = 1) -> None:
    """Wait until the hub holds ``count`` subscriptions (a hand-written resolver checks
    room membership first, which takes a moment)."""
    hub = get_hub()
    for _ in range(400):
        if hub.subscription_count() >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the subscription did not reach the hub")


async def books() -> dict[str, str]:
    return {str(b.pk): b.title async for b in Book.objects.all()}


async def test_a_resumed_subscription_gets_what_it_missed_then_live_changes(
    application: Any,
) -> None:
    janet = await Author.objects.aget(email="janet@evanovich.com")
    copy = await books()
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS)
        kept = await Book.objects.acreate(title="Kept", author=janet)
        cursor = fold(copy, await sub.next(), "bookChanged")
    # away: a new book, an edit, a delete, and a book made and gone again
    gone = await Book.objects.aget(title="Killing Floor")
    await Book.objects.acreate(title="New while away", author=janet)
    kept.title = "Kept, edited"
    await kept.asave()
    await gone.adelete()
    ephemeral = await Book.objects.acreate(title="Ephemeral", author=janet)
    await ephemeral.adelete()
    await settle()

    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS, {"after": cursor})
        missed = await drain(sub, copy)
        assert sorted(missed) == [("CREATED", "New while away"), ("DELETED", "Killing Floor"),
                                  ("UPDATED", "Kept, edited")]
        assert copy == await books()
        await Book.objects.acreate(title="Live", author=janet)
        assert await drain(sub, copy) == [("CREATED", "Live")]  # once
        assert copy == await books()


async def test_rows_that_left_or_entered_a_filter_while_away(application: Any) -> None:
    janet = await Author.objects.aget(email="janet@evanovich.com")
    lee = await Author.objects.aget(email="lee@child.com")
    copy = {str(b.pk): b.title async for b in Book.objects.filter(author=janet)}
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(JANETS)
        book = await Book.objects.aget(title="One for the Money")
        book.title = "One for the Money (2nd ed.)"
        await book.asave()
        cursor = fold(copy, await sub.next(), "bookChanged")
    book.author, book.title = lee, "Moved to Lee"
    await book.asave()
    joined = await Book.objects.aget(title="Die Trying")
    joined.author = janet
    await joined.asave()
    await settle()

    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(JANETS, {"after": cursor})
        missed = await drain(sub, copy)
    # the moved book leaves with the state the client holds, not "Moved to Lee"
    assert sorted(missed) == [("CREATED", "Die Trying"),
                              ("DELETED", "One for the Money (2nd ed.)")]
    assert copy == {str(b.pk): b.title async for b in Book.objects.filter(author=janet)}


async def test_a_message_moved_where_the_user_cannot_see_it_is_deleted_as_they_saw_it(
    application: Any,
) -> None:
    """Permission views resume exactly too: bob (general, not secret) held the message as
    "hello"; while he was away it was edited, then moved to secret. He gets it DELETED as
    "hello" — never the edit he was not entitled to see."""
    user_model = get_user_model()
    bob = await user_model.objects.aget(username="bob")
    alice = await user_model.objects.aget(username="alice")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    _, cookie = await login_session(bob)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(MESSAGES)
        await subscribed()
        message = await Message.objects.acreate(room=general, author=alice, text="hello")
        payload = await sub.next()
        cursor = payload["data"]["messageChanged"]["cursor"]
    message.text = "secret plans"
    await message.asave()
    message.room = secret
    await message.asave()
    await settle()

    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(MESSAGES, {"after": cursor})
        payload = await sub.next()
        assert payload["data"]["messageChanged"]["op"] == "DELETED"
        assert payload["data"]["messageChanged"]["node"]["text"] == "hello"
        await sub.nothing()


async def resync(op: Operation) -> dict[str, Any]:
    """The RESYNC error the operation ends with (as ``next`` + ``complete``, or ``error``)."""
    message = await op.message()
    errors = (message["payload"]["errors"] if message["type"] == "next"
              else message["payload"])
    assert errors[0]["extensions"]["code"] == "RESYNC", message
    if message["type"] == "next":
        assert (await op.message())["type"] == "complete"
    return dict(errors[0])


async def test_a_cursor_older_than_the_log_keeps_gets_resync(application: Any) -> None:
    janet = await Author.objects.aget(email="janet@evanovich.com")
    with override_settings(GQLSYNC={"LOG_MAX_EVENTS": 3}):
        async with GraphQLWSClient(application) as client:
            sub = await client.subscribe(BOOKS)
            await Book.objects.acreate(title="First", author=janet)
            cursor = (await sub.next())["data"]["bookChanged"]["cursor"]
        for n in range(5):
            await Book.objects.acreate(title=f"Away {n}", author=janet)
        await settle()
        async with GraphQLWSClient(application) as client:
            await resync(await client.subscribe(BOOKS, {"after": cursor}))


@pytest.mark.parametrize("cursor", ["not a cursor", "00000000:1-0"])
async def test_a_cursor_this_server_did_not_issue_gets_resync(
    application: Any, cursor: str,
) -> None:
    async with GraphQLWSClient(application) as client:
        await resync(await client.subscribe(BOOKS, {"after": cursor}))


async def test_a_membership_change_while_away_gets_resync(application: Any) -> None:
    """What bob may see depends on rooms: a room changed while he was away, so the log of
    messages alone cannot tell his copy what to drop; he refetches."""
    user_model = get_user_model()
    bob = await user_model.objects.aget(username="bob")
    alice = await user_model.objects.aget(username="alice")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    _, cookie = await login_session(bob)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(MESSAGES)
        await subscribed()
        await Message.objects.acreate(room=general, author=alice, text="hello")
        cursor = (await sub.next())["data"]["messageChanged"]["cursor"]
    await secret.members.aadd(bob)
    await settle()
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        await resync(await client.subscribe(MESSAGES, {"after": cursor}))


async def test_a_resume_with_nothing_missed_is_quiet_then_live(application: Any) -> None:
    janet = await Author.objects.aget(email="janet@evanovich.com")
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS)
        await Book.objects.acreate(title="Seen", author=janet)
        cursor = (await sub.next())["data"]["bookChanged"]["cursor"]
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS, {"after": cursor})
        await sub.nothing()
        await Book.objects.acreate(title="Next", author=janet)
        payload = await sub.next()
        assert payload["data"]["bookChanged"]["node"]["title"] == "Next"
        assert Position.parse(payload["data"]["bookChanged"]["cursor"]) > Position.parse(cursor)


async def test_changes_the_log_could_not_take_are_a_hole_not_a_silent_gap(
    application: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log refuses an append (Redis unreachable): live subscribers still get the
    event, and a client resuming from before it is told to resync."""
    from gqlsync.log import get_log

    janet = await Author.objects.aget(email="janet@evanovich.com")
    log = get_log()
    assert log is not None
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS)
        await Book.objects.acreate(title="Logged", author=janet)
        cursor = (await sub.next())["data"]["bookChanged"]["cursor"]
    with monkeypatch.context() as patch:
        def refuse(*_: Any) -> list[str]:
            raise ConnectionError("the log is unreachable")

        patch.setattr(log, "append", refuse)
        async with GraphQLWSClient(application) as client:
            live = await client.subscribe(BOOKS)
            await Book.objects.acreate(title="Not logged", author=janet)
            payload = await live.next()  # live subscribers are not punished
            assert payload["data"]["bookChanged"]["node"]["title"] == "Not logged"
    await Book.objects.acreate(title="Logged again", author=janet)
    await settle()
    async with GraphQLWSClient(application) as client:
        await resync(await client.subscribe(BOOKS, {"after": cursor}))


async def test_changes_committed_while_catching_up_arrive_exactly_once(
    application: Any,
) -> None:
    """The seam: writes keep coming while the subscription reads the log. Each row
    arrives once (from the catch-up or live, never both), and the copy is exact."""
    janet = await Author.objects.aget(email="janet@evanovich.com")
    copy = await books()
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS)
        await Book.objects.acreate(title="Before", author=janet)
        cursor = fold(copy, await sub.next(), "bookChanged")
    for n in range(20):
        await Book.objects.acreate(title=f"Away {n}", author=janet)
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS, {"after": cursor}, settle=0)
        for n in range(30):  # racing the catch-up
            await Book.objects.acreate(title=f"Racing {n}", author=janet)
        seen = await drain(sub, copy)
    titles = [title for _, title in seen]
    assert len(titles) == len(set(titles)) == 50
    assert copy == await books()


async def test_subscribers_resuming_from_one_cursor_share_one_catch_up(
    application: Any,
) -> None:
    """After a server restart every client resumes from about the same cursor: the work
    (the log read, the rows, each row's execution) is done once for all of them."""
    janet = await Author.objects.aget(email="janet@evanovich.com")
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOKS)
        await Book.objects.acreate(title="Seen", author=janet)
        cursor = (await sub.next())["data"]["bookChanged"]["cursor"]
    for n in range(5):
        await Book.objects.acreate(title=f"Missed {n}", author=janet)
    await settle()
    hub = get_hub()
    executions = hub.stats["executions"]
    async with GraphQLWSClient(application) as client:
        subs = [await client.subscribe(BOOKS, {"after": cursor}, settle=0) for _ in range(20)]
        for sub in subs:
            seen = [(await sub.next())["data"]["bookChanged"]["node"]["title"]
                    for _ in range(5)]
            assert seen == [f"Missed {n}" for n in range(5)]
            await sub.nothing(0.05)
    assert hub.stats["executions"] - executions == 5
