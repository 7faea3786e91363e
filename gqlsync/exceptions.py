"""The errors gqlsync raises.

::

    GQLSyncError
    ├── ConfigurationError      a setting or a registration is wrong (raised at start-up)
    ├── NotRegisteredError      a model was used that gqlsync does not track
    └── SubscriptionEnded       a subscription was ended by the server
        └── SlowConsumerError   its client did not keep up; it may resubscribe

``SubscriptionEnded`` and its children reach the client as a GraphQL error on that one
operation; the connection and its other subscriptions go on.
"""

from __future__ import annotations


class GQLSyncError(Exception):
    """Base class of every gqlsync error."""


class ConfigurationError(GQLSyncError):
    """A setting or a registration is wrong."""


class NotRegisteredError(GQLSyncError):
    """The model is not tracked: decorate it with ``@gqlsync.register``."""


class SubscriptionEnded(GQLSyncError):
    """The server ended this subscription."""


class SlowConsumerError(SubscriptionEnded):
    """The subscription's queue overflowed because its client did not read fast enough."""
