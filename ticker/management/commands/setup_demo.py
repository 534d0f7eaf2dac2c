import os
import secrets
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ticker.seed import MAX_SYNTHETIC, seed_demo_symbols, seed_symbols


class Command(BaseCommand):
    help = (
        "Seed the demo symbols (those missing) and create the admin user 'admin' if there is none; "
        "its password comes from DJANGO_SUPERUSER_PASSWORD or is generated and printed once. "
        "--symbols N tops the board up to N symbols with made-up ones (load tests of the page)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--symbols", type=int, default=0, help="list at least this many symbols in all")

    def handle(self, *args: Any, **options: Any) -> None:
        total = options["symbols"]
        if not 0 <= total <= MAX_SYNTHETIC:
            raise CommandError(f"--symbols must be between 0 and {MAX_SYNTHETIC}")
        created = seed_symbols()
        if total:
            created += seed_demo_symbols(total)
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
