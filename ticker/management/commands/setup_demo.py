import os
import secrets
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ticker.seed import MAX_SYNTHETIC, seed_demo_symbols, seed_symbols


def check_production_password(password: str) -> None:
    """CommandError unless ``password`` passes AUTH_PASSWORD_VALIDATORS for the user ``admin``."""
    try:
        validate_password(password, get_user_model()(username="admin", email="admin@localhost"))
    except ValidationError as exc:
        raise CommandError(
            "DJANGO_SUPERUSER_PASSWORD is too weak for production: " + " ".join(exc.messages)
            + " Choose another (e.g. `openssl rand -base64 18`) or leave it empty to have one generated."
        ) from exc


class Command(BaseCommand):
    help = (
        "Seed the demo symbols (those missing) and create the admin user 'admin' if there is none; "
        "its password comes from DJANGO_SUPERUSER_PASSWORD (in production it must pass the password "
        "validators) or is generated and printed once. "
        "--symbols N tops the board up to N symbols with made-up ones (load tests of the page)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--symbols", type=int, default=0, help="list at least this many symbols in all")

    def handle(self, *args: Any, **options: Any) -> None:
        total = options["symbols"]
        if not 0 <= total <= MAX_SYNTHETIC:
            raise CommandError(f"--symbols must be between 0 and {MAX_SYNTHETIC}")
        users = get_user_model()
        chosen = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        creating = not users.objects.filter(username="admin").exists()
        if creating and chosen and settings.PRODUCTION:
            check_production_password(chosen)  # before anything is written
        created = seed_symbols()
        if total:
            created += seed_demo_symbols(total)
        self.stdout.write(f"symbols: {created} created")
        if not creating:
            self.stdout.write("admin user: exists (password unchanged)")
            return
        password = chosen or secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@localhost", password)
        if chosen:
            self.stdout.write("admin user: created with DJANGO_SUPERUSER_PASSWORD")
        else:
            self.stdout.write(self.style.SUCCESS(f"admin user: created, password {password}  (shown once)"))
