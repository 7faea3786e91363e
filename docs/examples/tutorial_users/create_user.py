# python manage.py shell -v 0 < create_user.py      (prints dana's token)
# the demo: DJANGO_SETTINGS_MODULE=schema_examples.settings django-admin shell -v 0 < ...
from django.contrib.auth import get_user_model

import gqlsync
from schema_examples.chat.models import Room

dana = get_user_model().objects.create_user("dana", password="dana-pass")
general, _ = Room.objects.get_or_create(name="general")
general.members.add(dana)  # dana may now read #general
print(gqlsync.make_token(dana))  # a bearer token: signed, expires, void on a new password
