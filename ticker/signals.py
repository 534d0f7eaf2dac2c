"""Admin changes to symbols and to the market reach the feed and every open page through the
control group."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .layer.bus import announce_symbols
from .models import Market, Symbol


def announce_after_commit() -> None:
    """Send the whole symbol list once the change is committed (so the feed reads it back)."""
    transaction.on_commit(lambda: announce_symbols(Symbol.wire_list(), Market.wire()))


@receiver(post_save, sender=Market)
@receiver(post_save, sender=Symbol)
@receiver(post_delete, sender=Symbol)
def symbol_changed(sender: type[Symbol] | type[Market], **kwargs: object) -> None:
    announce_after_commit()
