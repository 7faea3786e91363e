"""A client that stops reading cannot make the server hold more than its byte bounds.

The demo runs under uvicorn with the default bounds (``CONNECTION_QUEUE_BYTES`` 16 MiB).
A raw-socket client (small receive buffer) opens the most subscriptions a connection may
have, each asking for 30 aliases of a 300-character title (about 11 KB a frame, 1.1 MB a
connection per event), then never reads. While books are written the server's RSS is
sampled: it must stay under the connection bound plus a margin, where the frame bounds
alone (1,000 frames a subscription) would let it hold over a gigabyte. A second client
that reads gets every event, and when the paused client reads again it finds the close
code 1013 (Try Again Later) after what was already on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any

import psutil
import pytest

from gqlsync.conf import DEFAULTS
from gqlsync.transport.websocket import CLOSE_SLOW_CONSUMER
from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
SUBSCRIPTIONS = DEFAULTS["MAX_SUBSCRIPTIONS_PER_CONNECTION"]  # 100
ALIASES = DEFAULTS["MAX_ALIASES"]  # 30
EVENTS = 80  # 80 x 1.1 MB = 88 MB queued for the paused client without a byte bound
#: what a paused connection may hold, plus the process's own churn while it serves 80
#: events to 101 subscriptions (allocator pools, caches, kernel-side is not RSS)
MARGIN = 24 * MiB
BOUND = DEFAULTS["CONNECTION_QUEUE_BYTES"] + MARGIN

LARGE = "subscription { bookChanged { " + " ".join(
    f"a{i}: node {{ title author {{ name email }} }}" for i in range(ALIASES)) + " } }"
SMALL = "subscription { bookChanged { op node { title } } }"


class RawClient:
    """graphql-transport-ws over a bare socket: reads only when told to."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.socket()
        # a small receive buffer (set before connecting, so the window stays small)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.settimeout(10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        if len(data) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(data))
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(data))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the TCP connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (unfragmented, as uvicorn sends them)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)


def _rss_sampler(pid: int) -> tuple[threading.Event, list[int]]:
    """Sample ``pid``'s RSS every 10 ms until the event is set."""
    stop = threading.Event()
    samples: list[int] = []
    process = psutil.Process(pid)

    def run() -> None:
        while not stop.is_set():
            samples.append(process.memory_info().rss)
            time.sleep(0.01)

    threading.Thread(target=run, daemon=True).start()
    return stop, samples


async def test_a_paused_client_with_large_frames_is_closed_and_memory_stays_bounded(
    demo_server: Server,
) -> None:
    import websockets

    server = demo_server
    written: list[str] = []

    def write(title: str) -> None:
        written.append(title)
        result = server.graphql('mutation($t: String!) { createBook(title: $t, '
                                'authorEmail: "lee@child.com") { id } }', {"t": title})
        assert "errors" not in result, result

    # the reader: takes every frame as it comes
    reader = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"],
                                      max_size=None)
    await reader.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await reader.recv())["type"] == "connection_ack"
    await reader.send(json.dumps({"id": "r", "type": "subscribe",
                                  "payload": {"query": SMALL}}))
    received: list[str] = []
    last = f"{EVENTS - 1:03d} " + "t" * 296  # the last title written
    everything = asyncio.Event()

    async def read() -> None:
        async for raw in reader:
            message = json.loads(raw)
            if message.get("type") == "next":
                received.append(message["payload"]["data"]["bookChanged"]["node"]["title"])
                if received[-1] == last:
                    everything.set()

    reading = asyncio.create_task(read())
    for i in range(100):  # until the reader's subscription is in place (no stats needed)
        await asyncio.to_thread(write, f"probe {i}")
        await asyncio.sleep(0.2)
        if received:
            break
    assert received

    paused = RawClient(server)
    paused.send({"type": "connection_init"})
    _opcode, payload = paused.frame()
    assert json.loads(payload)["type"] == "connection_ack"
    for n in range(SUBSCRIPTIONS):
        paused.send({"id": str(n), "type": "subscribe", "payload": {"query": LARGE}})

    def all_subscribed() -> None:
        """Write probes until one reaches all the paused client's subscriptions (they are
        registered in order), reading every frame that far; then it reads no more."""
        seen: dict[str, set[str]] = {}
        for i in range(50):
            title = f"paused probe {i}"
            write(title)
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                paused.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    _opcode, payload = paused.frame()
                except TimeoutError:
                    break
                message = json.loads(payload)
                got = message["payload"]["data"]["bookChanged"]["a0"]["title"]
                seen.setdefault(got, set()).add(message["id"])
                if len(seen.get(title, ())) == SUBSCRIPTIONS:
                    paused.sock.settimeout(10)
                    return
        raise AssertionError(f"the paused client's subscriptions never all answered: {seen}")

    await asyncio.to_thread(all_subscribed)

    rss_before = psutil.Process(server.process.pid).memory_info().rss
    stop, samples = _rss_sampler(server.process.pid)
    try:
        for i in range(EVENTS):  # the paused client reads nothing meanwhile
            await asyncio.to_thread(write, f"{i:03d} " + "t" * 296)
    finally:
        stop.set()
    peak = max(samples)
    growth = peak - rss_before
    print(f"RSS before {rss_before / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
          f"(+{growth / MiB:.1f} MiB, bound {BOUND / MiB:.0f} MiB)")
    assert growth < BOUND, f"the server grew {growth / MiB:.1f} MiB with a paused client"

    # the reader got everything, in order
    expected = written[written.index(received[0]):]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everything.wait(), 20)
    assert received == expected

    # while it still reads nothing, its subscriptions are gone from the server's hub
    assert (await asyncio.to_thread(server.stats))["subscriptions"] == 1  # the reader's

    # reading again, the paused client finds what was on the wire, then close code 1013
    def drain() -> tuple[int, int]:
        frames = 0
        while True:
            opcode, payload = paused.frame()
            if opcode == 0x8:
                (code,) = struct.unpack("!H", payload[:2])
                return frames, code
            if opcode == 0x1:
                message = json.loads(payload)
                assert message["type"] == "next"
                assert "errors" not in message["payload"]
                frames += 1

    frames, code = await asyncio.to_thread(drain)
    paused.sock.close()
    reading.cancel()
    await reader.close()
    print(f"paused client: {frames} frames then close {code}")
    assert code == CLOSE_SLOW_CONSUMER
    assert frames < SUBSCRIPTIONS * EVENTS
