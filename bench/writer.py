"""The writer: ORM saves at a fixed rate, one commit each, in its own process.

``python -m bench.writer prepare --users N --tokens PATH`` makes the items (``ROWS`` in
each of ``GROUPS`` groups) and N users of the scoped scenarios, user ``j`` a member of
groups 0, ``j % 10`` and ``(j + 3) % 10`` (so ``room: j % K`` is always one of theirs,
for K of 1 and 10, and no two users' rules are the same SQL), with gqlsync's capture
pointed at a private in-memory layer, so nothing is published; writes the users' bearer
tokens to PATH (a JSON list) and prints a staff user's token (for gqlsync's staff-only
``/graphql/stats``).

``python -m bench.writer write --publisher P --events E --rate R --groups K`` sets itself
up, prints ``ready``, waits for a line on stdin (the runner takes its measurements in
between), then, for each event ``i``, updates a row of group ``i % K`` that no other event
of the run touches: a new title (the event's name, ``<run>-<i>``) and
``sent_at = time.time()``, saved in autocommit mode (the save is the commit). One row per
event matters: servers read the row when the message arrives, and a row updated twice
could be read in its later state for both events, which would look like a duplicate.

It prints one JSON line: events written, seconds taken, and
messages channels-redis reported over capacity (dropped).

``P`` is who publishes: ``gqlsync`` (its own capture, nothing else), ``baseline`` or
``floor`` (the ``post_save`` -> ``group_send`` receivers of :mod:`bench.app.signals`;
gqlsync's capture then publishes to the private layer only).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

GROUPS = 100
ROWS = 250


class _Drops(logging.Handler):
    """channels-redis logs, and otherwise ignores, group messages over capacity."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" in record.getMessage():
            _Drops.count += 1


def stats_token() -> str:
    """A bearer token of the bench's staff user: gqlsync's ``/graphql/stats`` is staff-only."""
    from django.contrib.auth import get_user_model

    import gqlsync

    user, _ = get_user_model().objects.update_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_active": True})
    return gqlsync.make_token(user)


def make_users(count: int) -> list[str]:
    """Users ``bench-user-<j>`` and their memberships (see above); their tokens."""
    from django.contrib.auth import get_user_model

    import gqlsync
    from bench.app.models import Member

    model = get_user_model()
    model.objects.filter(username__startswith="bench-user-").delete()
    users = model.objects.bulk_create(
        [model(username=f"bench-user-{j}") for j in range(count)], batch_size=5000)
    Member.objects.bulk_create(
        [Member(user=user, group=g) for j, user in enumerate(users)
         for g in sorted({0, j % 10, (j + 3) % 10})], batch_size=5000)
    return [gqlsync.make_token(user) for user in users]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["prepare", "write"])
    parser.add_argument("--publisher", choices=["gqlsync", "baseline", "floor"])
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--run", default="run")
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--tokens", default=None)
    args = parser.parse_args()
    if args.command == "prepare" or args.publisher != "gqlsync":
        os.environ["BENCH_GQLSYNC_LAYER"] = "local"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
    import django

    django.setup()
    from bench.app import signals
    from bench.app.models import Item

    if args.command == "prepare":
        Item.objects.all().delete()
        Item.objects.bulk_create(
            [Item(title="new", group=g) for g in range(GROUPS) for _ in range(ROWS)],
            batch_size=5000)
        if args.tokens:
            with open(args.tokens, "w") as out:
                json.dump(make_users(args.users), out)
        print(stats_token(), flush=True)
        return
    if args.publisher != "gqlsync":
        signals.connect(args.publisher)
    logger = logging.getLogger("channels_redis.core")
    logger.addHandler(_Drops())
    logger.setLevel(logging.INFO)
    if args.events > args.groups * ROWS:
        raise SystemExit(f"at most {args.groups * ROWS} events: one row each")
    # only the rows this run updates (the bigtable scenario's table has a million)
    per_group = -(-args.events // args.groups)
    rows = {g: list(Item.objects.filter(group=g).order_by("pk")[:per_group])
            for g in range(args.groups)}
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    for i in range(args.events):
        # a fixed schedule: event i at start + i / rate, however long each save takes
        time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        item = rows[i % args.groups][i // args.groups]
        item.title = f"{args.run}-{i}"
        item.sent_at = time.time()
        item.save()
    print(json.dumps({"events": args.events, "seconds": time.monotonic() - start,
                      "drops": _Drops.count}), flush=True)


if __name__ == "__main__":
    main()
