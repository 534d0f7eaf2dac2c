"""Which failed sign-ins count against a sign-in: per address, and per account (django-axes'
``AXES_LOCKOUT_PARAMETERS`` callable), for the traders' sign-in page and the admin's login alike.

The policy, within the cool-off time (``AXES_COOLOFF_TIME``, 15 minutes):

- **Per address**: ``AXES_FAILURE_LIMIT`` (5) failures from one address lock that address out,
  whatever the account and the password.
- **Per account**: ``TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT`` (20) failures at one username, from any
  addresses, close that account to every address it has never signed in from (axes' access log)
  until the oldest of them cools off. So however many addresses a stranger has, an account takes
  at most that many guesses per cool-off, and the stranger cannot lock its trader out: from an
  address the trader signed in from before, only that address's own count applies. A trader on
  a new address while the account is under attack waits out the cool-off (or an operator runs
  ``manage.py axes_reset_username NAME``).
"""

from __future__ import annotations

from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.helpers import get_client_username
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest

Parameters = list[str | list[str]]
BY_ADDRESS: Parameters = ["ip_address"]
BY_ADDRESS_AND_ACCOUNT: Parameters = ["ip_address", "username"]


def account_failures(request: HttpRequest, username: str) -> int:
    """Failed sign-ins at ``username`` within the cool-off, from every address."""
    recent = AccessAttempt.objects.filter(username=username, attempt_time__gte=get_cool_off_threshold(request))
    return int(recent.aggregate(total=Sum("failures_since_start"))["total"] or 0)


def signed_in_from(username: str, address: str | None) -> bool:
    """Whether ``username`` has signed in successfully from ``address`` before."""
    return bool(AccessLog.objects.filter(username=username, ip_address=address).exists())


def lockout_parameters(request: Any, credentials: dict[str, Any] | None = None) -> Parameters:
    """The counts that apply to this sign-in: the address's own, and the account's once it has
    reached its limit and the address is not one the account has signed in from.

    Axes locks when any count reaches ``AXES_FAILURE_LIMIT``; an account's count is only named
    here once it has reached its own (higher) limit, so naming it locks. Called by axes with a
    request (or, in places the database handler does not use, a stored attempt: the address alone).
    """
    if not isinstance(request, HttpRequest):
        return BY_ADDRESS
    username = get_client_username(request, credentials)
    if not username or account_failures(request, username) < settings.TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT:
        return BY_ADDRESS
    if signed_in_from(username, getattr(request, "axes_ip_address", None)):
        return BY_ADDRESS
    return BY_ADDRESS_AND_ACCOUNT
