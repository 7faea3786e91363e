"""``manage.py gqlsync``: publish, stats and schema, as scripts and cron jobs run them.

In this process (the in-memory layer, which the hub of the test's event loop shares):
``publish`` reaches a ``listen()`` subscriber with what ``notify()`` would have sent,
every bad input is a ``CommandError`` that says what is wrong and publishes nothing, and
``schema`` prints what ``strawberry export-schema`` prints. Across processes (two demo
servers on channels-redis, the command run as its own ``python -m django`` process):
``stats`` hears from both servers' hubs, and ``publish`` reaches their subscribers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from gqlsync import Op
from gqlsync.testing import GraphQLWSClient, capture_events
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "guides" / "commands.md"


def run(*args: str) -> tuple[str, str]:
    """``call_command("gqlsync", *args)``; its (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("gqlsync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def listen_example() -> ModuleType:
    """``docs/examples/listen.py``: a schema whose ``bookLog`` is a ``listen()`` resolver
    (loaded as ``tests/test_docs.py`` loads it, so both share one module)."""
    import gqlsync.asgi  # noqa: F401  (the example uses it as gqlsync.asgi)

    name = "gqlsync_docs_example_listen"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "docs/examples/listen.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _rename_behind_the_orm(pk: int, title: str) -> None:
    from schema_examples.bookstore.models import Book

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Book._meta.db_table} SET title = %s WHERE id = %s", [title, pk])


# ----------------------------------------------------------------------------- publish


@pytest.mark.django_db(transaction=True)
async def test_publish_reaches_a_listen_subscriber_as_notify_would() -> None:
    from schema_examples.bookstore.models import Author, Book

    author = await sync_to_async(Author.objects.create)(name="Lee Child", email="l@c.example")
    book = await sync_to_async(Book.objects.create)(title="Killing Floor", author=author)
    async with GraphQLWSClient(listen_example().application) as client:
        log = await client.subscribe("subscription { bookLog }")
        await sync_to_async(_rename_behind_the_orm)(book.pk, "Killing Floor (1997)")
        await log.nothing()  # raw SQL: gqlsync saw nothing

        out, _ = await sync_to_async(run)(
            "publish", "bookstore.book", str(book.pk), "--changed", "title")

        assert (await log.next(timeout=5))["data"]["bookLog"] == (
            f"UPDATED book {book.pk} 'Killing Floor (1997)' (title)")
        await log.nothing()
    assert out.strip() == (
        "Published changes to 1 row(s) of bookstore.book (gqlsync.bookstore.book).")


@pytest.mark.django_db(transaction=True)
async def test_a_deleted_row_reaches_subscriptions_without_a_filter_only() -> None:
    """What the guide says of ``--op deleted``: no last state travels, so a filter on
    other fields cannot tell whether the row matched, and is not sent the delete."""
    from schema_examples.asgi import application
    from schema_examples.bookstore.models import Author, Book

    author = await sync_to_async(Author.objects.create)(name="Lee Child", email="l@c.example")
    book = await sync_to_async(Book.objects.create)(title="Killing Floor", author=author)
    async with GraphQLWSClient(application) as client:
        everything = await client.subscribe("subscription { bookChanged { op id } }")
        filtered = await client.subscribe(
            'subscription { bookChanged(filters: {title: {exact: "Killing Floor"}}) { op } }')

        def delete_behind_the_orm() -> None:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {Book._meta.db_table} WHERE id = %s", [book.pk])

        await sync_to_async(delete_behind_the_orm)()
        await sync_to_async(run)("publish", "bookstore.book", str(book.pk), "--op", "deleted")

        assert (await everything.next(timeout=5))["data"]["bookChanged"] == {
            "op": "DELETED", "id": str(book.pk)}
        await filtered.nothing()


@pytest.mark.django_db(transaction=True)
def test_publish_sends_the_events_notify_sends_for_every_form_of_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schema_examples.bookstore.models import Author, Book

    author = Author.objects.create(name="Lee Child", email="l@c.example")
    one, two, three = (Book.objects.create(title=t, author=author) for t in "abc")
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(
        [three.pk, {"pk": str(two.pk), "op": "created"}])))
    with capture_events() as events:
        # a row's group names its row; pks typed as text are the model's keys
        run("publish", f"gqlsync.bookstore.book.{one.pk}", str(two.pk),
            "--changed", "title,author", "--changed", "id")
        run("publish", "gqlsync.bookstore.book", "--data", "-")
        run("publish", "bookstore.Book", "--op", "deleted",
            "--data", json.dumps({"pk": one.pk, "op": "UPDATED", "changed": []}))
    assert [(e.model, e.pk, e.op, e.changed) for e in events] == [
        ("bookstore.book", one.pk, Op.UPDATED, ("title", "author", "id")),
        ("bookstore.book", two.pk, Op.UPDATED, ("title", "author", "id")),
        ("bookstore.book", three.pk, Op.UPDATED, ()),
        ("bookstore.book", two.pk, Op.CREATED, ()),
        ("bookstore.book", one.pk, Op.UPDATED, ()),
    ]
    assert all(isinstance(e.pk, int) for e in events)  # as save() publishes them


@pytest.mark.django_db(transaction=True)
def test_publish_goes_out_at_commit_in_one_batch() -> None:
    from gqlsync import broker
    from schema_examples.bookstore.models import Author, Book

    author = Author.objects.create(name="Lee Child", email="l@c.example")
    books = [Book.objects.create(title=t, author=author) for t in "ab"]
    batches: list[list[Any]] = []
    broker.observers.append(lambda events: batches.append(list(events)))
    try:
        # the same row twice in one run is coalesced, as within one transaction
        run("publish", "bookstore.book", *(str(b.pk) for b in books), str(books[0].pk))
    finally:
        broker.observers.pop()
    assert [[e.pk for e in batch] for batch in batches] == [[books[1].pk, books[0].pk]]


@pytest.mark.django_db(transaction=True)
def test_publish_warns_about_rows_subscribers_will_not_find() -> None:
    from schema_examples.bookstore.models import Author, Book

    author = Author.objects.create(name="Lee Child", email="l@c.example")
    book = Book.objects.create(title="Die Trying", author=author)
    _, err = run("publish", "bookstore.book", str(book.pk), "987654")
    assert ("Warning: no bookstore.book row with pk 987654: subscribers will receive "
            "nothing for it.") in err.splitlines()
    _, err = run("publish", "bookstore.book", str(book.pk), "--op", "DELETED")
    assert f"bookstore.book {book.pk} still exist" in err
    # this test process uses the in-memory layer: the command says it reaches no worker
    assert "in-memory layer" in err
    assert "no ASGI worker will receive" in err


BAD_PUBLISH = [
    (["bookstore.bok", "1"], r"Unknown model or group 'bookstore.bok'; registered models: "
                             r".*bookstore\.book"),
    (["gqlsync.nope", "1"], r"Unknown model or group 'gqlsync.nope'"),
    (["auth.user", "1"], r"auth\.user is a model, but not registered with gqlsync: "
                         r"decorate it with @gqlsync\.register"),
    (["bookstore.book", "1", "--data", "{'pk': 1}"],
     r"--data is not valid JSON: Expecting property name enclosed in double quotes "
     r"\(line 1, column 2\)"),
    (["bookstore.book", "--data", '{"pk": 1, "title": "x"}'],
     r"unknown key\(s\) 'title' .* gqlsync events carry no payload"),
    (["bookstore.book", "--data", '{"op": "UPDATED"}'], r'has no "pk"'),
    (["bookstore.book", "--data", '{"pk": 1, "op": "TOUCHED"}'], r"unknown op 'TOUCHED'"),
    (["bookstore.book", "--data", '{"pk": 1, "changed": "title"}'],
     r'"changed" must be a list of field names'),
    (["bookstore.book", "forty-two"], r"'forty-two' is not a primary key of bookstore\.book"),
    (["bookstore.book", "--data", "[[1]]"], r"\[1\] is not a primary key of bookstore\.book"),
    (["bookstore.book", "1", "--changed", "titel"], r"bookstore\.book has no field 'titel'"),
    (["bookstore.book"], r"Nothing to publish: give primary keys, or --data"),
    (["bookstore.book", "1", "--op", "touched"], r"invalid choice: 'TOUCHED'"),
    (["bookstore.book", "1", "--database", "elsewhere"], r"No database 'elsewhere'"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), BAD_PUBLISH,
                         ids=[" ".join(a) for a, _ in BAD_PUBLISH])
def test_bad_publish_input_is_a_clear_error_and_publishes_nothing(
    args: list[str], message: str
) -> None:
    with pytest.raises(CommandError) as error:
        run("publish", *args)
    assert re.search(message, str(error.value)), str(error.value)


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_until_every_input_is_checked() -> None:
    from schema_examples.bookstore.models import Author, Book

    author = Author.objects.create(name="Lee Child", email="l@c.example")
    one, two = (Book.objects.create(title=t, author=author) for t in "ab")
    with capture_events() as events, pytest.raises(CommandError, match="'x' is not a primary"):
        run("publish", "bookstore.book", str(one.pk), "--data",
            json.dumps([{"pk": two.pk}, {"pk": "x"}]))
    assert events == []


@pytest.mark.django_db
def test_bad_json_on_stdin_says_it_came_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('[{"pk": 1},\n'))
    with pytest.raises(CommandError, match=r"^stdin is not valid JSON: .*\(line 2, column 1\)"):
        run("publish", "bookstore.book", "--data", "-")


#: channels-redis on a port nothing listens on
UNREACHABLE = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("log", [None, "auto"])
@pytest.mark.parametrize("hook_logs", [False, True], ids=["hook-raises", "hook-logs"])
def test_a_publish_the_layer_refuses_is_an_error_not_a_success(
    log: str | None, hook_logs: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write path logs a failed publish instead of raising (a committed write must
    not fail its request); the command, whose only job is the publish, must fail.

    ``hook-logs``: Django logs a failing robust commit hook by its ``__qualname__``,
    which the capture's hook object lacks, so today the failure escapes as an
    AttributeError; with the name given, it is only logged, and must fail all the same.
    """
    from channels.layers import channel_layers
    from django.test import override_settings

    from gqlsync import capture
    from schema_examples.bookstore.models import Author, Book

    if hook_logs:
        init = capture._Flush.__init__

        def named(self: Any) -> None:
            init(self)
            self.__qualname__ = "_Flush"

        monkeypatch.setattr(capture._Flush, "__init__", named)

    author = Author.objects.create(name="Lee Child", email="l@c.example")
    book = Book.objects.create(title="Die Trying", author=author)
    channel_layers.backends.clear()
    with override_settings(CHANNEL_LAYERS=UNREACHABLE, GQLSYNC={"LOG": log}), \
            pytest.raises(CommandError) as error:
        run("publish", "bookstore.book", str(book.pk))
    assert str(error.value).startswith(
        "Publishing failed (is the channel layer reachable?): "), str(error.value)
    assert "Error 111 connecting to 127.0.0.1:1" in str(error.value)


def test_stats_says_when_the_layer_cannot_be_reached() -> None:
    from channels.layers import channel_layers
    from django.test import override_settings

    channel_layers.backends.clear()
    with override_settings(CHANNEL_LAYERS=UNREACHABLE), \
            pytest.raises(CommandError, match=r"^The channel layer could not be reached: "
                                              r"ConnectionError: Error 111"):
        run("stats", "--timeout", "0.2")


def test_a_command_error_exits_non_zero_with_its_message() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-m", "django", "gqlsync", "publish", "bookstore.book", "1",
         "--data", "{oops"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done
    assert "CommandError: --data is not valid JSON: Expecting property name" in done.stderr


# ----------------------------------------------------------------------------- stats


@pytest.mark.django_db(transaction=True)
async def test_stats_hears_this_process_hub_and_says_only_it_can_answer() -> None:
    from schema_examples.asgi import application

    async with GraphQLWSClient(application) as client:
        await client.subscribe("subscription { bookChanged { op id } }")
        await client.subscribe("subscription { bookChanged { id } }")
        out, err = await sync_to_async(run)("stats", "--json", "--timeout", "0.3")
        table, _ = await sync_to_async(run)("stats", "--timeout", "0.3")
    report = json.loads(out)
    assert report["cross_process"] is False
    assert report["layer"] == "channels.layers.InMemoryChannelLayer"
    [hub] = report["hubs"]
    assert (hub["pid"], hub["connections"], hub["subscriptions"], hub["groups"]) == (
        os.getpid(), 1, 2, 1)
    assert report["total"]["hubs"] == 1
    assert report["total"]["subscriptions"] == 2
    assert "only a hub running in this process can answer" in err
    assert "channels-redis" in err
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["HOST", "PID", "CONNECTIONS", "USERS", "SUBSCRIPTIONS"]
    assert lines[1].split()[1:5] == [str(os.getpid()), "1", "0", "2"]
    assert lines[2].startswith("TOTAL (1 hub) ")


async def test_stats_without_a_hub_says_no_hub_answered() -> None:
    out, _ = await sync_to_async(run)("stats", "--timeout", "0.2")
    assert out.startswith("No hub answered within 0.2 s")
    with pytest.raises(CommandError, match="--timeout must be more than 0"):
        run("stats", "--timeout", "0")


@pytest.mark.django_db(transaction=True)
async def test_a_hub_leaves_the_control_group_when_it_closes() -> None:
    from gqlsync import control
    from gqlsync.hub import get_hub
    from schema_examples.asgi import application

    async with GraphQLWSClient(application) as client:
        await client.subscribe("subscription { bookChanged { id } }")
        hub = get_hub()
        channel = hub.channel
        assert channel in hub.layer.groups[control.group()]
    assert len(await control.ask(0.2)) == 1  # no subscription left: it still answers
    await hub.close()
    assert channel not in hub.layer.groups.get(control.group(), {})
    assert await control.ask(0.2) == []


@pytest.mark.django_db(transaction=True)
async def test_a_hub_answers_again_after_the_layer_forgot_its_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted Redis forgets every group: the hub rejoins the control group with
    its data groups, so ``stats`` hears it again."""
    from gqlsync import control
    from gqlsync.hub import get_hub
    from schema_examples.asgi import application

    async with GraphQLWSClient(application) as client:
        await client.subscribe("subscription { bookChanged { id } }")
        hub = get_hub()
        layer = hub.layer
        receive = layer.receive
        outages = hub.stats["outages"]

        async def restarting(channel: str) -> Any:
            if hub.stats["outages"] == outages:
                layer.groups.clear()  # what a restarted Redis remembers
                raise ConnectionError("Redis went away")
            return await receive(channel)

        monkeypatch.setattr(layer, "receive", restarting)
        await layer.send(hub.channel, {"type": "wake.up"})  # the hub's next read fails
        assert await control.ask(0.2) == []
        for _ in range(50):
            if control.group() in layer.groups:
                break
            await asyncio.sleep(0.05)
        [answer] = await control.ask(0.2)
    assert answer["outages"] == outages + 1
    assert answer["subscriptions"] == 1


# ----------------------------------------------------------------------------- schema


@pytest.fixture
def demo_schema() -> Any:
    from schema_examples.schema import schema

    return schema


def test_schema_prints_what_strawberry_export_schema_prints(
    demo_schema: Any, tmp_path: Path
) -> None:
    from strawberry.printer import print_schema

    # strawberry export-schema: print(print_schema(schema)), or to --output with a "\n"
    expected = print_schema(demo_schema)
    assert expected == str(demo_schema)
    assert "type Subscription {" in expected
    for selector in ("schema_examples.schema:schema", "schema_examples.schema",
                     "schema_examples.schema.schema"):
        out, _ = run("schema", "--schema", selector)
        assert out == expected + "\n", selector
    target = tmp_path / "schema.graphql"
    out, _ = run("schema", "--schema", "schema_examples.schema", "--out", str(target))
    assert target.read_text(encoding="utf-8") == expected + "\n"
    assert out == f"Schema exported to {target}\n"


def schema_factory() -> Any:
    """A callable in place of the schema, which strawberry export-schema accepts too."""
    from schema_examples.schema import schema

    return schema


def test_schema_accepts_a_factory(demo_schema: Any) -> None:
    out, _ = run("schema", "--schema", "tests.test_commands:schema_factory")
    assert out == str(demo_schema) + "\n"


@pytest.mark.parametrize(("args", "message"), [
    ([], r"Which schema\? Give --schema module:symbol"),
    (["--schema", "schema_examples.nowhere:schema"],
     r"No schema at 'schema_examples.nowhere:schema': no module 'schema_examples.nowhere'"),
    (["--schema", "schema_examples.schema:nothing"],
     r"schema_examples\.schema has no 'nothing'"),
    (["--schema", "schema_examples.schema:Query"], r"is the class Query, not a strawberry"),
    (["--schema", "schema_examples.settings:DEBUG"], r"is a bool, not a strawberry\.Schema"),
    (["--schema", "tests.test_commands:_broken_factory"],
     r"Calling tests\.test_commands:_broken_factory failed: RuntimeError: no schema today"),
])
def test_bad_schema_paths_are_clear_errors(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as error:
        run("schema", *args)
    assert re.search(message, str(error.value)), str(error.value)


def _broken_factory() -> Any:
    raise RuntimeError("no schema today")


# ----------------------------------------------------------------------------- the guide


def test_every_command_the_guide_shows_is_one_the_command_accepts() -> None:
    from gqlsync.management.commands.gqlsync import Command

    shown = re.findall(r"python manage\.py gqlsync ([^|<>\n]+)", PAGE.read_text("utf-8"))
    subcommands = {shlex.split(line)[0] for line in shown}
    assert subcommands == {"publish", "stats", "schema"}, shown
    parser = Command().create_parser("manage.py", "gqlsync")
    for line in shown:
        parser.parse_args(shlex.split(line))  # raises CommandError on an unknown option


# ----------------------------------------------------------------------------- across processes


class Servers:
    """Two demo servers on one SQLite file and one Redis, and how to run a command as
    a third process configured as they are (a cron job on the same deployment)."""

    def __init__(self, tmp: Path) -> None:
        from tests.e2e.conftest import start_server

        self.db = tmp / "shared.sqlite3"
        self.env = {"REDIS_URL": "redis://127.0.0.1:6379/0",
                    "GQLSYNC_REDIS_PREFIX": f"gqlsync-cmd-{uuid.uuid4().hex[:8]}"}
        self.a = start_server(tmp, self.db, self.env)
        self.b = start_server(tmp, self.db, self.env)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(self.env, DJANGO_SETTINGS_MODULE="schema_examples.settings",
                   GQLSYNC_DEMO_DB=str(self.db))
        done = subprocess.run([sys.executable, "-m", "django", "gqlsync", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done
        return done


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    from tests.e2e.conftest import stop_server

    require_service("Redis", "127.0.0.1", 6379)
    pair = Servers(tmp_path_factory.mktemp("commands"))
    yield pair
    stop_server(pair.a)
    stop_server(pair.b)


async def _socket(url: str, *queries: str) -> Any:
    import websockets

    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    for number, query in enumerate(queries, 1):
        await ws.send(json.dumps({"id": str(number), "type": "subscribe",
                                  "payload": {"query": query}}))
    return ws


async def _next(ws: Any) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "next", message
    data: dict[str, Any] = message["payload"]["data"]
    return data


def _create_book(servers: Servers, title: str) -> int:
    result = servers.a.graphql(
        'mutation($t: String!) { createBook(title: $t, authorEmail: "lee@child.com") { id } }',
        {"t": title})
    assert not result.get("errors"), result
    return int(result["data"]["createBook"]["id"])


@pytest.mark.e2e
@pytest.mark.redis
async def test_stats_hears_every_server_hub_across_processes(servers: Servers) -> None:
    from tests.e2e.conftest import wait_subscriptions_exactly

    a, b = servers.a, servers.b
    on_a = await _socket(a.ws_url, "subscription { bookChanged { id } }")
    on_b = await _socket(b.ws_url, "subscription { bookChanged { id } }",
                         "subscription { bookChanged { op } }")
    try:
        await asyncio.to_thread(wait_subscriptions_exactly, a, 1)
        await asyncio.to_thread(wait_subscriptions_exactly, b, 2)
        await asyncio.to_thread(_create_book, servers, "Hard Eight")
        await _next(on_a)
        await _next(on_b)
        await _next(on_b)
        direct = {a.process.pid: a.stats(), b.process.pid: b.stats()}

        done = await asyncio.to_thread(servers.command, "stats", "--json", "--timeout", "2")
        table = await asyncio.to_thread(servers.command, "stats", "--timeout", "1.5")
    finally:
        await on_a.close()
        await on_b.close()
    report = json.loads(done.stdout)
    assert report["cross_process"] is True
    assert report["layer"] == "channels_redis.core.RedisChannelLayer"
    assert done.stderr == ""  # no in-memory warning
    hubs = {hub["pid"]: hub for hub in report["hubs"]}
    assert set(hubs) == set(direct)  # both servers answered, and nothing else did
    assert {pid: (h["connections"], h["subscriptions"]) for pid, h in hubs.items()} == {
        a.process.pid: (1, 1), b.process.pid: (1, 2)}
    for pid, hub in hubs.items():
        assert hub["events"] == direct[pid]["events"] >= 1
        assert hub["deliveries"] == direct[pid]["deliveries"]
        assert hub["groups"] == direct[pid]["groups"] == 1
    assert report["total"]["hubs"] == 2
    assert report["total"]["subscriptions"] == 3
    assert report["total"]["deliveries"] == sum(d["deliveries"] for d in direct.values())
    rows = {line.split()[1]: line.split() for line in table.stdout.splitlines()[1:-1]}
    assert set(rows) == {str(pid) for pid in direct}
    assert table.stdout.splitlines()[-1].startswith("TOTAL (2 hubs)")


@pytest.mark.e2e
@pytest.mark.redis
async def test_publish_from_another_process_reaches_every_server_subscriber(
    servers: Servers,
) -> None:
    query = "subscription { bookChanged { op id node { title } } }"
    on_a, on_b = await _socket(servers.a.ws_url, query), await _socket(servers.b.ws_url, query)
    try:
        from tests.e2e.conftest import wait_subscriptions_exactly

        await asyncio.to_thread(wait_subscriptions_exactly, servers.a, 1)
        await asyncio.to_thread(wait_subscriptions_exactly, servers.b, 1)
        pk = await asyncio.to_thread(_create_book, servers, "To the Nines")
        for ws in (on_a, on_b):
            assert (await _next(ws))["bookChanged"]["op"] == "CREATED"
        # another program writes behind the ORM's back, then a script announces it
        with sqlite3.connect(servers.db, timeout=20) as db:
            db.execute("UPDATE bookstore_book SET title = ? WHERE id = ?", ("Ten Big Ones", pk))

        done = await asyncio.to_thread(
            servers.command, "publish", "bookstore.book", str(pk), "--changed", "title")

        assert done.stderr == ""
        for ws in (on_a, on_b):
            assert (await _next(ws))["bookChanged"] == {
                "op": "UPDATED", "id": str(pk), "node": {"title": "Ten Big Ones"}}
    finally:
        await on_a.close()
        await on_b.close()
