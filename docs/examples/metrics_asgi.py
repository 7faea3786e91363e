# asgi.py: /metrics beside the GraphQL route, for Prometheus only: it answers the bearer
# token of the setting GQLSYNC["METRICS_TOKEN"], as gqlsync.metrics.view does
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path, re_path

django_application = get_asgi_application()  # sets Django up before the schema is imported

import gqlsync.asgi  # noqa: E402
import gqlsync.metrics  # noqa: E402
from schema_examples.schema import schema  # noqa: E402

graphql = gqlsync.asgi.application(schema, django_application=django_application)

application = ProtocolTypeRouter({
    "http": URLRouter([
        path("metrics", gqlsync.metrics.app),
        re_path(r"", graphql),  # everything else: GraphQL, GraphiQL, your Django views
    ]),
    "websocket": graphql,
})
