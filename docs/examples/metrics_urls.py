# urls.py: Prometheus scrapes https://<host>/metrics
from django.urls import path

import gqlsync.metrics

urlpatterns = [
    path("metrics", gqlsync.metrics.view),
    # ... your other routes
]
