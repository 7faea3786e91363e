"""``manage.py gqlsync``: publish a change, ask the running hubs, export the schema.

Three subcommands, for shell scripts, cron jobs and client tooling:

``publish``
    A thin command line over :func:`gqlsync.notify`: tell subscribers that rows of a
    registered model changed behind the ORM's back (raw SQL, another program, a restore).
    Like ``notify()`` it publishes a *change of a row*, not a payload: subscribers read
    the row from the database, through their filters and permissions, exactly as for a
    ``save()``. The events go out when the command's transaction commits, to the same
    groups ``save()`` sends to. Every input is checked before anything is published.
``stats``
    This process runs no hub: it asks the ASGI workers' hubs over the channel layer
    (:mod:`gqlsync.control`) and prints what each holds.
``schema``
    The schema's SDL, as ``strawberry export-schema`` prints it, from a process where
    Django is set up (a strawberry-django schema cannot be imported before that).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import sys
from argparse import ArgumentParser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, router, transaction

from gqlsync import broker, control, registry
from gqlsync.capture import notify
from gqlsync.events import Op

#: what one item of ``--data`` may say
_DATA_KEYS = {"pk", "op", "changed"}


class Command(BaseCommand):
    help = "Publish changes, show what the running hubs hold, or export the GraphQL schema."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="subcommand", required=True,
                                         metavar="{publish,stats,schema}")

        publish = commands.add_parser(
            "publish", help="Publish changes to rows of a registered model (gqlsync.notify).",
            description="Publish changes to rows of a registered model, as gqlsync.notify() "
                        "does: subscribers reload each row, through their filters and "
                        "permissions. Sent when the command's transaction commits.")
        publish.add_argument(
            "target", help="the model's label (bookstore.book) or its group "
                           "(gqlsync.bookstore.book; a row's group names its row)")
        publish.add_argument("pks", nargs="*", metavar="pk", help="primary keys of the rows")
        publish.add_argument("--op", default="UPDATED", type=str.upper,
                             choices=[op.value for op in Op],
                             help="what happened to the rows (default UPDATED)")
        publish.add_argument("--changed", action="append", default=[], metavar="FIELD[,FIELD]",
                             help="fields that changed (repeat, or separate with commas)")
        publish.add_argument(
            "--data", metavar="JSON",
            help='more rows as JSON: {"pk": 42, "op": "UPDATED", "changed": ["title"]}, '
                 'a list of such objects or of primary keys; "-" reads it from stdin')
        publish.add_argument("--database", default=None,
                             help="the database alias whose commit publishes (default: "
                                  "the model's database for writes)")

        stats = commands.add_parser(
            "stats", help="Show what the running hubs hold, across processes.",
            description="Ask every running hub over the channel layer and print one row "
                        "per hub and a total.")
        stats.add_argument("--timeout", type=float, default=1.0,
                           help="seconds to wait for replies (default 1)")
        stats.add_argument("--json", action="store_true", help="print JSON")

        schema = commands.add_parser(
            "schema", help="Print the schema's SDL (as strawberry export-schema does).",
            description="Export the GraphQL schema in SDL for client tooling (GraphQL Code "
                        "Generator, Apollo).")
        schema.add_argument(
            "--schema", dest="schema_path", metavar="MODULE[:SYMBOL]",
            help="the schema: module:symbol as strawberry export-schema takes it "
                 "(module alone means module:schema), or module.symbol; a callable "
                 "returning the schema works too")
        schema.add_argument("--out", "--output", "-o", dest="out", metavar="FILE",
                            help="write to FILE instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "publish":
            self.publish(options)
        elif subcommand == "stats":
            self.stats(options)
        else:
            self.schema(options)

    # ------------------------------------------------------------------ publish

    def publish(self, options: dict[str, Any]) -> None:
        reg, row_pk = _target(options["target"])
        model = reg.model
        op = Op(options["op"])
        changed = _fields(reg, [n for item in options["changed"] for n in item.split(",") if n])
        items: list[tuple[Any, Op, tuple[str, ...]]] = []
        raw_pks = list(options["pks"])
        if row_pk is not None:
            raw_pks.insert(0, row_pk)
        for raw in raw_pks:
            items.append((_pk(reg, raw), op, changed))
        if options["data"] is not None:
            for entry in _data(options["data"]):
                if not isinstance(entry, dict):
                    entry = {"pk": entry}
                unknown = set(entry) - _DATA_KEYS
                if unknown:
                    raise CommandError(
                        f"--data: unknown key(s) {', '.join(sorted(map(repr, unknown)))} "
                        f"in {json.dumps(entry)}; an item has \"pk\", and may have \"op\" "
                        "and \"changed\". gqlsync events carry no payload: subscribers "
                        "read the row from the database.")
                if "pk" not in entry:
                    raise CommandError(f'--data: {json.dumps(entry)} has no "pk"')
                entry_op = _op(entry.get("op", op.value))
                names = entry.get("changed", list(changed))
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise CommandError(f'--data: "changed" must be a list of field names, '
                                       f"in {json.dumps(entry)}")
                items.append((_pk(reg, entry["pk"]), entry_op, _fields(reg, names)))
        if not items:
            raise CommandError("Nothing to publish: give primary keys, or --data.")
        db: str = options["database"] or router.db_for_write(model)
        if db not in connections:
            raise CommandError(f"No database {db!r}; known: {', '.join(connections)}")
        self._warn_rows(reg, items, db)
        layer = broker.get_layer()
        if control.is_in_memory(layer):
            self.stderr.write(
                "Note: the channel layer is Channels' in-memory layer, which never leaves "
                "this process: no ASGI worker will receive these events. Give this command "
                "the workers' CHANNEL_LAYERS (channels-redis).")
        # One transaction: the events go out together at its commit, coalesced per row,
        # as the changes of one save() transaction do.
        with _failures() as failures:
            try:
                with transaction.atomic(using=db):
                    for pk, item_op, names in items:
                        notify(model, pk, item_op, changed=names, using=db)
            except Exception as error:
                failures.append(_describe(error))
        if failures:
            raise CommandError("Publishing failed (is the channel layer reachable?): "
                               + "; ".join(failures))
        if options["verbosity"] >= 1:
            rows = len({pk for pk, _, _ in items})
            self.stdout.write(
                f"Published changes to {rows} row(s) of {reg.label} "
                f"({broker.model_group(reg.label)}).")

    def _warn_rows(self, reg: registry.Registration,
                   items: list[tuple[Any, Op, tuple[str, ...]]], db: str) -> None:
        """Say which rows subscribers will not find as the operation implies (a typo in
        a primary key would otherwise publish into the void without a word)."""
        pks = {pk for pk, _, _ in items}
        existing = set(reg.model._base_manager.using(db).filter(pk__in=pks)
                       .values_list("pk", flat=True))
        missing = sorted({str(pk) for pk, op, _ in items
                          if op is not Op.DELETED and pk not in existing})
        present = sorted({str(pk) for pk, op, _ in items
                          if op is Op.DELETED and pk in existing})
        if missing:
            self.stderr.write(
                f"Warning: no {reg.label} row with pk {', '.join(missing)}: subscribers "
                "will receive nothing for it.")
        if present:
            self.stderr.write(
                f"Warning: {reg.label} {', '.join(present)} still exist(s): DELETED is "
                "sent anyway, while queries still return the row.")

    # ------------------------------------------------------------------ stats

    def stats(self, options: dict[str, Any]) -> None:
        timeout: float = options["timeout"]
        if timeout <= 0:
            raise CommandError("--timeout must be more than 0 seconds")
        layer = broker.get_layer()
        layer_name = f"{type(layer).__module__}.{type(layer).__qualname__}"
        in_memory = control.is_in_memory(layer)
        if in_memory:
            self.stderr.write(
                "Note: the channel layer is Channels' in-memory layer: messages never leave "
                "this process, so only a hub running in this process can answer, and the "
                "ASGI workers' hubs cannot. Asking them needs a shared layer: channels-redis, "
                "configured here as the workers have it.")
        try:
            hubs = async_to_sync(control.ask)(timeout)
        except Exception as error:
            raise CommandError(
                f"The channel layer could not be reached: {_describe(error)}") from error
        hubs.sort(key=lambda h: (str(h.get("host")), int(h.get("pid") or 0)))
        total = control.total(hubs)
        if options["json"]:
            self.stdout.write(json.dumps({
                "layer": layer_name, "cross_process": not in_memory, "timeout": timeout,
                "hubs": hubs, "total": {"hubs": len(hubs), **total},
            }, indent=2, sort_keys=True))
            return
        if not hubs:
            self.stdout.write(
                f"No hub answered within {timeout:g} s ({layer_name}). A worker starts its "
                "hub with the first WebSocket that subscribes or signs in; check that this "
                "command has the workers' CHANNEL_LAYERS and GQLSYNC[\"GROUP_PREFIX\"].")
            return
        self.stdout.write(_table(hubs, total))

    # ------------------------------------------------------------------ schema

    def schema(self, options: dict[str, Any]) -> None:
        selector = options["schema_path"]
        if not selector:
            raise CommandError(
                "Which schema? Give --schema module:symbol (as strawberry export-schema "
                "takes it), e.g. --schema myproject.schema:schema.")
        from strawberry.printer import print_schema

        text = print_schema(load_schema(selector))
        out = options["out"]
        if out:
            Path(out).write_text(text + "\n", encoding="utf-8")
            self.stdout.write(f"Schema exported to {out}")
        else:
            self.stdout.write(text)


# --------------------------------------------------------------------------- helpers


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({_describe(record.exc_info[1])})"
        self.into.append(text)


#: where a failed publish is reported: capture and the broker log it (a committed write
#: must not raise), and Django logs a failed commit hook
_PUBLISH_LOGGERS = ("gqlsync", "django.db.backends.base")


@contextlib.contextmanager
def _failures() -> Iterator[list[str]]:
    """The errors logged while publishing: the write path logs them rather than raise,
    which is right for a request whose write committed, and wrong for a command whose
    only job is the publish (a cron job must exit non-zero)."""
    found: list[str] = []
    handler = _Collect(found)
    loggers = [logging.getLogger(name) for name in _PUBLISH_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield found
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _describe(error: BaseException) -> str:
    """The error, and the one it happened while handling (the cause, when a handler
    failed in turn)."""
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    return f"{text}, while handling {type(cause).__name__}: {cause}" if cause else text


def _target(text: str) -> tuple[registry.Registration, str | None]:
    """The registration named by a model label or a group name, and the row a row
    group names (``None`` for a model)."""
    label = text.lower()
    found = {reg.label: reg for reg in registry.registrations()}
    if label in found:
        return found[label], None
    for reg in found.values():
        group = broker.model_group(reg.label)
        if text == group:
            return reg, None
        if text.startswith(group + "."):
            # a row's group: its key as written (keys gqlsync had to hash, such as
            # UUIDs, cannot be read back: give those as pk arguments)
            return reg, text[len(group) + 1:]
    if label.count(".") == 1:
        try:
            apps.get_model(label)
        except (LookupError, ValueError):
            pass
        else:
            raise CommandError(
                f"{label} is a model, but not registered with gqlsync: decorate it with "
                "@gqlsync.register in its models.py (so that every process, this command "
                "included, registers it).")
    known = ", ".join(sorted(found)) or "none"
    raise CommandError(f"Unknown model or group {text!r}; registered models: {known}.")


def _pk(reg: registry.Registration, raw: Any) -> Any:
    """``raw`` as the model's primary key (``"42"`` is the integer 42, as events carry it)."""
    field = reg.model._meta.pk
    assert field is not None
    if isinstance(raw, bool | dict | list) or raw is None:
        raise CommandError(f"{raw!r} is not a primary key of {reg.label}")
    try:
        return field.to_python(raw)
    except ValidationError as error:
        raise CommandError(f"{raw!r} is not a primary key of {reg.label}: "
                           f"{' '.join(error.messages)}") from None


def _op(value: Any) -> Op:
    try:
        return Op(str(value).upper())
    except ValueError:
        raise CommandError(f"--data: unknown op {value!r}; one of "
                           f"{', '.join(op.value for op in Op)}") from None


def _fields(reg: registry.Registration, names: list[str]) -> tuple[str, ...]:
    for name in names:
        try:
            reg.model._meta.get_field(name)
        except FieldDoesNotExist:
            raise CommandError(f"{reg.label} has no field {name!r}") from None
    return tuple(names)


def _data(value: str) -> list[Any]:
    source = "stdin" if value == "-" else "--data"
    text = sys.stdin.read() if value == "-" else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"{source} is not valid JSON: {error.msg} (line {error.lineno}, "
                           f"column {error.colno})") from None
    return data if isinstance(data, list) else [data]


def load_schema(selector: str) -> Any:
    """The strawberry ``Schema`` named by ``selector``, read as ``strawberry
    export-schema`` reads it (``module:symbol``; ``module`` alone means
    ``module:schema``; a callable is called), and also as ``module.symbol``."""
    from strawberry import Schema

    if ":" in selector:
        candidates = [tuple(selector.split(":", 1))]
    else:
        candidates = [(selector, "schema")]
        if "." in selector:
            candidates.append(tuple(selector.rsplit(".", 1)))
    symbol: Any = None
    misses: list[str] = []
    for module_name, symbol_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                misses.append(f"no module {module_name!r}")
                continue
            raise CommandError(f"Importing {module_name} failed: {error}") from error
        except Exception as error:  # the module itself is broken: say so, do not guess on
            raise CommandError(f"Importing {module_name} failed: "
                               f"{type(error).__name__}: {error}") from error
        try:
            symbol = module
            for attribute in symbol_name.split("."):
                symbol = getattr(symbol, attribute)
        except AttributeError:
            misses.append(f"{module_name} has no {symbol_name!r}")
            symbol = None
            continue
        break
    if symbol is None:
        raise CommandError(f"No schema at {selector!r}: {'; '.join(misses)}.")
    if callable(symbol) and not isinstance(symbol, Schema | type):
        try:
            symbol = symbol()  # a factory, as strawberry export-schema allows
        except Exception as error:
            raise CommandError(f"Calling {selector} failed: "
                               f"{type(error).__name__}: {error}") from error
    if not isinstance(symbol, Schema):
        what = f"the class {symbol.__name__}" if isinstance(symbol, type) else (
            f"a {type(symbol).__name__}")
        raise CommandError(f"{selector!r} is {what}, not a strawberry.Schema")
    return symbol


def _table(hubs: list[dict[str, Any]], total: dict[str, int]) -> str:
    columns = [("HOST", "host"), ("PID", "pid"), ("CONNECTIONS", "connections"),
               ("USERS", "users"), ("SUBSCRIPTIONS", "subscriptions"), ("GROUPS", "groups"),
               ("EVENTS", "events"), ("DELIVERIES", "deliveries"), ("ERRORS", "errors"),
               ("DROPPED", "dropped"), ("RESYNCED", "resynced")]
    rows = [[str(hub.get(key, "")) for _, key in columns] for hub in hubs]
    rows.append([f"TOTAL ({len(hubs)} hub{'s' if len(hubs) != 1 else ''})", ""]
                + [str(total.get(key, 0)) for _, key in columns[2:]])
    widths = [max(len(title), *(len(row[i]) for row in rows))
              for i, (title, _) in enumerate(columns)]
    lines = ["  ".join(title.ljust(w) if i < 1 else title.rjust(w)
                       for i, ((title, _), w) in enumerate(zip(columns, widths, strict=True)))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) if i < 1 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)
