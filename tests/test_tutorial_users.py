"""Tutorial, part 2 (docs/tutorial-users.md): per-user data, one rule everywhere.

Every code block of the page is a file (the block is preceded by ``<!-- <its path> -->``
and must equal it): the demo's ``schema_examples/chat/models.py``, which the page builds
on, and the files of ``docs/examples/tutorial_users/``, every one of which runs here:

- ``schema.py``: the rule and the query, mutations and subscription it guards, served
  by the real ASGI application (``gqlsync.asgi.application``) and driven for the three
  kinds of user the page describes: alice (a member of #general and #secret, the author
  of their messages), bob (a member of #general only) and an anonymous client; bob
  cannot tell a message he may not see from one that does not exist;
- ``create_user.py``: run as the shell would run it; its token signs dana in;
- ``refused.json``: the HTTP answer bob gets, exactly;
- ``client.mjs`` and ``query.sh``: against the schema under uvicorn, on a real port,
  with node (the npm clients of ``tests/e2e/js``) and curl.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model

import gqlsync
import gqlsync.asgi
from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.chat.models import Message
from tests.conftest import CI

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "tutorial-users.md"
EXAMPLES = ROOT / "docs" / "examples" / "tutorial_users"
JS_DIR = ROOT / "tests" / "e2e" / "js"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]


def _load(name: str) -> ModuleType:
    module_name = f"gqlsync_docs_tutorial_users_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


tutorial = _load("schema")
application = gqlsync.asgi.application(tutorial.schema)

MESSAGES = "{ messages { text room { name } } }"
EDIT = 'mutation($id: ID!, $text: String!) { editMessage(id: $id, text: $text) { text } }'
CHANGED = "subscription { messageChanged { op node { text room { name } } } }"


# ------------------------------------------------------------------------ the app, in-process

async def http(query: str, variables: dict[str, Any] | None = None,
               token: str | None = None) -> dict[str, Any]:
    """POST a GraphQL request to the ASGI application; its JSON answer."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "method": "POST", "path": "/graphql/", "raw_path": b"/graphql/",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("testserver", 80), "scheme": "http"}
    communicator = ApplicationCommunicator(application, scope)
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
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


async def token_of(name: str) -> str | None:
    if name == "anonymous":
        return None
    return gqlsync.make_token(await get_user_model().objects.aget(username=name))


def ws_client(token: str | None) -> GraphQLWSClient:
    return GraphQLWSClient(application,
                           payload={"authorization": f"Bearer {token}"} if token else None)


def refusal(errors: list[dict[str, Any]]) -> tuple[str, str]:
    assert len(errors) == 1, errors
    return errors[0]["extensions"]["code"], errors[0]["message"]


async def edit(text: str, new_text: str, token: str | None) -> dict[str, Any]:
    message = await Message.objects.aget(text=text)
    return await http(EDIT, {"id": str(message.pk), "text": new_text}, token)


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["room"]["name"], m["text"]) for m in result["data"]["messages"]]


@pytest.fixture
def past_the_seed(seeded: None) -> None:
    """Move the replay log's head past the seed. The seed writes its rooms (what the rule
    ``depends_on``) in the very millisecond the head is then at, and a subscription
    resuming from a cursor of the millisecond its view changed in is told to refetch
    (``RESYNC``: other streams are compared by time). A change made later, elsewhere,
    moves the head on, as any running site's does."""
    from schema_examples.bookstore.models import Author

    time.sleep(0.005)
    Author.objects.create(name="Not in the chat", email="elsewhere@example.com")


# ------------------------------------------------------------------------ the three users

#: what the page's table says each user gets (checked against the page below)
SIGN_IN = ("UNAUTHENTICATED", "You must be signed in.")
NOT_YOURS = ("FORBIDDEN", "You may not change this message.")
NO_SUCH = ("NOT_FOUND", "No such message.")


async def test_alice_reads_both_her_rooms_edits_her_message_and_hears_of_it() -> None:
    token = await token_of("alice")
    assert rows(await http(MESSAGES, token=token)) == [
        ("general", "Welcome to #general!"), ("secret", "Only alice can read this.")]
    async with ws_client(token) as client:
        changes = await client.subscribe(CHANGED)
        await settle()
        for text, room in (("Welcome to #general!", "general"),
                           ("Only alice can read this.", "secret")):
            edited = await edit(text, f"{text} (edited)", token)
            assert edited == {"data": {"editMessage": {"text": f"{text} (edited)"}}}
            assert (await changes.next())["data"]["messageChanged"] == {
                "op": "UPDATED", "node": {"text": f"{text} (edited)", "room": {"name": room}}}


async def test_bob_reads_general_only_may_not_edit_alices_message_hears_general_only() -> None:
    alice, bob = await token_of("alice"), await token_of("bob")
    assert rows(await http(MESSAGES, token=bob)) == [("general", "Welcome to #general!")]
    # a message he can read but did not write: not his to change
    refused = await edit("Welcome to #general!", "bob was here", bob)
    assert refused["data"] is None
    assert refusal(refused["errors"]) == NOT_YOURS
    # one he cannot read is answered as one that does not exist: no id tells him more
    hidden = await edit("Only alice can read this.", "bob was here", bob)
    missing = await http(EDIT, {"id": "987654", "text": "bob was here"}, bob)
    malformed = await http(EDIT, {"id": "abc", "text": "bob was here"}, bob)
    assert hidden == missing == malformed
    assert hidden["data"] is None
    assert refusal(hidden["errors"]) == NO_SUCH
    assert not await Message.objects.filter(text="bob was here").aexists()
    async with ws_client(bob) as client:
        changes = await client.subscribe(CHANGED)
        await settle()
        await edit("Only alice can read this.", "secret edit", alice)
        await changes.nothing()
        await edit("Welcome to #general!", "Welcome, bob!", alice)
        assert (await changes.next())["data"]["messageChanged"] == {
            "op": "UPDATED", "node": {"text": "Welcome, bob!", "room": {"name": "general"}}}


async def test_an_anonymous_client_is_told_to_sign_in_by_all_three() -> None:
    listed = await http(MESSAGES)
    assert listed["data"] is None
    assert refusal(listed["errors"]) == SIGN_IN
    edited = await edit("Welcome to #general!", "anonymous was here", None)
    assert refusal(edited["errors"]) == SIGN_IN
    async with ws_client(None) as client:
        changes = await client.subscribe(CHANGED)
        message = await changes.message()
        errors = message["payload"] if message["type"] == "error" else \
            message["payload"]["errors"]
        assert refusal(errors) == SIGN_IN


async def test_a_member_who_joins_a_room_starts_hearing_of_it() -> None:
    """``depends_on = ("chat.room",)``: membership changes reach open subscriptions."""
    from schema_examples.chat.models import Room

    bob_user = await get_user_model().objects.aget(username="bob")
    async with ws_client(await token_of("bob")) as client:
        changes = await client.subscribe(CHANGED)
        await settle()
        secret = await Room.objects.aget(name="secret")
        await sync_to_async(secret.members.add)(bob_user)
        assert (await changes.next())["data"]["messageChanged"] == {
            "op": "CREATED",
            "node": {"text": "Only alice can read this.", "room": {"name": "secret"}}}


async def test_the_login_mutation_returns_a_token_that_signs_in() -> None:
    """``login { token }``: the shape of the demo's, so part 1's recipe works here too."""
    login = ("mutation($u: String!, $p: String!) { login(username: $u, password: $p) "
             "{ token } }")
    token = (await http(login, {"u": "bob", "p": "bob-pass"}))["data"]["login"]["token"]
    assert rows(await http(MESSAGES, token=token)) == [("general", "Welcome to #general!")]
    wrong = await http(login, {"u": "bob", "p": "nope"})
    assert refusal(wrong["errors"]) == ("BAD_LOGIN", "Invalid username or password.")


@pytest.mark.usefixtures("past_the_seed")
async def test_a_change_between_the_query_and_the_subscription_is_not_missed() -> None:
    """What client.mjs does: ``messagesCursor`` with the rows, then ``after:`` it."""
    alice = await token_of("alice")
    listed = await http("{ messagesCursor messages { text } }", token=alice)
    cursor = listed["data"]["messagesCursor"]
    await edit("Welcome to #general!", "Edited while connecting", alice)  # the gap
    async with ws_client(alice) as client:
        changes = await client.subscribe(
            "subscription($after: String) { messageChanged(after: $after) "
            "{ op node { text } } }", {"after": cursor})
        assert (await changes.next())["data"]["messageChanged"] == {
            "op": "UPDATED", "node": {"text": "Edited while connecting"}}


async def test_the_shell_snippet_creates_a_member_and_prints_a_working_token() -> None:
    code = (EXAMPLES / "create_user.py").read_text(encoding="utf-8")
    printed = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "create_user.py", "exec"), {"__name__": "__main__"})

    await sync_to_async(run)()
    token = printed.getvalue().strip()
    dana = await sync_to_async(gqlsync.auth.user_for_token)(token)
    assert dana is not None
    assert dana.username == "dana"
    assert rows(await http(MESSAGES, token=token)) == [("general", "Welcome to #general!")]


async def test_refused_json_is_what_bob_gets() -> None:
    bob = await token_of("bob")
    welcome = await Message.objects.aget(text="Welcome to #general!")
    query = f'mutation {{ editMessage(id: "{welcome.pk}", text: "hi") {{ text }} }}'
    shown = json.loads((EXAMPLES / "refused.json").read_text(encoding="utf-8"))
    assert await http(query, token=bob) == shown


# ------------------------------------------------------------------------ the page

def test_every_block_is_a_titled_copy_of_its_file_and_every_file_is_shown() -> None:
    """Each code block of the page is ``<!-- <path> -->`` then a block titled with that
    file; tests/test_docs.py's copies() reads the titles and its
    ``test_a_titled_block_is_its_file`` holds each copy equal to its file. The page
    shows the models it builds on before its first step."""
    from tests.test_docs import code_blocks, copies

    text = PAGE.read_text(encoding="utf-8")
    blocks, titled = code_blocks(PAGE), copies(PAGE)
    assert "--8<--" not in text
    assert [b.title for b in titled] == [b.title for b in blocks], "a block without its file"
    for block in titled:
        assert block.title is not None
        assert f"<!-- {block.title} -->\n```" in text, f"{block.title}: no comment names it"
        assert block.text == (ROOT / block.title).read_text(encoding="utf-8")
    files = {f"docs/examples/tutorial_users/{p.name}" for p in EXAMPLES.iterdir()
             if p.is_file()}
    shown = [b.title for b in titled]
    assert files == {t for t in shown if t in files}, "a file of the folder the page omits"
    assert shown[0] == "schema_examples/chat/models.py"
    assert text.index(shown[0]) < text.index("## 1.")


def test_the_page_states_what_each_user_gets() -> None:
    """The table "What each user gets" names the messages and codes the tests above
    assert, in the row of the user who gets them."""
    text = PAGE.read_text(encoding="utf-8")
    table = {line.split("|")[1].strip(): line for line in text.splitlines()
             if line.startswith("| ") and "---" not in line}
    anonymous = table["anonymous"]
    assert anonymous.count(f'"{SIGN_IN[1]}"') == 3
    assert SIGN_IN[0] in anonymous
    bob = table["bob"]
    assert f'"{NOT_YOURS[1]}"' in bob
    assert NOT_YOURS[0] in bob
    assert "UNAUTHENTICATED" not in table["alice"] + bob
    # and what bob gets for a message he cannot read, as for one that does not exist
    assert f'`{NO_SUCH[0]}` "{NO_SUCH[1]}"' in text
    assert "FORBIDDEN" not in table["alice"]


# ------------------------------------------------------------------------ real clients

def _node_ready() -> None:
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "graphql-ws").is_dir():
        message = "node or tests/e2e/js/node_modules missing (run npm ci in tests/e2e/js)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)


class LiveServer:
    """The tutorial's ASGI application under uvicorn, on a free port, in a thread."""

    def __init__(self) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/graphql/"
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port,
                                lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def post(self, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url, json.dumps({"query": query, "variables": variables}).encode(),
            {"content-type": "application/json", "authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.load(response)
            return result


@pytest.fixture
def uvicorn_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


class Node:
    """``node client.mjs <args>``, its packages resolved from tests/e2e/js."""

    def __init__(self, url: str, *args: str) -> None:
        hook = (JS_DIR / "packages-hook.mjs").as_uri()
        register = ("data:text/javascript,import{register}from'node:module';"
                    f"register('{hook}')")
        self.process = subprocess.Popen(
            ["node", "--import", register, str(EXAMPLES / "client.mjs"), *args],
            env={**os.environ, "GRAPHQL_URL": url}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._ready:
                self.lines.append(line)
                self._ready.notify_all()

    def line(self, index: int, timeout: float = 20) -> dict[str, Any]:
        with self._ready:
            if not self._ready.wait_for(lambda: len(self.lines) > index, timeout):
                self.process.kill()
                _, stderr = self.process.communicate()
                raise AssertionError(f"client printed {self.lines}; stderr: {stderr}")
            found: dict[str, Any] = json.loads(self.lines[index])
            return found

    def stop(self) -> None:
        self.process.kill()
        self.process.communicate()


@pytest.mark.usefixtures("past_the_seed")
def test_the_js_client_signs_in_lists_and_follows_over_a_real_socket(
    uvicorn_server: LiveServer,
) -> None:
    _node_ready()
    alice = Node(uvicorn_server.url, "alice", "alice-pass")
    try:
        listed = alice.line(0)["messages"]["data"]["messages"]
        assert [m["room"]["name"] for m in listed] == ["general", "secret"]
        # at once, while the client is still connecting its socket: subscribing with
        # after: the query's cursor, it is not missed
        token = gqlsync.make_token(get_user_model().objects.get(username="alice"))
        secret = Message.objects.get(text="Only alice can read this.")
        uvicorn_server.post(EDIT, {"id": str(secret.pk), "text": "Seen by alice's client"}, token)
        assert alice.line(1) == {"messageChanged": {"data": {"messageChanged": {
            "op": "UPDATED", "node": {"id": str(secret.pk), "text": "Seen by alice's client",
                                      "room": {"name": "secret"}}}}}}
    finally:
        alice.stop()

    anonymous = Node(uvicorn_server.url)
    try:
        assert refusal(anonymous.line(0)["messages"]["errors"]) == SIGN_IN
        # the refusal comes as the subscription's one result, then it completes
        refused = anonymous.line(1)["messageChanged"]
        assert refused["data"] is None
        assert refusal(refused["errors"]) == SIGN_IN
    finally:
        anonymous.stop()


def test_query_sh_sends_the_token_in_an_authorization_header(uvicorn_server: LiveServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    token = gqlsync.make_token(get_user_model().objects.get(username="bob"))
    result = subprocess.run(
        ["sh", str(EXAMPLES / "query.sh")], capture_output=True, text=True, timeout=30,
        env={**os.environ, "TOKEN": token, "GRAPHQL_URL": uvicorn_server.url}, check=True)
    assert json.loads(result.stdout) == {"data": {"messages": [
        {"text": "Welcome to #general!", "room": {"name": "general"}}]}}
