# asgi.py: /metrics beside the GraphQL route, for Prometheus only (a bearer token)
import os

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path, re_path

django_application = get_asgi_application()  # sets Django up before the schema is imported

import gqlsync.asgi  # noqa: E402
import gqlsync.metrics  # noqa: E402
from schema_examples.schema import schema  # noqa: E402

graphql = gqlsync.asgi.application(schema, django_application=django_application)
metrics = gqlsync.metrics.make_app(token=os.environ["METRICS_TOKEN"])

application = ProtocolTypeRouter({
    "http": URLRouter([
        path("metrics", metrics),
        re_path(r"", graphql),  # everything else: GraphQL, GraphiQL, your Django views
    ]),
    "websocket": graphql,
})
