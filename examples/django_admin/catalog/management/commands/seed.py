"""`manage.py seed`: the example's users (an admin, bob on the support staff) and the support group."""

from django.contrib.auth.models import Group, Permission, User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the example's users and group (passwords from the arguments)."

    def add_arguments(self, parser):
        parser.add_argument("--password", required=True)

    def handle(self, *args, password, **options):
        User.objects.create_superuser("admin", "admin@example.com", password)
        bob = User.objects.create_user("bob", "bob@acme.example", password, is_staff=True)
        bob.user_permissions.add(*Permission.objects.filter(content_type__app_label="catalog"))
        Group.objects.create(name="support")
