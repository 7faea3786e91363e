"""``python -m bench.profile_scoped [N] [K]``: where the hub's CPU goes per scoped event.

In one process, without sockets: N subscriptions over K rooms (subscription ``j`` to room
``j % K``), once as the ``scoped`` scenario has them (each user their own scope and
members-only view, ``itemChangedIn(room:)``'s document) and once as ``allowany`` (one
scope, no view), each with a sender that only counts frames. 50 updates of room items
are dispatched through the hub (5 to warm up); printed: process CPU per event (every
thread: the hub's database thread included) for both, then, from a third run of the
scoped case under cProfile, the top functions of the hub's event loop and of
:func:`gqlsync.rows.evaluate` in the database thread (``tottime`` there includes the
wait for PostgreSQL). Prepares the bench database first (``bench.runner.prepare``).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import runner

QUERY = ("subscription($g: Int!) { itemChangedIn(room: $g) "
         "{ op id node { id title group sentAt } } }")
EVENTS, WARM = 50, 5


class _Sender:
    """A FrameSender writing nowhere: the socket's cost is not the hub's."""

    def __init__(self, variables: dict[str, Any]) -> None:
        self.query, self.variables, self.operation_name = QUERY, variables, None
        self.sent = 0

    def frame(self, payload: str) -> str:
        return payload

    def enqueue(self, frame: str, sent: Any) -> None:
        self.sent += 1
        sent()


async def _run(n: int, k: int, scoped: bool, profile: bool) -> tuple[float, int]:
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    from bench.app.asgi_gqlsync import schema
    from bench.app.models import Item
    from bench.app.rules import members_only
    from bench.app.types import ScopedItemType
    from gqlsync import broker, rows
    from gqlsync.events import Event, Op
    from gqlsync.execute import SharedOperation
    from gqlsync.fields import _to_change
    from gqlsync.hub import Subscription, get_hub
    from gqlsync.matching import RowFilter

    group = broker.model_group("bench.item")
    users = await sync_to_async(lambda: list(
        get_user_model().objects.filter(username__startswith="bench-user-")
        .order_by("pk")[:n]))()
    base = Item.objects.all()
    hub = get_hub()
    senders = []
    for j, user in enumerate(users):
        variables = {"g": j % k}
        sender = _Sender(variables)
        senders.append(sender)
        await hub.subscribe(Subscription(
            model="bench.item", group=group,
            checks=[RowFilter.where(base, Q(group=j % k))],
            scope=("user", user.pk) if scoped else ("any",),
            view_queryset=members_only.filter_queryset(user, base) if scoped else None,
            shared=SharedOperation(schema._schema, QUERY, json.dumps(variables), variables,
                                   None, {"user": user}),
            sender=sender, to_root=_to_change(ScopedItemType)))
    items = await sync_to_async(lambda: {
        g: list(Item.objects.filter(group=g).order_by("pk")[:EVENTS]) for g in range(k)})()
    messages = [{**Event("bench.item", item.pk, Op.UPDATED, ("title",),
                         before={"title": "new"}, cursor="").to_message(), "group": group}
                for item in (items[i % k][i // k] for i in range(EVENTS))]
    for message in messages[:WARM]:
        await hub.dispatch(message)
    hub_profile, db_profile = cProfile.Profile(), cProfile.Profile()
    evaluate = rows.evaluate

    def profiled(*args: Any) -> Any:
        db_profile.enable()
        try:
            return evaluate(*args)
        finally:
            db_profile.disable()

    if profile:
        rows.evaluate = profiled  # type: ignore[assignment]
        hub_profile.enable()
    started = time.process_time()
    for message in messages[WARM:]:
        await hub.dispatch(message)
    cpu = (time.process_time() - started) / (EVENTS - WARM)
    if profile:
        hub_profile.disable()
        rows.evaluate = evaluate  # type: ignore[assignment]
        for title, found in (("the hub's event loop", hub_profile),
                             ("rows.evaluate (database thread)", db_profile)):
            print(f"\n### {title}\n")
            pstats.Stats(found).sort_stats("tottime").print_stats(12)
    await hub.close()
    return cpu, sum(s.sent for s in senders)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    env = runner.environment()
    with tempfile.TemporaryDirectory() as tmp:
        runner.prepare(env, n, Path(tmp))
    os.environ.update({key: env[key] for key in ("DJANGO_SETTINGS_MODULE", "BENCH_DATABASE")})
    os.environ.pop("REDIS_URL", None)  # the in-memory layer: dispatch is called directly
    import django

    django.setup()
    results = {}
    for scoped in (False, True):  # measured without the profiler's overhead
        results[scoped] = asyncio.run(_run(n, k, scoped, profile=False))
    asyncio.run(_run(n, k, True, profile=True))
    print("\n| path | N | K | CPU ms/event | deliveries | ratio |\n|---|---|---|---|---|---|")
    for scoped, (cpu, sent) in results.items():
        print(f"| {'scoped' if scoped else 'allowany'} | {n:,} | {k} | {cpu * 1e3:.2f} | "
              f"{sent:,} | {cpu / results[False][0]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
