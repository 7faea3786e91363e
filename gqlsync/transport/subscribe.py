"""The subscribe step of a generated subscription, without a task per operation.

Strawberry runs each subscription as an asyncio task driving a chain of async generators
(its stream, graphql-core's, the field's), kept alive as long as the subscription is
open: about 20 KB per idle subscription. A ``gqlsync.subscription()`` field needs none of
it once it is registered with the hub, which runs its selection set and writes its
frames itself (shared execution). So for those fields the WebSocket handler

1. parses and validates the document through the schema's own extensions (the same
   limits, the same parse cache) — only extensions known to do nothing but that are
   allowed here; any other extension keeps Strawberry's path,
2. coerces the variables and the field's arguments as graphql-core and Strawberry do,
3. calls the field's *opener* (set by :func:`gqlsync.fields.subscription`), which checks
   permissions and registers a :class:`~gqlsync.hub.Subscription` with the hub.

Only the clean case takes this path. A document that does not parse or validate, wrong
variables, an operation that is not exactly one generated field, a permission refusal or
any error at all: the operation is handed to Strawberry's handler unchanged, which
answers it as it always does (the same close codes, the same error messages).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from graphql import parse
from graphql.execution import Executor
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.schema import validate_document
from strawberry.types.arguments import convert_arguments
from strawberry.types.execution import ExecutionContext
from strawberry.types.graphql import OperationType

from gqlsync.execute import OPENER
from gqlsync.hub import Subscription

Opener = Callable[..., Awaitable[Subscription]]


@functools.cache
def _inert_types() -> frozenset[type]:
    """Extensions whose whole effect on a subscription is its parse and validation (or
    that act only on resolvers, which a generated subscription's step does not run).
    Exact classes: a subclass may add hooks of its own."""
    from strawberry.extensions import (
        DisableIntrospection,
        MaxAliasesLimiter,
        ParserCache,
        QueryDepthLimiter,
        ValidationCache,
    )

    from gqlsync.limits import SharedDocuments

    inert: set[type] = {AddValidationRules, DisableIntrospection, MaxAliasesLimiter,
                        MaxTokensLimiter, ParserCache, QueryDepthLimiter, SharedDocuments,
                        ValidationCache}
    try:
        from strawberry_django.optimizer import DjangoOptimizerExtension
        inert.add(DjangoOptimizerExtension)
    except ImportError:  # pragma: no cover
        pass
    return frozenset(inert)


def _inert(extension: SchemaExtension) -> bool:
    return type(extension) in _inert_types()


@dataclass(frozen=True, slots=True)
class Opening:
    """A subscription ready to open: the field's opener and what it is called with."""

    opener: Opener
    info: Any
    arguments: dict[str, Any]


async def prepare(
    schema: Any, query: Any, variables: Any, operation_name: Any, context: Any,
    root_value: Any,
) -> Opening | None:
    """Parse, validate and coerce as Strawberry would; None unless it is one generated
    subscription field and everything is clean (the caller then uses Strawberry's path)."""
    if not isinstance(query, str) or not (variables is None or isinstance(variables, dict)):
        return None
    if not (operation_name is None or isinstance(operation_name, str)):
        return None
    extensions = schema.get_extensions()
    if not all(_inert(extension) for extension in extensions):
        return None
    execution = ExecutionContext(
        query=query, schema=schema, allowed_operations=(OperationType.SUBSCRIPTION,),
        context=context, root_value=root_value, variables=variables,
        provided_operation_name=operation_name,
    )
    for extension in extensions:
        extension.execution_context = execution
    runner = SchemaExtensionsRunner(execution_context=execution, extensions=extensions)
    try:
        # as Strawberry's stream() does: limits set parse options and rules on_operation
        async with runner.operation():
            async with runner.parsing():
                _parse(execution)
            if execution.operation_type is not OperationType.SUBSCRIPTION:
                return None
            async with runner.validation():
                _validate(schema, execution)
    except Exception:  # Strawberry's path will report it properly
        return None
    if execution.pre_execution_errors:
        return None
    document = execution.graphql_document
    assert document is not None
    try:
        return _opening(schema, document, variables, operation_name, context, root_value)
    except Exception:  # as above
        return None


def _parse(execution: ExecutionContext) -> None:
    """Parse the document as Strawberry does, with the options the limits set (a parser
    cache may have set the document already). Our own few lines rather than Strawberry's
    private helper: a missing query simply leaves the operation to Strawberry's path."""
    if execution.graphql_document is None:
        if not execution.query:
            raise ValueError("no query")
        execution.graphql_document = parse(execution.query, **execution.parse_options)


#: (schema, document, rules) that validated cleanly: a thousand clients reconnecting
#: with the same subscription are validated once (bounded, least recently used first)
_valid: OrderedDict[tuple[int, str, str, tuple[type, ...]], None] = OrderedDict()
_VALID_SIZE = 1024


def _validate(schema: Any, execution: ExecutionContext) -> None:
    """Strawberry's validation, remembered when clean. Validation depends only on the
    schema, the document and the rules; the rules are the schema's extensions' (the
    limits build theirs once), so an equal key is an equal verdict."""
    key = (id(schema), execution.query or "", repr(sorted(execution.parse_options.items())),
           tuple(execution.validation_rules))
    if key in _valid:
        _valid.move_to_end(key)
        return
    if execution.validation_rules and execution.pre_execution_errors is None:
        # an extension (the validation cache) may have validated it already
        assert execution.graphql_document is not None
        execution.pre_execution_errors = validate_document(
            schema._schema, execution.graphql_document, tuple(execution.validation_rules))
    if not execution.pre_execution_errors:
        _valid[key] = None
        if len(_valid) > _VALID_SIZE:
            _valid.popitem(last=False)


def _opening(
    schema: Any, document: Any, variables: Any, operation_name: Any, context: Any,
    root_value: Any,
) -> Opening | None:
    """graphql-core's ``execute_subscription`` up to calling the field's resolver."""
    executor = Executor.build(
        schema._schema, document, root_value=root_value, context_value=context,
        raw_variable_values=variables, operation_name=operation_name,
    )
    if not isinstance(executor, Executor):
        return None  # the variables did not coerce: a list of errors
    root = schema._schema.subscription_type
    if root is None:
        return None
    grouped = collect_fields(
        schema._schema, executor.fragments, executor.variable_values, root,
        executor.operation, executor.hide_suggestions,
    ).grouped_field_set
    if len(grouped) != 1:
        return None
    (response_name, details), = grouped.items()
    if len(details) != 1 or details[0].fragment_variable_values is not None:
        return None
    node = details[0].node
    field_def = root.fields.get(node.name.value)
    if field_def is None:
        return None
    strawberry_field = (field_def.extensions or {}).get("strawberry-definition")
    resolver = getattr(strawberry_field, "base_resolver", None)
    opener = getattr(getattr(resolver, "wrapped_func", None), OPENER, None)
    if opener is None or strawberry_field is None or strawberry_field.extensions:
        return None  # field extensions (permission_classes...) run on Strawberry's path
    raw_arguments = get_argument_values(
        field_def, node, executor.variable_values, None, executor.hide_suggestions)
    info = schema.config.info_class(
        _raw_info=executor.build_resolve_info(
            field_def, [node], root, Path(None, response_name, root.name)),
        _field=strawberry_field,
    )
    arguments = convert_arguments(
        raw_arguments, strawberry_field.arguments,
        scalar_registry=schema.schema_converter.scalar_registry, config=schema.config,
        info=info,
    )
    return Opening(opener, info, arguments)


__all__ = ["Opening", "prepare"]
