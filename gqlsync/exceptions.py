"""The errors gqlsync raises.

::

    GQLSyncError
    ├── ConfigurationError      a setting or a registration is wrong (raised at start-up)
    ├── NotRegisteredError      a model was used that gqlsync does not track
    └── SubscriptionEnded       a subscription was ended by the server
        ├── SlowConsumerError   its client did not keep up; it may resubscribe
        └── ResyncRequired      it cannot be caught up: refetch, then subscribe anew

``SubscriptionEnded`` and its children reach the client as a GraphQL error on that one
operation; the connection and its other subscriptions go on.
"""

from __future__ import annotations

from graphql import GraphQLError


class GQLSyncError(Exception):
    """Base class of every gqlsync error."""


class ConfigurationError(GQLSyncError):
    """A setting or a registration is wrong."""


class NotRegisteredError(GQLSyncError):
    """The model is not tracked: decorate it with ``@gqlsync.register``."""


class SubscriptionEnded(GQLSyncError, GraphQLError):
    """The server ended this subscription.

    A GraphQL error too, so that its ``extensions.code`` reaches the client whichever
    path the subscription runs on (gqlsync's own, or Strawberry's for ``listen()``).
    """

    #: ``extensions.code`` of the GraphQL error the client receives
    code = "SUBSCRIPTION_ENDED"

    def __init__(self, message: str) -> None:
        GraphQLError.__init__(self, message, extensions={"code": self.code})


class SlowConsumerError(SubscriptionEnded):
    """The subscription's queue overflowed because its client did not read fast enough."""

    code = "SLOW_CONSUMER"


class ResyncRequired(SubscriptionEnded):
    """The subscription cannot be brought up to date from events: its ``after`` cursor is
    older than the replay log keeps (or from a log that has restarted), a message was
    lost on the way, or what its permission depends on changed while it was away. The
    client refetches its query and subscribes again from the new state."""

    code = "RESYNC"
