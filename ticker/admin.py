from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from .models import Candle, Market, Symbol, Watchlist
from .signals import announce_after_commit


class SymbolForm(forms.ModelForm):
    def clean_ticker(self) -> str:
        # Upper-case before the model's validators and the uniqueness check see it.
        return str(self.cleaned_data["ticker"]).strip().upper()


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    form = SymbolForm
    list_display = ["ticker", "name", "exchange", "currency", "active", "prev_close", "tick_size", "vendor_symbol"]
    list_filter = ["active", "exchange", "currency"]
    search_fields = ["ticker", "name", "vendor_symbol"]
    list_editable = ["active"]
    actions = ["pause", "resume"]

    @admin.action(description="Pause selected symbols (stop their ticks)")
    def pause(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        self._set_active(request, queryset, False)

    @admin.action(description="Resume selected symbols")
    def resume(self, request: HttpRequest, queryset: QuerySet[Symbol]) -> None:
        self._set_active(request, queryset, True)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Symbol], active: bool) -> None:
        # update() sends no post_save, so announce the change ourselves.
        count = queryset.update(active=active)
        announce_after_commit()
        self.message_user(request, f"{count} symbol(s) {'resumed' if active else 'paused'}.", messages.SUCCESS)


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ["symbol", "start", "open", "high", "low", "close", "volume"]
    list_filter = ["symbol"]
    date_hierarchy = "start"


@admin.register(Watchlist)
class WatchlistAdmin(admin.ModelAdmin):
    list_display = ["user", "updated"]
    readonly_fields = ["updated"]


@admin.register(Market)
class MarketAdmin(admin.ModelAdmin):
    """One row: tick "halted" and give a reason to stop every symbol; every page shows the reason
    within a second. Untick to reopen: the symbols tick again as they were."""

    list_display = ["__str__", "halted", "reason", "changed"]
    fields = ["halted", "reason"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, object] | None = None) -> HttpResponse:
        Market.current()  # the one row exists, to be edited
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Market | None = None) -> bool:
        return False
