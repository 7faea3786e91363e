"""The scenarios of issue #5, at full size and at the smoke size CI runs.

Each case runs once per variant (gqlsync, baseline, floor) with the same clients code.

- ``fanout``: N identical subscriptions (no filter), a stream of changes;
- ``distinct``: N subscriptions spread over K distinct filters (``group: {exact: g}``),
  the writer cycling through the K groups: every event reaches N/K subscriptions;
- ``idle``: N subscriptions that receive nothing while the server's RSS is read, one per
  socket and many per socket (then two events check that they all still deliver);
- ``scaleout``: two server processes on one Redis, half the sockets on each;
- ``scoped``: N users, each their own permission scope, each subscribing to
  ``itemChangedIn(room:)`` (a membership check, then the room's items under the
  members-only rule of :mod:`bench.app.rules`: the demo's ``messageChanged(room:)``),
  spread over K rooms. Its variants are gqlsync, the baseline written the same way, and
  ``allowany``: gqlsync's server with the same rooms as an anonymous filter and no rule,
  the reference the scoped path is held to.
"""

from __future__ import annotations

from bench.runner import Run

SCENARIOS = ("fanout", "distinct", "idle", "scaleout", "scoped")
#: the variants each scenario runs (the last is the one ``a/c`` compares with)
VARIANTS = {"scoped": ("gqlsync", "baseline", "allowany")}
DEFAULT_VARIANTS = ("gqlsync", "baseline", "floor")


def variants(scenario: str) -> tuple[str, ...]:
    return VARIANTS.get(scenario, DEFAULT_VARIANTS)


def users(smoke: bool) -> int:
    """Users to prepare: one per subscription of the largest scoped case."""
    return max(run.n for run in cases(smoke)["scoped"])


def cases(smoke: bool) -> dict[str, list[Run]]:
    """Scenario -> its cases (``variant`` filled in by the caller)."""
    if smoke:
        limit = 60.0
        return {
            "fanout": [Run("fanout", "", n=50, events=10, limit=limit)],
            "distinct": [Run("distinct", "", n=50, k=k, events=20, limit=limit)
                         for k in (1, 10)],
            "idle": [Run("idle", "", n=50, per_socket=m, events=2, limit=limit)
                     for m in (1, 5)],
            "scaleout": [Run("scaleout", "", n=50, servers=2, events=10, limit=limit)],
            "scoped": [Run("scoped", "", n=50, k=k, events=20, limit=limit, scoped=True)
                       for k in (1, 10)],
        }
    limit = 300.0
    return {
        "fanout": [Run("fanout", "", n=100, events=200, limit=limit),
                   Run("fanout", "", n=1000, events=50, limit=limit),
                   Run("fanout", "", n=5000, events=20, limit=limit)],
        "distinct": [Run("distinct", "", n=1000, k=k, events=100, rate=25, limit=limit)
                     for k in (1, 10, 100)],
        "idle": [Run("idle", "", n=5000, per_socket=m, events=2, rate=2, limit=limit)
                 for m in (1, 10)],
        "scaleout": [Run("scaleout", "", n=1000, servers=2, events=50, limit=limit)],
        "scoped": [Run("scoped", "", n=1000, k=k, events=100 if k == 1 else 200, rate=25,
                       limit=limit, scoped=True) for k in (1, 10)],
    }
