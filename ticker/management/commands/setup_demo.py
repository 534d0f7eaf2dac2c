import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from ticker.seed import seed_symbols


class Command(BaseCommand):
    help = (
        "Seed the demo symbols (those missing) and create the admin user 'admin' if there is none; "
        "its password comes from DJANGO_SUPERUSER_PASSWORD or is generated and printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created = seed_symbols()
        self.stdout.write(f"symbols: {created} created")
        users = get_user_model()
        if users.objects.filter(username="admin").exists():
            self.stdout.write("admin user: exists (password unchanged)")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@localhost", password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write("admin user: created with DJANGO_SUPERUSER_PASSWORD")
        else:
            self.stdout.write(self.style.SUCCESS(f"admin user: created, password {password}  (shown once)"))
