"""The table: one row per scenario x variant, and the ratios gqlsync / baseline / floor.

- CPU µs/delivery: CPU time (user + system) of the server process(es) from the first
  write until the last expected delivery arrived, over the deliveries;
- p50/p99/max: receive time at the client minus ``sentAt`` (set just before the save);
- RSS MB: server RSS with every subscription in place minus before the first socket;
  KB/sub: that over N;
- Redis cmd/event: Redis commands (INFO commandstats) during the write phase, per event;
- a/b, a/c: gqlsync's CPU µs/delivery over the baseline's and the floor's (idle rows:
  KB/sub over KB/sub). Below 1, gqlsync costs less. In ``scoped`` rows, c is the
  ``allowany`` variant: gqlsync's own path for the same rooms with no rule;
- p50 a/c: in ``scoped`` rows, gqlsync's p50 latency over the ``allowany`` variant's.
"""

from __future__ import annotations

from typing import Any

COLUMNS = ("scenario", "variant", "N", "K", "subs/socket", "servers", "deliveries exp/got",
           "CPU µs/delivery", "deliveries/CPU-s", "p50 ms", "p99 ms", "max ms", "RSS MB",
           "KB/sub", "Redis cmd/event", "a/b", "a/c", "p50 a/c", "status")


def _metric(row: dict[str, Any]) -> float | None:
    """What the ratios compare: CPU per delivery, or memory per subscription when idle."""
    if row["status"] != "ok":
        return None
    if row["scenario"] == "idle":
        return float(row["rss_bytes"]) / row["n"]
    return cpu_per_delivery(row)


def _p50(row: dict[str, Any]) -> float | None:
    latency = row.get("latency_ms") or [None]
    return latency[0] if row.get("status") == "ok" else None


def cpu_per_delivery(row: dict[str, Any]) -> float | None:
    if not row.get("delivered") or "cpu_s" not in row:
        return None
    return float(row["cpu_s"]) * 1e6 / row["delivered"]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    by_case: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for row in rows:
        key = (row["scenario"], row["n"], row["k"], row["per_socket"], row["servers"])
        by_case.setdefault(key, {})[row["variant"]] = row
    for row in rows:
        key = (row["scenario"], row["n"], row["k"], row["per_socket"], row["servers"])
        ratios = ["", "", ""]
        if row["variant"] == "gqlsync":
            mine = _metric(row)
            reference = "allowany" if row["scenario"] == "scoped" else "floor"
            for i, other in enumerate(("baseline", reference)):
                theirs = _metric(by_case[key].get(other, {"status": "missing"}))
                ratios[i] = _fmt(mine / theirs, 2) if mine and theirs else "-"
            if row["scenario"] == "scoped":
                p50 = _p50(row)
                theirs_p50 = _p50(by_case[key].get("allowany", {}))
                ratios[2] = _fmt(p50 / theirs_p50, 2) if p50 and theirs_p50 else "-"
        cpu = cpu_per_delivery(row)
        latency = row.get("latency_ms") or [None, None, None]
        rss = row.get("rss_bytes")
        commands = sum(row.get("redis_commands", {}).values())
        cells = [
            row["scenario"], row["variant"], f"{row['n']:,}", str(row["k"] or "-"),
            str(row["per_socket"]), str(row["servers"]),
            f"{row['expected']:,}/{row.get('delivered', 0):,}",
            _fmt(cpu), _fmt(1e6 / cpu if cpu else None, 0),
            *(_fmt(v) for v in latency),
            _fmt(rss / 2**20 if rss is not None else None),
            _fmt(rss / 1024 / row["n"] if rss is not None else None),
            _fmt(commands / row["events"] if "redis_commands" in row else None),
            *ratios, row["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commands_breakdown(rows: list[dict[str, Any]]) -> str:
    """Redis commands per event by name, for the scale-out rows."""
    lines = []
    for row in rows:
        if row["scenario"] == "scaleout" and row.get("redis_commands"):
            per_event = sorted(row["redis_commands"].items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{name} {count / row['events']:.1f}" for name, count in per_event)
            kilobytes = row.get("redis_bytes", 0) / 1024 / row["events"]
            lines.append(f"- scaleout {row['variant']} ({kilobytes:.1f} KB in+out per event): "
                         f"{parts}")
    return "\n".join(lines)


def executions(rows: list[dict[str, Any]]) -> str:
    """gqlsync's selection-set executions per event (its hub counters), per case."""
    parts = []
    for row in rows:
        stats = row.get("server_stats") or []
        if row["variant"] == "gqlsync" and stats and "executions" in stats[0]:
            per_event = sum(s["executions"] for s in stats) / row["events"]
            parts.append(f"{row['scenario']} N={row['n']} K={row['k'] or '-'} "
                         f"M={row['per_socket']}: {per_event:.1f}")
    return "; ".join(parts)
