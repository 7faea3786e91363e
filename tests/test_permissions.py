"""Permissions on every event: a subscriber never receives what the same user's query
would not return, and learns when rows enter or leave what it may see.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission as AuthPermission

import gqlsync
from gqlsync.testing import ClosedError, GraphQLWSClient, login_session, settle
from gqlsync.transport.websocket import CLOSE_FORBIDDEN
from schema_examples.bookstore.models import Book
from schema_examples.chat.models import Message, Room
from tests.permission_schema import application as perm_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

ALL_MESSAGES = "subscription { messageChanged { op id node { id text room { name } } } }"
BOOKS = "subscription { bookChanged { op id node { title } } }"


async def user(name: str) -> Any:
    return await get_user_model().objects.aget(username=name)


async def client_for(name: str, app: Any = perm_app) -> GraphQLWSClient:
    token = gqlsync.make_token(await user(name))
    client = GraphQLWSClient(app, payload={"authorization": f"Bearer {token}"})
    await client.connect()
    return client


def event(payload: dict[str, Any]) -> tuple[str, str]:
    data = payload["data"]["messageChanged"]
    return data["op"], data["node"]["text"]


async def test_a_message_moved_out_of_a_room_is_a_removal_with_its_last_visible_state() -> None:
    bob = await client_for("bob")
    sub = await bob.subscribe(ALL_MESSAGES)
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=general, author=await user("alice"),
                                            text="draft")
    assert event(await sub.next()) == ("CREATED", "draft")
    message.room, message.text = secret, "now secret"
    await sync_to_async(message.save)()
    removed = (await sub.next())["data"]["messageChanged"]
    assert removed["op"] == "DELETED"
    # the state bob could see, not the new text of a room he is not in
    assert removed["node"] == {"id": str(message.pk), "text": "draft",
                               "room": {"name": "general"}}
    message.text = "secret edit"
    await sync_to_async(message.save)()
    await sub.nothing()
    message.room, message.text = general, "public again"
    await sync_to_async(message.save)()
    assert event(await sub.next()) == ("CREATED", "public again")
    await bob.communicator.disconnect()


async def test_leaving_and_joining_a_room_announces_its_messages() -> None:
    bob = await client_for("bob")
    sub = await bob.subscribe(ALL_MESSAGES)
    general = await Room.objects.aget(name="general")
    bob_user = await user("bob")
    await sync_to_async(general.members.remove)(bob_user)
    assert event(await sub.next()) == ("DELETED", "Welcome to #general!")
    await Message.objects.acreate(room=general, author=await user("alice"), text="behind bob")
    await sub.nothing()
    await sync_to_async(general.members.add)(bob_user)
    received = sorted([event(await sub.next()), event(await sub.next())])
    assert received == [("CREATED", "Welcome to #general!"), ("CREATED", "behind bob")]
    await bob.communicator.disconnect()


async def test_a_real_delete_reaches_only_those_who_could_see_the_row() -> None:
    alice, bob = await client_for("alice"), await client_for("bob")
    alice_sub, bob_sub = await alice.subscribe(ALL_MESSAGES), await bob.subscribe(ALL_MESSAGES)
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=secret, author=await user("alice"), text="s")
    assert event(await alice_sub.next()) == ("CREATED", "s")
    await sync_to_async(message.delete)()
    assert event(await alice_sub.next()) == ("DELETED", "s")
    await bob_sub.nothing()
    for c in (alice, bob):
        await c.communicator.disconnect()


@pytest.mark.parametrize("revoke", ["deactivate", "password", "delete"])
async def test_revoked_credentials_close_the_connection_within_a_second(revoke: str) -> None:
    bob = await client_for("bob")
    sub = await bob.subscribe(ALL_MESSAGES)
    bob_user = await user("bob")
    if revoke == "deactivate":
        bob_user.is_active = False
        await sync_to_async(bob_user.save)()
    elif revoke == "password":
        await sync_to_async(bob_user.set_password)("changed")
        await sync_to_async(bob_user.save)()
    else:
        await sync_to_async(bob_user.delete)()
    started = asyncio.get_running_loop().time()
    with pytest.raises(ClosedError) as closed:
        await sub.message(timeout=2)
    assert closed.value.code == CLOSE_FORBIDDEN
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_logout_closes_only_that_sessions_connections() -> None:
    from django.contrib.auth import logout
    from django.test import RequestFactory

    alice_user = await user("alice")

    async def session_client() -> tuple[GraphQLWSClient, Any]:
        session, cookie = await login_session(alice_user)
        client = GraphQLWSClient(perm_app, headers=[cookie])
        await client.connect()
        return client, session

    (laptop, laptop_session), (phone, _) = await session_client(), await session_client()
    laptop_sub, phone_sub = await laptop.subscribe(ALL_MESSAGES), await phone.subscribe(
        ALL_MESSAGES)
    request = RequestFactory().get("/")
    request.session = laptop_session
    request.user = alice_user
    await sync_to_async(logout)(request)
    with pytest.raises(ClosedError) as closed:
        await laptop_sub.message(timeout=2)
    assert closed.value.code == CLOSE_FORBIDDEN
    general = await Room.objects.aget(name="general")
    await Message.objects.acreate(room=general, author=alice_user, text="still here")
    assert event(await phone_sub.next()) == ("CREATED", "still here")
    await phone.communicator.disconnect()


async def test_a_granted_permission_opens_the_rows_and_a_revoked_one_ends_the_stream() -> None:
    bob = await client_for("bob")
    sub = await bob.subscribe(BOOKS)
    message = await sub.message()
    assert message["type"] in ("error", "next")
    assert "bookstore.view_book" in str(message["payload"])

    bob_user = await user("bob")
    view_book = await AuthPermission.objects.aget(codename="view_book")
    await sync_to_async(bob_user.user_permissions.add)(view_book)
    sub = await bob.subscribe(BOOKS)
    await settle()
    from schema_examples.bookstore.models import Author, Book

    lee = await Author.objects.aget(email="lee@child.com")
    await Book.objects.acreate(title="Visible to bob", author=lee)
    assert (await sub.next())["data"]["bookChanged"]["node"]["title"] == "Visible to bob"
    await sync_to_async(bob_user.user_permissions.remove)(view_book)
    ended = await sub.message(timeout=2)
    assert "withdrawn" in str(ended["payload"])
    await bob.communicator.disconnect()


async def test_a_filtered_subscriber_hears_a_row_leave_its_view() -> None:
    """The hub files this subscription under room "general": a message moved to a room
    bob cannot see is found through its previous room, and arrives as DELETED."""
    from django.db.models import Q

    from gqlsync import broker
    from gqlsync.events import Op
    from gqlsync.hub import Subscription, get_hub
    from gqlsync.matching import RowFilter

    bob_user = await user("bob")
    base = Message.objects.all()
    hub = get_hub()
    sub = Subscription("chat.message", broker.model_group("chat.message"),
                       checks=[RowFilter.where(base, Q(room__name="general"))],
                       view_queryset=base.filter(room__members=bob_user))
    await hub.subscribe(sub)
    assert hub.groups[sub.group].index  # filed by value, not scanned
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=general, author=await user("alice"),
                                            text="draft")
    created = await asyncio.wait_for(sub.next(), 2)
    assert (created.op, created.instance.text) == (Op.CREATED, "draft")
    message.room = secret
    await sync_to_async(message.save)()
    removed = await asyncio.wait_for(sub.next(), 2)
    assert (removed.op, removed.instance.room_id) == (Op.DELETED, general.pk)
    await Message.objects.acreate(room=secret, author=await user("alice"), text="unseen")
    await settle()
    assert not sub.queue
    await hub.close()


async def test_a_group_grant_rescopes_open_subscriptions() -> None:
    from django.contrib.auth.models import Group

    bob = await client_for("bob")
    bob_user = await user("bob")
    readers = await Group.objects.acreate(name="readers")
    view_book = await AuthPermission.objects.aget(codename="view_book")
    await sync_to_async(readers.permissions.add)(view_book)
    await sync_to_async(bob_user.groups.add)(readers)
    sub = await bob.subscribe(BOOKS)
    await sync_to_async(readers.permissions.remove)(view_book)
    ended = await sub.message(timeout=2)
    assert ended["type"] == "next"
    assert ended["payload"]["data"] is None
    assert "withdrawn" in str(ended["payload"]["errors"])
    assert (await sub.message(timeout=2))["type"] == "complete"
    await bob.communicator.disconnect()


async def test_field_level_rules_apply_to_every_events_node() -> None:
    """strawberry-django's IsStaff on a field sees the token user (gqlsync puts it in
    scope['user']); staff carol gets the email, bob does not, from the same change."""
    from schema_examples.bookstore.models import Author

    carol, bob = await client_for("carol"), await client_for("bob")
    query = "subscription { authorChanged { op node { name email } } }"
    carol_sub, bob_sub = await carol.subscribe(query), await bob.subscribe(query)
    await settle()
    await Author.objects.acreate(name="New Author", email="new@author.com")
    assert (await carol_sub.next())["data"]["authorChanged"]["node"] == {
        "name": "New Author", "email": "new@author.com"}
    assert (await bob_sub.next())["data"]["authorChanged"]["node"] == {
        "name": "New Author", "email": None}
    for client in (carol, bob):
        await client.communicator.disconnect()


async def test_a_rule_that_shows_a_user_nothing_is_an_empty_stream_not_an_error() -> None:
    from django.db.models import Q

    from gqlsync.hub import Subscription, get_hub
    from gqlsync.matching import TrackedView

    view = TrackedView(Message.objects.filter(Q(pk__in=[])))
    await sync_to_async(view.load)()
    assert view.pks == set()
    assert await sync_to_async(view.transition)(1, False) == (False, False)
    hub = get_hub()
    sub = Subscription("chat.message", "gqlsync.chat.message",
                       view_queryset=Message.objects.none())
    await hub.subscribe(sub)
    general = await Room.objects.aget(name="general")
    await Message.objects.acreate(room=general, author=await user("alice"), text="unseen")
    await settle()
    assert not sub.queue
    await hub.close()


def test_a_removal_never_shows_the_new_value_of_a_field_that_did_not_travel() -> None:
    from gqlsync.events import Event, Op
    from gqlsync.rows import previous_state

    message = Message(id=1, room_id=2, author_id=3, text="new secret text")
    event = Event("chat.message", 1, Op.UPDATED, ("room", "text"), {"room_id": 1})
    previous = previous_state(message, event)
    assert previous.room_id == 1
    assert previous.text is None


async def test_a_types_own_get_queryset_hides_rows_from_its_events_too() -> None:
    from schema_examples.bookstore.models import Author, Book
    from tests.permission_schema import published_application as app

    lee = await Author.objects.acreate(name="Lee", email="lee@example.com")
    ghost = await Author.objects.acreate(name="Ghost", email="ghost@hidden.example")
    async with GraphQLWSClient(app) as client:
        sub = await client.subscribe("subscription { bookChanged { op node { title } } }")
        await settle()
        draft = await Book.objects.acreate(title="Draft one", author=lee)
        await sub.nothing()
        published = await Book.objects.acreate(title="Published", author=lee)
        assert (await sub.next())["data"]["bookChanged"] == {
            "op": "CREATED", "node": {"title": "Published"}}
        # leaving the type's rows is a removal, with the last state the query showed
        published.title = "Draft again"
        await sync_to_async(published.save)()
        assert (await sub.next())["data"]["bookChanged"] == {
            "op": "DELETED", "node": {"title": "Published"}}
        # entering them is a creation
        draft.title = "Out of drafts"
        await sync_to_async(draft.save)()
        assert (await sub.next())["data"]["bookChanged"] == {
            "op": "CREATED", "node": {"title": "Out of drafts"}}
        await published.adelete()  # a hidden row's delete is not news
        await sub.nothing()
        await Book.objects.acreate(title="By a hidden author", author=ghost)
        await sub.nothing()


# ------------------------------------------------------------ refusals name their check
#
# tests/refusal_schema.py: each rule guards a query (Guard), a mutation (authorize or
# Guard) and a subscription (protect). Whoever is refused is told which check failed,
# the same way on all three.

async def _http(app: Any, query: str, variables: dict[str, Any], token: str | None
                ) -> dict[str, Any]:
    import json

    from asgiref.testing import ApplicationCommunicator

    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": "POST", "path": "/graphql/", "raw_path": b"/graphql/",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("testserver", 80), "scheme": "http"}
    communicator = ApplicationCommunicator(app, scope)
    body = json.dumps({"query": query, "variables": variables}).encode()
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(5)
    chunks = []
    while True:
        message = await communicator.receive_output(5)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    assert start["status"] == 200, chunks
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def _refusal(errors: list[dict[str, Any]]) -> tuple[str, str]:
    assert len(errors) == 1, errors
    return errors[0]["extensions"]["code"], errors[0]["message"]


async def _token(name: str) -> str | None:
    return None if name == "anonymous" else gqlsync.make_token(await user(name))


async def _refused_query(app: Any, field: str, name: str) -> tuple[str, str]:
    result = await _http(app, f"{{ {field} {{ id }} }}", {}, await _token(name))
    assert result["data"] is None
    return _refusal(result["errors"])


async def _refused_edit(app: Any, field: str, name: str) -> tuple[str, str]:
    """``name`` edits alice's message in #general (bob may see it, not change it)."""
    welcome = await Message.objects.aget(text="Welcome to #general!")
    result = await _http(app, f'mutation($id: ID!) {{ {field}(id: $id, text: "x") {{ id }} }}',
                         {"id": str(welcome.pk)}, await _token(name))
    assert result["data"] is None
    assert await Message.objects.filter(text="Welcome to #general!").aexists()  # unchanged
    return _refusal(result["errors"])


async def _refused_subscription(app: Any, field: str, name: str) -> tuple[str, str]:
    token = await _token(name)
    client = GraphQLWSClient(app, payload={"authorization": f"Bearer {token}"} if token
                             else None)
    await client.connect()
    try:
        sub = await client.subscribe(f"subscription {{ {field} {{ op }} }}")
        message = await sub.message()
        errors = message["payload"] if message["type"] == "error" else \
            message["payload"]["errors"]
        return _refusal(errors)
    finally:
        await client.communicator.disconnect()


SIGN_IN = ("UNAUTHENTICATED", "You must be signed in.")
NOT_YOURS = ("FORBIDDEN", "You may not change this message.")
NO_SUCH = ("NOT_FOUND", "No such message.")

# (rule's fields, user) -> what the query, the mutation and the subscription answer;
# None: not refused (bob may list and follow his own messages, there are none)
REFUSALS: list[tuple[str, str, str, str, Any, Any, Any]] = [
    ("own", "editOwn", "ownChanged", "anonymous", SIGN_IN, SIGN_IN, SIGN_IN),
    ("own", "editOwn", "ownChanged", "bob", None, NOT_YOURS, None),
    # `message` set before per-check messages: still every has_operation refusal's...
    ("legacy", "editLegacy", "legacyChanged", "anonymous",
     ("UNAUTHENTICATED", "Sign in to see your tasks."),
     ("UNAUTHENTICATED", "Sign in to see your tasks."),
     ("UNAUTHENTICATED", "Sign in to see your tasks.")),
    # ...but no longer what a signed-in user editing another's row is told
    ("legacy", "editLegacy", "legacyChanged", "bob", None, NOT_YOURS, None),
    ("custom", "editCustom", "customChanged", "anonymous",
     ("UNAUTHENTICATED", "Sign in to see your messages."),
     ("UNAUTHENTICATED", "Sign in to see your messages."),
     ("UNAUTHENTICATED", "Sign in to see your messages.")),
    ("custom", "editCustom", "customChanged", "bob", None,
     ("FORBIDDEN", "Only its author may change this message."), None),
    ("books", "renameBook", "bookChanged", "anonymous", SIGN_IN, SIGN_IN, SIGN_IN),
    ("books", "renameBook", "bookChanged", "bob",
     ("FORBIDDEN", "You need the permission bookstore.view_book."),
     ("FORBIDDEN", "You need the permission bookstore.change_book."),
     ("FORBIDDEN", "You need the permission bookstore.view_book.")),
]


@pytest.mark.parametrize(("query", "mutation", "subscription", "name", "on_query",
                          "on_mutation", "on_subscription"), REFUSALS,
                         ids=[f"{r[0]}-{r[3]}" for r in REFUSALS])
async def test_each_refusal_names_the_check_that_failed_on_all_three_operations(
    query: str, mutation: str, subscription: str, name: str,
    on_query: Any, on_mutation: Any, on_subscription: Any,
) -> None:
    from tests.refusal_schema import application as app

    if on_query is None:
        assert "errors" not in await _http(app, f"{{ {query} {{ id }} }}", {}, await _token(name))
    else:
        assert await _refused_query(app, query, name) == on_query
    if mutation == "renameBook":
        book = await Book.objects.afirst()
        assert book is not None
        result = await _http(app, 'mutation($id: ID!) { renameBook(id: $id, title: "x") '
                             "{ id } }", {"id": str(book.pk)}, await _token(name))
        assert _refusal(result["errors"]) == on_mutation
    else:
        assert await _refused_edit(app, mutation, name) == on_mutation
    if on_subscription is None:
        token = await _token(name)
        async with GraphQLWSClient(app, payload={"authorization": f"Bearer {token}"}) as c:
            await (await c.subscribe(f"subscription {{ {subscription} {{ op }} }}")).nothing()
    else:
        assert await _refused_subscription(app, subscription, name) == on_subscription


@pytest.mark.parametrize("name", ["anonymous", "bob"])
async def test_is_staff_refuses_by_sign_in_then_by_staff(name: str) -> None:
    from tests.refusal_schema import application as app

    expected = SIGN_IN if name == "anonymous" else ("FORBIDDEN", "You must be a staff member.")
    result = await _http(app, "{ staffOnly }", {}, await _token(name))
    assert _refusal(result["errors"]) == expected
    assert await _refused_subscription(app, "staffChanged", name) == expected
    assert "errors" not in await _http(app, "{ staffOnly }", {}, await _token("carol"))


async def test_a_check_of_your_own_is_named_by_failed_check() -> None:
    from tests.refusal_schema import application as app

    expected = ("FORBIDDEN", "Join #general first.")  # carol is in no room
    assert await _refused_query(app, "member", "carol") == expected
    assert await _refused_subscription(app, "memberChanged", "carol") == expected
    assert await _refused_query(app, "member", "anonymous") == SIGN_IN
    assert "errors" not in await _http(app, "{ member { id } }", {}, await _token("bob"))


async def test_an_anonymous_list_is_refused_with_guard_and_empty_without() -> None:
    """``protect`` alone filters rows: an anonymous client's list is ``[]``, as with
    strawberry-django's extensions (``fail_silently``). ``Guard`` on the field refuses
    it the way the subscription does."""
    from tests.refusal_schema import application as app

    assert await _http(app, "{ ownUnguarded { id } }", {}, None) == {
        "data": {"ownUnguarded": []}}
    assert await _refused_query(app, "own", "anonymous") == SIGN_IN
    assert await _refused_subscription(app, "ownChanged", "anonymous") == SIGN_IN


async def test_a_withdrawn_permission_ends_the_subscription_with_the_checks_refusal() -> None:
    from tests.refusal_schema import application as app

    bob_user = await user("bob")
    view_book = await AuthPermission.objects.aget(codename="view_book")
    await sync_to_async(bob_user.user_permissions.add)(view_book)
    async with GraphQLWSClient(app, payload={
            "authorization": f"Bearer {gqlsync.make_token(bob_user)}"}) as client:
        sub = await client.subscribe("subscription { bookChanged { op } }")
        await settle()
        await sync_to_async(bob_user.user_permissions.remove)(view_book)
        ended = await sub.message(timeout=2)
        assert ended["type"] == "next"
        assert ended["payload"]["data"] is None
        assert _refusal(ended["payload"]["errors"]) == (
            "FORBIDDEN", "Your permission to this subscription was withdrawn: "
                         "You need the permission bookstore.view_book.")
        assert (await sub.message(timeout=2))["type"] == "complete"


def test_refusal_messages_per_check_and_their_precedence() -> None:
    from django.contrib.auth.models import AnonymousUser

    from gqlsync.permissions import Refusal

    stranger = get_user_model()(pk=99, username="stranger")
    anonymous = AnonymousUser()
    all_of = gqlsync.DjangoPerms(["bookstore.view_book", "bookstore.change_book"],
                                 any_perm=False)
    assert all_of.refusal("perms").message == (
        "You need the permission bookstore.view_book and bookstore.change_book.")
    assert all_of.refuse(anonymous) == Refusal("authenticated", "UNAUTHENTICATED",
                                               "You must be signed in.")

    class Legacy(gqlsync.Permission):
        message = "Braces {stay} as written: {action}."

        def has_operation(self, user: Any) -> bool:
            return False

    refused = Legacy().refuse(stranger)
    assert refused == Refusal("operation", "FORBIDDEN", "Braces {stay} as written: {action}.")
    # messages beat the legacy message; the object check never takes the legacy one
    both = Legacy(messages={"operation": "Not today."})
    assert both.refuse(stranger) == Refusal("operation", "FORBIDDEN", "Not today.")
    assert both.refusal("object", action="delete", model="Book").message == (
        "You may not delete this Book.")
    nobody = gqlsync.Permission()
    assert nobody.refusal("object", action="publish", model="Book").message == (
        "You may not publish this Book.")
    # {model} is the verbose_name, which a team words for its users
    welcome = Message(pk=1, text="hi")
    assert gqlsync.IsStaff().refuse_object(stranger, welcome, "delete") == Refusal(
        "staff", "FORBIDDEN", "You must be a staff member.")
    assert nobody.refusal("not_found", model="message") == Refusal(
        "not_found", "NOT_FOUND", "No such message.")
    # the legacy message is never the answer about one row
    assert both.refusal("not_found", model="book").message == "No such book."
    assert Legacy(messages={"not_found": "Gone."}).refusal("not_found").message == "Gone."
    # an inactive user is refused as one who is not signed in
    inactive = get_user_model()(pk=98, username="gone", is_active=False)
    assert gqlsync.IsStaff().refuse(inactive) == Refusal(
        "authenticated", "UNAUTHENTICATED", "You must be signed in.")
    assert gqlsync.IsStaff().refuse(stranger) == Refusal(
        "staff", "FORBIDDEN", "You must be a staff member.")
    assert gqlsync.AllowAny().refuse(anonymous) is None


def test_the_guides_own_words_example() -> None:
    """docs/examples/refusals/own_words.py, shown in the permissions guide."""
    import importlib.util
    from pathlib import Path

    from django.contrib.auth.models import AnonymousUser

    from gqlsync.permissions import Refusal

    path = Path(__file__).resolve().parents[1] / "docs/examples/refusals/own_words.py"
    spec = importlib.util.spec_from_file_location("gqlsync_docs_refusals_own_words", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    anonymous = AnonymousUser()
    bob = get_user_model().objects.get(username="bob")
    welcome = Message.objects.get(text="Welcome to #general!")  # alice's
    own = example.OwnMessages()
    assert own.refuse(anonymous) == Refusal(
        "authenticated", "UNAUTHENTICATED", "Sign in to see your messages.")
    assert own.refuse(bob) is None
    assert own.refuse_object(bob, welcome, "delete") == Refusal(
        "object", "FORBIDDEN", "Only its author may delete this message.")
    plan = example.PaidPlan()
    assert plan.refuse(bob) == Refusal("plan", "FORBIDDEN", "Live updates need a paid plan.")
    assert plan.refuse(anonymous) == Refusal(
        "authenticated", "UNAUTHENTICATED", "You must be signed in.")
    assert example.editors.refuse(bob) == Refusal("staff", "FORBIDDEN", "Editors only.")
    assert example.readers.refuse(bob) == Refusal(
        "perms", "FORBIDDEN", "Ask an admin for chat.view_message.")


# ------------------------------------------------------------ get_object: no existence oracle

async def test_get_object_answers_a_hidden_row_exactly_as_a_missing_one() -> None:
    """bob may not see alice's messages under ``own``: asking for one by its id gets the
    answer of an id that does not exist (or cannot: "abc"), so he cannot probe which ids
    exist. The refusals that do not depend on the row come first."""
    from tests.refusal_schema import application as app

    welcome = await Message.objects.aget(text="Welcome to #general!")  # alice's
    bob, alice = await _token("bob"), await _token("alice")
    query = "query($id: ID!) { ownMessage(id: $id) { text } }"

    async def answer(id: str, token: str | None, field: str = "ownMessage") -> Any:
        result = await _http(app, query.replace("ownMessage", field), {"id": id}, token)
        assert result["data"] is None
        return _refusal(result["errors"])

    hidden = await answer(str(welcome.pk), bob)
    missing = await answer("987654", bob)
    assert hidden == missing == await answer("abc", bob) == NO_SUCH
    assert await _http(app, query, {"id": str(welcome.pk)}, alice) == {
        "data": {"ownMessage": {"text": "Welcome to #general!"}}}
    assert await answer(str(welcome.pk), None) == SIGN_IN == await answer("987654", None)
    # a legacy message words has_operation's refusals, never the one about a row
    assert await answer(str(welcome.pk), None, "legacyMessage") == (
        "UNAUTHENTICATED", "Sign in to see your tasks.")
    assert await answer(str(welcome.pk), bob, "legacyMessage") == NO_SUCH


@pytest.mark.parametrize("has_object", ["default", "overridden"])
def test_a_refusal_asks_has_operation_once(has_object: str) -> None:
    """A rule may read the database in ``has_operation``: refuse_object and get_object
    ask it once, though has_object and the naming of the check both want it."""
    from types import SimpleNamespace

    from asgiref.sync import async_to_sync
    from django.contrib.auth.models import AnonymousUser
    from django.db.models import Q

    from gqlsync.permissions import Refusal, get_object

    asked: list[Any] = []

    class Counted(gqlsync.Permission):
        def has_operation(self, user: Any) -> bool:
            asked.append(user)
            return bool(user.is_authenticated)

        def visible(self, user: Any) -> Any:
            return Q(author=user.pk) if user.is_authenticated else Q(pk__in=[])

    class CountedOwnEdits(Counted):
        def has_object(self, user: Any, obj: Any, action: str = "view") -> bool:
            if action != "view" and obj.author_id != user.pk:
                return False
            return super().has_object(user, obj, action)

    rule = Counted() if has_object == "default" else CountedOwnEdits()
    bob = get_user_model().objects.get(username="bob")
    welcome = Message.objects.get(text="Welcome to #general!")  # alice's
    for who, expected in ((bob, Refusal("object", *NOT_YOURS)),
                          (AnonymousUser(), Refusal("authenticated", *SIGN_IN))):
        asked.clear()
        assert rule.refuse_object(who, welcome, "change") == expected
        assert asked == [who]

    alice = get_user_model().objects.get(username="alice")
    info: Any = SimpleNamespace(context={"user": alice})
    asked.clear()
    found = async_to_sync(get_object)(info, Message, welcome.pk, "change", rule)
    assert found == welcome
    assert asked == [alice]


def test_message_is_the_main_checks_text_for_code_written_before_messages() -> None:
    """``GraphQLError(rule.message)`` in code written for the shipped rules' old
    ``message`` attribute still gets a text, and a message set the old way still words
    ``has_operation``'s refusals."""
    from django.contrib.auth.models import AnonymousUser

    from gqlsync.permissions import Refusal

    anonymous = AnonymousUser()
    assert gqlsync.IsAuthenticated().message == "You must be signed in."
    assert gqlsync.IsStaff().message == "You must be a staff member."
    assert gqlsync.DjangoPerms("chat.view_message").message == (
        "You need the permission chat.view_message.")
    assert gqlsync.Permission().message == "You do not have permission to do this."
    assert gqlsync.IsStaff(messages={"staff": "Editors only."}).message == "Editors only."
    # reading it changes nothing: an anonymous user is still told to sign in
    staff = gqlsync.IsStaff()
    assert staff.message == "You must be a staff member."
    assert staff.refuse(anonymous) == Refusal("authenticated", *SIGN_IN)

    assigned = gqlsync.IsAuthenticated()
    assigned.message = "Sign in first."  # as old code set it on an instance
    assert assigned.message == "Sign in first."
    assert assigned.refuse(anonymous) == Refusal(
        "authenticated", "UNAUTHENTICATED", "Sign in first.")

    class Subclassed(gqlsync.IsStaff):
        message = "Staff only."  # as old code set it on a class

    assert Subclassed().refuse(anonymous) == Refusal(
        "authenticated", "UNAUTHENTICATED", "Staff only.")
    assert gqlsync.IsStaff().refuse(anonymous) == Refusal("authenticated", *SIGN_IN)


# ------------------------------------------------------------ refusals in the log

async def test_refusals_are_logged_at_info_without_traceback_and_faults_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Strawberry logs every error at ERROR with a traceback; a refusal is an answer,
    not a fault: one line at INFO (dropped at the default WARNING), while a resolver
    that fails is still an ERROR with its traceback."""
    import logging

    from tests.refusal_schema import application as app

    async def records(level: int) -> list[logging.LogRecord]:
        caplog.clear()
        with caplog.at_level(level, logger="strawberry.execution"):
            await _http(app, "{ own { id } }", {}, None)  # refused by Guard
            await _http(app, 'query { ownMessage(id: "1") { id } }', {}, None)  # get_object
            await _refused_subscription(app, "ownChanged", "anonymous")
            # a fault: editOwn fetches the row itself, and it does not exist
            await _http(app, 'mutation { editOwn(id: "987654", text: "x") { id } }', {},
                        await _token("bob"))
        return [r for r in caplog.records if r.name == "strawberry.execution"]

    logged = await records(logging.INFO)
    assert [(r.levelname, r.getMessage()) for r in logged[:3]] == [
        ("INFO", "gqlsync refused own: UNAUTHENTICATED You must be signed in."),
        ("INFO", "gqlsync refused ownMessage: UNAUTHENTICATED You must be signed in."),
        ("INFO", "gqlsync refused the operation: UNAUTHENTICATED You must be signed in."),
    ]
    assert not any(r.exc_info for r in logged[:3])
    assert [(r.levelname, "does not exist" in r.getMessage(), bool(r.exc_info))
            for r in logged[3:]] == [("ERROR", True, True)]

    at_warning = await records(logging.WARNING)
    assert [r.levelname for r in at_warning] == ["ERROR"]
