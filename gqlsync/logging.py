"""Refusals are answers, not faults: keep them out of Strawberry's error log.

Strawberry logs every error of an operation on the ``strawberry.execution`` logger, at
ERROR, with the traceback of the exception a resolver raised. A user who is not signed in,
or who asks for a row that is not theirs, is refused by a permission (a
:class:`~gqlsync.permissions.RefusalError`): a normal answer, which in that log reads like
a crash, and drowns the real ones.

:class:`RefusalFilter` turns such a record into one line at INFO, without traceback
(``gqlsync refused editMessage: FORBIDDEN You may not change this message.``), and leaves
every other record as it was: a resolver that fails still logs at ERROR with its
traceback. gqlsync adds it to the ``strawberry.execution`` logger at start-up (its app's
``ready()``), so there is nothing to configure. To see the refusals, let INFO through on
that logger (``"strawberry.execution": {"level": "INFO"}`` in ``LOGGING``).

It is the same split Django makes for views: a 4xx is not logged as an error.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

from gqlsync.permissions import RefusalError

#: the logger Strawberry reports the errors of every operation on
STRAWBERRY_LOGGER = "strawberry.execution"


class RefusalFilter(logging.Filter):
    """On a logger: a record of a refusal becomes one line at INFO, dropped unless the
    logger lets INFO through; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        refusal = _refusal_in(record)
        if refusal is None:
            return True
        error = record.msg
        path = ".".join(str(key) for key in getattr(error, "path", None) or ())
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg = "gqlsync refused %s: %s %s"
        record.args = (path or "the operation", refusal.refusal.code,
                       refusal.message)
        record.exc_info = record.exc_text = None
        record.stack_info = None
        # the logger let the record through at ERROR; at INFO it may not
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def _refusal_in(record: logging.LogRecord) -> RefusalError | None:
    """The refusal a record reports: the error itself (Strawberry logs the error and
    its original exception), or the one it wraps."""
    error = record.msg
    if isinstance(error, RefusalError):
        return error
    if isinstance(error, GraphQLError) and isinstance(error.original_error, RefusalError):
        return error.original_error
    return None


def install() -> None:
    """Add :class:`RefusalFilter` to Strawberry's logger (once)."""
    logger = logging.getLogger(STRAWBERRY_LOGGER)
    if not any(isinstance(f, RefusalFilter) for f in logger.filters):
        logger.addFilter(RefusalFilter())
