from django.apps import AppConfig


class TickerConfig(AppConfig):
    name = "ticker"
    verbose_name = "Ticker"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the admin → control-group announcements)
