"""GraphQL over HTTP's media types: ``Accept`` chooses, the status code follows.

A client that accepts ``application/graphql-response+json`` gets it, with the
specification's status codes (``400`` and no ``data`` for a request that never executed);
one that accepts only ``application/json``, a wildcard, or sends no ``Accept``, gets the
answers it always got; one that accepts only a stream (``text/event-stream``,
``multipart/mixed``) is answered by Strawberry, as before the negotiation, never ``406``.
Driven through the demo's ASGI application, as
``tests/test_transport.py`` drives it; graphql-http's audit of a real server is
``tests/e2e/test_graphql_http_audit.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import strawberry
from asgiref.testing import ApplicationCommunicator

import gqlsync.asgi
from gqlsync.transport.http import asks_for_a_stream, response_media_type
from tests.test_docs import page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

NEW = "application/graphql-response+json"
NEW_CONTENT_TYPE = "application/graphql-response+json; charset=utf-8"
JSON = "application/json"
#: what Apollo Client 4's HttpLink sends, and what the specification recommends
APOLLO = "application/graphql-response+json,application/json;q=0.9"
#: what urql's fetchExchange sends
URQL = ("application/graphql-response+json, application/graphql+json, application/json, "
        "text/event-stream, multipart/mixed")
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        return json.loads(self.body)


async def send(application: Any, *, method: str = "POST", body: bytes = b"",
               accept: str | None = None, params: dict[str, str] | None = None,
               headers: list[tuple[str, str]] | None = None,
               content_type: str | None = "application/json") -> Answer:
    """One HTTP request to ``/graphql/``; ``accept=None`` sends no ``Accept`` at all."""
    raw = [("host", "testserver")]
    if content_type is not None and method == "POST":
        raw.append(("content-type", content_type))
    if accept is not None:
        raw.append(("accept", accept))
    raw += headers or []
    scope = {
        "type": "http", "method": method, "path": "/graphql/", "raw_path": b"/graphql/",
        "query_string": urlencode(params or {}).encode(),
        "headers": [(k.encode(), v.encode()) for k, v in raw],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http",
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": body})
    start = await comm.receive_output(5)
    chunks = []
    while True:
        message = await comm.receive_output(5)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return Answer(start["status"], response_headers, b"".join(chunks))


def post(query: str, **extra: Any) -> bytes:
    return json.dumps({"query": query, **extra}).encode()


# ------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(("accept", "chosen"), [
    (None, JSON),  # no Accept: the specification's legacy default
    ("", JSON),
    (NEW, NEW),
    (JSON, JSON),
    (APOLLO, NEW),
    (URQL, NEW),
    (f"{JSON}, {NEW}", NEW),  # equal q, both named: the new type
    (f"{NEW};q=0.5, {JSON}", JSON),  # the client prefers json
    (f"{JSON};q=0.5, {NEW};q=0.4", JSON),
    ("*/*", JSON),  # wildcards only (curl): the type every client reads
    ("application/*", JSON),
    (BROWSER, JSON),
    (f"{NEW}, */*", NEW),
    (f"{JSON};q=0, */*", NEW),  # json refused, the other accepted through */*
    (f"{NEW};q=0, */*", JSON),
    ("APPLICATION/GRAPHQL-RESPONSE+JSON", NEW),  # media types are case-insensitive
    (f"{NEW}; charset=utf-8, {JSON}; charset=utf-8", NEW),
    (f"{JSON}; charset=utf-8", JSON),
    (f"{JSON}; charset=iso-8859-1", None),  # answers are UTF-8 only
    (f"{JSON}; q=0.5; charset=iso-8859-1", JSON),  # after q: an extension, not a charset
    ("text/html", None),
    ("text/plain, application/xml", None),
    (f"{NEW};q=0", None),
    (f"{JSON};q=0, {NEW};q=0", None),
    (f"{JSON};q=abc", None),  # an unreadable q drops its range
    (f"{JSON};q=2", None),
    ("text/event-stream, multipart/mixed", None),
    ("nonsense", None),
])
def test_the_accept_header_chooses_the_media_type(accept: str | None, chosen: str | None) -> None:
    assert response_media_type(accept) == chosen


# ------------------------------------------------------------- results, per media type


async def test_a_client_accepting_the_new_type_gets_it_with_200(application: Any) -> None:
    answer = await send(application, body=post("{ books { title } }"), accept=APOLLO)
    assert answer.status == 200
    assert answer.content_type == NEW_CONTENT_TYPE
    assert len(answer.json()["data"]["books"]) > 0


@pytest.mark.parametrize("accept", [None, JSON, "*/*", BROWSER])
async def test_legacy_clients_keep_application_json(application: Any, accept: str | None) -> None:
    answer = await send(application, body=post("{ books { title } }"), accept=accept)
    assert answer.status == 200
    assert answer.content_type == JSON
    assert len(answer.json()["data"]["books"]) > 0


BY_TITLE = "query($t: String!) { books(filters: {title: {exact: $t}}) { title } }"
REQUEST_ERRORS = {
    "does not parse": post("{ books { title }"),
    "does not validate": post("{ books { isbn } }"),
    "null for a non-null variable": post(BY_TITLE, variables={"t": None}),
    "a variable of the wrong type": post(BY_TITLE, variables={"t": {"no": "string"}}),
}


@pytest.mark.parametrize("body", REQUEST_ERRORS.values(), ids=REQUEST_ERRORS.keys())
async def test_a_request_error_is_400_without_data_for_the_new_type(
    application: Any, body: bytes
) -> None:
    answer = await send(application, body=body, accept=NEW)
    assert answer.status == 400
    assert answer.content_type == NEW_CONTENT_TYPE
    result = answer.json()
    assert "data" not in result
    assert result["errors"][0]["message"]


@pytest.mark.parametrize("body", REQUEST_ERRORS.values(), ids=REQUEST_ERRORS.keys())
async def test_a_request_error_stays_200_with_null_data_for_json(
    application: Any, body: bytes
) -> None:
    answer = await send(application, body=body, accept=JSON)
    assert answer.status == 200
    assert answer.content_type == JSON
    result = answer.json()
    assert result["data"] is None
    assert result["errors"]


async def test_a_failed_root_field_executed_so_it_is_200_with_null_data(
    application: Any,
) -> None:
    # createBook is non-null and raises: data is null, but the mutation ran
    body = post('mutation { createBook(title: "T", authorEmail: "nobody@x.org") { id } }')
    answer = await send(application, body=body, accept=NEW)
    assert answer.status == 200
    assert answer.content_type == NEW_CONTENT_TYPE
    result = answer.json()
    assert result["data"] is None
    assert result["errors"][0]["path"] == ["createBook"]


@strawberry.type
class Node:
    name: str = "n"

    @strawberry.field
    def child(self) -> Node:
        return Node()


@strawberry.type
class Query:
    @strawberry.field
    def root(self) -> Node:
        return Node()

    @strawberry.field
    def broken(self) -> str | None:
        raise ValueError("broken on purpose")


def app_with(settings: Any, **gqlsync_settings: Any) -> Any:
    settings.GQLSYNC = gqlsync_settings
    return gqlsync.asgi.application(strawberry.Schema(query=Query))


async def test_partial_data_with_field_errors_is_200(settings: Any) -> None:
    answer = await send(app_with(settings), body=post("{ root { name } broken }"), accept=NEW)
    assert answer.status == 200
    result = answer.json()
    assert result["data"] == {"root": {"name": "n"}, "broken": None}
    assert result["errors"][0]["path"] == ["broken"]


async def test_a_refused_limit_is_a_request_error(settings: Any) -> None:
    app = app_with(settings, MAX_QUERY_DEPTH=3)
    deep = post("{ root { child { child { child { child { name } } } } } }")
    answer = await send(app, body=deep, accept=NEW)
    assert answer.status == 400
    assert "data" not in answer.json()
    assert "exceeds maximum operation depth" in answer.json()["errors"][0]["message"]
    legacy = await send(app, body=deep, accept=JSON)
    assert (legacy.status, legacy.json()["data"]) == (200, None)


async def test_get_queries_negotiate_too(application: Any) -> None:
    params = {"query": BY_TITLE, "variables": json.dumps({"t": "Killing Floor"})}
    answer = await send(application, method="GET", params=params, accept=NEW)
    assert (answer.status, answer.content_type) == (200, NEW_CONTENT_TYPE)
    assert answer.json()["data"]["books"] == [{"title": "Killing Floor"}]
    legacy = await send(application, method="GET", params=params)
    assert (legacy.status, legacy.content_type) == (200, JSON)


# ------------------------------------------------------ requests refused before GraphQL


async def test_a_mutation_over_get_is_405_with_allow_for_the_new_type(application: Any) -> None:
    params = {"query": 'mutation { deleteBook(id: "1") { id } }'}
    answer = await send(application, method="GET", params=params, accept=NEW)
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"
    assert answer.content_type == NEW_CONTENT_TYPE
    assert "mutations are not allowed" in answer.json()["errors"][0]["message"]
    legacy = await send(application, method="GET", params=params, accept=JSON)
    assert legacy.status == 400  # unchanged for legacy clients
    assert legacy.content_type == "text/plain"


async def test_another_method_is_405_with_allow(application: Any) -> None:
    answer = await send(application, method="PUT", body=post("{ books { id } }"), accept=NEW)
    assert (answer.status, answer.headers["allow"]) == (405, "GET, POST")
    assert answer.json()["errors"][0]["message"]


MALFORMED = {
    "body not JSON": b'{"query": ',
    "query not a string": json.dumps({"query": 7}).encode(),
    "variables not an object": post("{ books { id } }", variables=[7]),
    "unknown operationName": post("query A { books { id } }", operationName="B"),
    "no query": json.dumps({"qeury": "{ books { id } }"}).encode(),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_request_is_400_as_a_graphql_response_for_the_new_type(
    application: Any, body: bytes
) -> None:
    answer = await send(application, body=body, accept=APOLLO)
    assert answer.status == 400
    assert answer.content_type == NEW_CONTENT_TYPE
    assert answer.json()["errors"][0]["message"]
    legacy = await send(application, body=body, accept=JSON)
    assert legacy.status == 400
    assert legacy.content_type == "text/plain"


async def test_a_rejected_token_is_401_for_both(application: Any) -> None:
    bad = [("authorization", "Bearer forged")]
    answer = await send(application, body=post("{ books { id } }"), accept=NEW, headers=bad)
    assert answer.status == 401
    assert answer.content_type == NEW_CONTENT_TYPE
    assert "token" in answer.json()["errors"][0]["message"]
    legacy = await send(application, body=post("{ books { id } }"), headers=bad)
    assert (legacy.status, legacy.content_type) == (401, "text/plain")


async def test_an_oversized_body_is_413_for_both(settings: Any) -> None:
    app = app_with(settings, MAX_DOCUMENT_BYTES=100)
    body = post("{ root { name } }", padding="x" * 200)
    answer = await send(app, body=body, accept=NEW)
    assert (answer.status, answer.content_type) == (413, NEW_CONTENT_TYPE)
    assert answer.json() == {"errors": [{"message": "Request body too large"}]}
    legacy = await send(app, body=body, accept=JSON)
    assert (legacy.status, legacy.content_type) == (413, "text/plain")


@pytest.mark.parametrize("accept", ["text/plain", f"{JSON};q=0", "application/xml, text/*"])
async def test_nothing_acceptable_is_406(application: Any, accept: str) -> None:
    answer = await send(application, body=post("{ books { id } }"), accept=accept)
    assert answer.status == 406
    assert answer.content_type == "text/plain"
    assert NEW in answer.body.decode()


async def test_a_browser_still_gets_graphiql(application: Any) -> None:
    for accept in ("text/html", BROWSER):
        answer = await send(application, method="GET", accept=accept)
        assert answer.status == 200
        assert answer.content_type == "text/html; charset=utf-8"
        assert "graphiql.js" in answer.body.decode()


# --------------------------------------------- streaming transports: Strawberry answers

#: the Accept of clients that accept only a stream
STREAMING = {
    "graphql-sse": "text/event-stream",
    "multipart subscription": "multipart/mixed;subscriptionSpec=1.0",
    "multipart subscription, quoted": 'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"',
    "incremental delivery": "multipart/mixed; deferSpec=20220824",
    "either": "text/event-stream, multipart/mixed",
}
BOOK_CHANGED = "subscription { bookChanged { op node { title } } }"


@pytest.mark.parametrize(("accept", "asks"), [
    *((accept, True) for accept in STREAMING.values()),
    ("TEXT/EVENT-STREAM", True),
    (f"{JSON};q=0, text/event-stream", True),
    ("text/event-stream;q=0", False),  # refused, not asked for
    ("multipart/mixed;q=0, text/plain", False),
    ("text/*", False),  # wildcards name no stream
    ("multipart/*", False),
    ("*/*", False),
    ("multipart/form-data", False),
    (None, False),
    (JSON, False),
])
def test_a_stream_is_asked_for_by_its_media_type(accept: str | None, asks: bool) -> None:
    assert asks_for_a_stream(accept) is asks


@pytest.mark.parametrize("accept", STREAMING.values(), ids=STREAMING.keys())
async def test_a_client_accepting_only_a_stream_gets_strawberrys_answer_not_406(
    application: Any, accept: str
) -> None:
    """gqlsync's route turns none of Strawberry's HTTP streaming transports on, so
    Strawberry answers these requests as plain ones, exactly as with ``Accept:
    application/json`` (and as before the negotiation): a query gets its data, a
    subscription is not streamed, a malformed request is a plain-text 400."""
    query = await send(application, body=post("{ books { title } }"), accept=accept)
    assert (query.status, query.content_type) == (200, JSON)
    assert len(query.json()["data"]["books"]) > 0

    subscription = await send(application, body=post(BOOK_CHANGED), accept=accept)
    assert (subscription.status, subscription.content_type) == (200, JSON)
    assert subscription.json()["data"] is None
    assert subscription.json()["errors"]

    malformed = await send(application, body=b'{"query": ', accept=accept)
    assert (malformed.status, malformed.content_type) == (400, "text/plain")

    for body in (post("{ books { title } }"), post(BOOK_CHANGED), b'{"query": ',
                 REQUEST_ERRORS["does not validate"]):
        answer = await send(application, body=body, accept=accept)
        assert answer == await send(application, body=body, accept=JSON)


async def _stream(application: Any, accept: str, body: bytes) -> tuple[Answer, Any]:
    """Start a streaming POST: its status and headers, and the communicator to read its
    chunks from (cancel its ``future`` when done: a subscription's stream never ends)."""
    scope = {
        "type": "http", "method": "POST", "path": "/graphql/", "raw_path": b"/graphql/",
        "query_string": b"", "client": ("127.0.0.1", 1), "server": ("testserver", 80),
        "scheme": "http", "headers": [(b"host", b"testserver"),
                                      (b"content-type", b"application/json"),
                                      (b"accept", accept.encode())],
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": body})
    start = await comm.receive_output(5)
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return Answer(start["status"], headers, b""), comm


@pytest.mark.parametrize(("accept", "content_type", "event"), [
    ("multipart/mixed;subscriptionSpec=1.0",
     "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json",
     b'{"payload":{"data":{"bookChanged":{"op":"CREATED","node":{"title":"Streamed"}}}}}'),
    ("text/event-stream", "text/event-stream",
     b'event: next\r\ndata: {"data":{"bookChanged":{"op":"CREATED","node":{"title":"Streamed"}}}}'),
], ids=["multipart", "sse"])
async def test_strawberrys_streaming_transports_run_where_a_view_turns_them_on(
    accept: str, content_type: str, event: bytes
) -> None:
    """The negotiation does not stand in front of Strawberry's streams: with its
    multipart and SSE transports turned on (``subscription_protocols``), a client that
    accepts only a stream gets a gqlsync subscription streamed by Strawberry."""
    from channels.auth import AuthMiddlewareStack

    from gqlsync.hub import get_hub
    from gqlsync.transport.http import GraphQLHTTPHandler
    from schema_examples.bookstore.models import Author, Book
    from schema_examples.schema import schema

    streaming = AuthMiddlewareStack(GraphQLHTTPHandler.as_asgi(
        schema=schema, subscription_protocols=(
            "graphql-transport-ws", "graphql-ws", "multipart-subscription", "graphql-sse")))
    answer, comm = await _stream(streaming, accept, post(BOOK_CHANGED))
    try:
        assert (answer.status, answer.content_type) == (200, content_type)
        for _ in range(100):  # Strawberry sends the headers before it subscribes
            if get_hub().subscription_count():
                break
            await asyncio.sleep(0.02)
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Streamed", author=author)
        received = b""
        while event not in received:  # multipart: a heartbeat ({}) comes first
            message = await comm.receive_output(5)
            assert message["more_body"], received
            received += message["body"]
    finally:
        comm.future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await comm.future


# ------------------------------------------------------------------- the documentation


def _documented_exchange() -> tuple[list[str], str, int, str, Any]:
    """The curl exchange of docs/guides/security.md's HTTP section: its arguments, the
    status and content type shown, and the body shown."""
    section = page("guides/security.md").split("## HTTP media types and status codes", 1)[1]
    block = re.search(r"^```\n(\$ curl .*?)^```", section, re.MULTILINE | re.DOTALL)
    assert block is not None, "the section's curl example is missing"
    command, _, shown = block.group(1).partition("\nHTTP/1.1 ")
    status_line, _, rest = shown.partition("\n")
    headers, _, body = rest.partition("\n\n")
    content_type = headers.removeprefix("content-type: ").strip()
    args = shlex.split(command.removeprefix("$ ").replace("\\\n", " "))
    return args, status_line, int(status_line.split()[0]), content_type, json.loads(body)


async def test_the_documented_exchange_is_what_the_server_answers(application: Any) -> None:
    args, _, status, content_type, body = _documented_exchange()
    pairs = list(itertools.pairwise(args))
    sent = dict(value.split(": ", 1) for flag, value in pairs if flag == "-H")
    data = next(value for flag, value in pairs if flag == "-d")
    answer = await send(application, body=data.encode(), accept=sent["Accept"],
                        content_type=sent["Content-Type"])
    assert (answer.status, answer.content_type, answer.json()) == (status, content_type, body)
    # "The same request with Accept: application/json, or without Accept, answers 200"
    for accept in (JSON, None):
        legacy = await send(application, body=data.encode(), accept=accept)
        assert (legacy.status, legacy.content_type) == (200, JSON)
        assert legacy.json() == {"data": None, **body}
