"""`python manage.py seed`: the walk-through's people and prompts (idempotent)."""

from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand

from prompts.models import Prompt

# (username, password, superuser): ops is the vendor's support engineer, the others customers' admins.
PEOPLE = [("ops", "ops-pw-0", True), ("alice", "alice-pw-1", False), ("bob", "bob-pw-2", False)]


class Command(BaseCommand):
    """Create the users (staff, allowed to edit prompts) and two tenants' prompts."""

    help = "Create the walk-through's users and prompts."

    def handle(self, *args, **options):
        editing = Permission.objects.filter(content_type__app_label="prompts")
        for username, password, superuser in PEOPLE:
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True,
                                                                                   "is_superuser": superuser})
            if created:
                user.set_password(password)
                user.save()
                user.user_permissions.set(editing)
        for tenant in ("acme", "globex"):
            Prompt.objects.get_or_create(tenant=tenant, name="support",
                                         defaults={"text": f"You answer {tenant}'s support questions."})
            Prompt.objects.get_or_create(tenant=tenant, name="sales",
                                         defaults={"text": f"You describe {tenant}'s plans.", "max_tokens": 256})
        self.stdout.write("seeded: ops (superuser), alice, bob; prompts of acme and globex")
