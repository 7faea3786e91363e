# monitoring/apps.py: gqlsync's metrics in a /metrics you already serve (and protect:
# that route is yours, gqlsync's token does not guard it)
from django.apps import AppConfig
from prometheus_client import CollectorRegistry

import gqlsync.metrics


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        # django-prometheus (and prometheus_client's make_asgi_app()) serve the default
        # registry, prometheus_client.REGISTRY: add gqlsync's collector to it, once
        gqlsync.metrics.register()


# or a registry of your own, served however you like
registry = CollectorRegistry()
gqlsync.metrics.register(registry)
