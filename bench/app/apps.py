from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "bench.app"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"
