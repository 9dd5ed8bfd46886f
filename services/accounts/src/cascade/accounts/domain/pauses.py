"""Delinquency pauses, in Apache Fineract's manner: append-only pause and resume actions.

A pause covers its start date up to, not including, its end date (None: until resumed);
those days do not count as past due. Rules (Fineract's DelinquencyActionParseAndValidator,
adapted): open accounts only; the pause starts on or after the opening date, lasts at
least a day and overlaps no other pause; a resume ends an active pause on the current
business date. Nothing is edited or deleted: a resume shortens the pause's effective end.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from cascade.accounts.domain import events
from cascade.accounts.domain.account import Account
from cascade.accounts.domain.model import Pause, Policy


class PauseRefused(Exception):
    """A pause or resume the rules do not allow; the message says which rule."""


class PauseNotFound(Exception):
    """No pause with this id on this account."""


def start_pause(account: Account, pause: Pause, *, as_of: date | None, policy: Policy) -> None:
    """Adds `pause` to the account and reassesses it at once."""
    profile = account.profile
    if profile is None or account.is_closed:
        raise PauseRefused("only an open account can be paused")
    if pause.start_date < profile.opened_on:
        raise PauseRefused("a pause cannot start before the account was opened")
    if pause.end_date is not None and pause.end_date <= pause.start_date:
        raise PauseRefused("a pause must end after it starts (it lasts at least one day)")
    for other in account.pauses.values():
        if _overlap(pause, other):
            raise PauseRefused(f"the pause overlaps pause {other.pause_id}")
    account.pauses[pause.pause_id] = pause
    account.pending_events.append(events.PauseStarted(account.account_id, pause))
    account.reassess(as_of, policy, events.PAUSE_ACTION)


def resume_pause(
    account: Account, pause_id: str, *, on: date, as_of: date | None, policy: Policy
) -> Pause:
    """Ends an active pause on business date `on`; returns the pause as it now stands."""
    pause = account.pauses.get(pause_id)
    if pause is None:
        raise PauseNotFound(pause_id)
    if account.is_closed:
        raise PauseRefused("the account is closed")
    if on < pause.start_date:
        raise PauseRefused("the pause has not started yet; only an active pause can be resumed")
    if pause.end_date is not None and pause.end_date <= on:
        raise PauseRefused("the pause has already ended")
    resumed = replace(pause, end_date=on)
    account.pauses[pause_id] = resumed
    account.pending_events.append(events.PauseEnded(account.account_id, resumed))
    account.reassess(as_of, policy, events.PAUSE_ACTION)
    return resumed


def _overlap(first: Pause, second: Pause) -> bool:
    first_end, second_end = first.end_date or date.max, second.end_date or date.max
    if first.start_date >= first_end or second.start_date >= second_end:
        return False  # a pause resumed on its start date covers no day, so overlaps nothing
    return first.start_date < second_end and second.start_date < first_end
