# chat/permissions.py: what a refused client is told, per check, in your own words
from django.db.models import Q

import gqlsync
from gqlsync.auth import User


class OwnMessages(gqlsync.Permission):
    """Signed-in users read and change the messages they wrote."""

    messages = {
        "authenticated": "Sign in to see your messages.",  # UNAUTHENTICATED
        "object": "Only its author may {action} this message.",  # FORBIDDEN
    }

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        return Q(author=user.pk) if user.is_authenticated else Q(pk__in=[])


class PaidPlan(gqlsync.Permission):
    """A check of your own: failed_check() names it, messages words it."""

    messages = {"plan": "Live updates need a paid plan."}

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated and user.groups.filter(name="paid").exists())

    def failed_check(self, user: User) -> str:
        if user.is_authenticated:
            return "plan"
        return super().failed_check(user)  # "authenticated": "You must be signed in."


# the shipped rules take messages= for theirs
editors = gqlsync.IsStaff(messages={"staff": "Editors only."})
readers = gqlsync.DjangoPerms("chat.view_message",
                              messages={"perms": "Ask an admin for {perms}."})
