"""The bundled GraphiQL IDE in a real browser (headless Chromium), fully offline.

The demo server runs under uvicorn (``demo_server``); Chromium opens ``/graphql/``,
and the tests drive GraphiQL's CodeMirror editors through JavaScript. They check that the
page loads every asset from the server itself (no CDN), that a query typed into the editor
runs over HTTP, and that a subscription started in the page receives a change made by
another client, also with a bearer token typed into GraphiQL's Headers editor. The
subscription test saves the screenshot the docs show
(``docs/assets/graphiql-subscription.png``).

Skipped when chromium or chromedriver is missing, a failure under ``CI=true``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import CI
from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e

SCREENSHOT = ROOT / "docs" / "assets" / "graphiql-subscription.png"
# the contract's subscription, laid out for the screenshot
SUBSCRIPTION = """subscription {
  bookChanged {
    op
    id
    node { title author { email } }
  }
}"""
CREATE_BOOK = (
    "mutation($title: String!, $authorEmail: String!) {"
    " createBook(title: $title, authorEmail: $authorEmail) { id title } }"
)

EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"
JS_READY = f"return !!document.querySelector({EDITOR!r})"
JS_SET_QUERY = f"document.querySelector({EDITOR!r}).CodeMirror.setValue(arguments[0])"
JS_SET_HEADERS = (  # the second editor of the Variables/Headers pane
    "document.querySelectorAll('.graphiql-editor-tool .CodeMirror')[1]"
    ".CodeMirror.setValue(arguments[0])"
)
JS_RUN = "document.querySelector('.graphiql-execute-button').click()"
JS_RESPONSE = (
    f"const el = document.querySelector({RESPONSE!r});"
    " return el ? el.CodeMirror.getValue() : ''"
)
JS_RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name)"


def _binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile (GraphiQL keeps its tabs in localStorage)."""
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if chromium is None or driver_path is None:
        message = "chromium, chromedriver or selenium is not installed"
        if CI:
            pytest.fail(message + " (CI=true: a missing browser is a failure)")
        pytest.skip(message)

    profile = tempfile.mkdtemp(prefix="gqlsync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, condition: Any, timeout: float, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def _open_graphiql(driver: Any, server: Server) -> None:
    driver.get(server.http_url)
    assert driver.title == "gqlsync GraphiQL"
    _wait(driver, lambda d: d.execute_script(JS_READY), 20, "GraphiQL's editor never appeared")


def _run(driver: Any, query: str) -> None:
    driver.execute_script(JS_SET_QUERY, query)
    driver.execute_script(JS_RUN)


def _response(driver: Any) -> str:
    text: str = driver.execute_script(JS_RESPONSE) or ""
    return text


def _requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for, from Chrome's network log and the resource timings."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message.get("method") == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    urls.extend(driver.execute_script(JS_RESOURCES))
    return urls


def test_page_loads_offline_and_runs_a_query(browser: Any, demo_server: Server) -> None:
    _open_graphiql(browser, demo_server)

    # the bundled assets arrived (GraphiQL rendered) and nothing came from anywhere else
    urls = _requested_urls(browser)
    assert any(u.endswith("/graphql/static/graphiql.js") for u in urls), urls
    assert any(u.endswith("/graphql/static/graphiql.css") for u in urls), urls
    # (chrome:// and data: URLs are the browser's own, not the network)
    network = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    assert network, urls
    foreign = [u for u in network if urlsplit(u).hostname != "127.0.0.1"]
    assert foreign == [], f"the page reached beyond the server: {foreign}"

    _run(browser, "{ books { title } }")
    _wait(browser, lambda d: "Killing Floor" in _response(d), 15,
          "the books query never showed its result")
    data = json.loads(_response(browser))
    titles = {book["title"] for book in data["data"]["books"]}
    assert {"Killing Floor", "Die Trying", "One for the Money"} <= titles


def test_subscription_shows_a_change_made_elsewhere(browser: Any, demo_server: Server) -> None:
    _open_graphiql(browser, demo_server)
    _run(browser, SUBSCRIPTION)
    demo_server.wait_subscriptions(1)

    result = demo_server.graphql(
        CREATE_BOOK, {"title": "Worth Dying For", "authorEmail": "lee@child.com"}
    )
    assert "errors" not in result, result
    book_id = result["data"]["createBook"]["id"]

    _wait(browser,
          lambda d: '"op": "CREATED"' in _response(d) and "Worth Dying For" in _response(d),
          15, "the subscription never showed the new book")
    event = json.loads(_response(browser))["data"]["bookChanged"]
    assert event == {
        "op": "CREATED",
        "id": book_id,
        "node": {"title": "Worth Dying For", "author": {"email": "lee@child.com"}},
    }

    # the subscription travelled over the server's own WebSocket, too
    sockets = [u for u in _requested_urls(browser) if u.startswith("ws")]
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in sockets), sockets

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_headers_editor_token_reaches_the_websocket(browser: Any, demo_server: Server) -> None:
    """A bearer token typed in the Headers editor signs the subscription in (members only)."""
    token = demo_server.token("alice")
    _open_graphiql(browser, demo_server)
    browser.execute_script(JS_SET_HEADERS, json.dumps({"Authorization": f"Bearer {token}"}))
    _run(browser, 'subscription { messageChanged(room: "secret") { op node { text } } }')
    demo_server.wait_subscriptions(1)

    result = demo_server.graphql(
        'mutation { sendMessage(room: "secret", text: "hello from python") { id } }',
        token=token,
    )
    assert "errors" not in result, result
    _wait(browser, lambda d: "hello from python" in _response(d), 15,
          "the members-only subscription never showed the message")
    assert json.loads(_response(browser))["data"]["messageChanged"] == {
        "op": "CREATED", "node": {"text": "hello from python"},
    }
