from django.db import models

import gqlsync


@gqlsync.register
class Item(models.Model):
    title = models.CharField(max_length=100)
    group = models.IntegerField(default=0)
    #: ``time.time()`` just before the writer saved the row: latency = receive time - sent_at
    sent_at = models.FloatField(default=0.0)

    objects = gqlsync.TrackedManager()


@gqlsync.register
class Member(models.Model):
    """Who may see which group's items, as a chat room's members may see its messages:
    the rule of the ``scoped`` and ``bigtable`` scenarios (:mod:`bench.app.rules`)."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="bench_groups")
    group = models.IntegerField()

    objects = gqlsync.TrackedManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "group"],
                                               name="bench_member_user_group")]
