from django.db import models

import gqlsync


@gqlsync.register
class Item(models.Model):
    title = models.CharField(max_length=100)
    group = models.IntegerField(default=0)
    #: ``time.time()`` just before the writer saved the row: latency = receive time - sent_at
    sent_at = models.FloatField(default=0.0)

    objects = gqlsync.TrackedManager()
