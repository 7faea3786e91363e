"""The demo's schema: the bookstore and chat apps merged into one."""

import strawberry
from strawberry.tools import merge_types
from strawberry_django.optimizer import DjangoOptimizerExtension

from schema_examples.bookstore import schema as bookstore
from schema_examples.chat import schema as chat

Query = merge_types("Query", (bookstore.Query, chat.Query))
Mutation = merge_types("Mutation", (bookstore.Mutation, chat.Mutation))
Subscription = merge_types("Subscription", (bookstore.Subscription, chat.Subscription))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[DjangoOptimizerExtension],
)
