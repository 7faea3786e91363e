# urls.py: Prometheus scrapes https://<host>/metrics with the token of the setting
# GQLSYNC["METRICS_TOKEN"] (Authorization: Bearer <token>)
from django.urls import path

import gqlsync.metrics

urlpatterns = [
    path("metrics", gqlsync.metrics.view),  # 401 without the token; 403 while none is set
    # ... your other routes
]
