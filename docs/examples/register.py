# models.py: choose which field values may travel in events
from django.db import models

import gqlsync


@gqlsync.register(exclude=["password_hint"])
class Customer(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField()
    password_hint = models.CharField(max_length=100, blank=True)

    objects = gqlsync.TrackedManager()


@gqlsync.register(fields=["customer", "status"])
class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    status = models.CharField(max_length=20)
    internal_notes = models.TextField(blank=True)

    objects = gqlsync.TrackedManager()
