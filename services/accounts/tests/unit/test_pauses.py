"""Delinquency pauses: append-only pause and resume actions, and the days they take off DPD."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cascade.accounts.domain import events
from cascade.accounts.domain.account import Account, Closure, Profile, not_assessed
from cascade.accounts.domain.model import Installment, Pause, Policy
from cascade.accounts.domain.pauses import PauseNotFound, PauseRefused, resume_pause, start_pause

pytestmark = pytest.mark.unit

D = date.fromisoformat
POLICY = Policy()
AS_OF = D("2026-02-20")


def late_account() -> Account:
    """An account opened on 5 January whose 5 February installment is 15 days late."""
    account = Account("ACC-1", not_assessed(POLICY))
    opened_at = (datetime(2026, 1, 5, tzinfo=UTC), "EVT-0")
    account.open(Profile("personal_loan", "CNY", D("2026-01-05"), {}, opened_at, "opened"))
    account.add_installment(Installment("INS-1", D("2026-02-05"), 150_000), "CNY")
    account.reassess(AS_OF, POLICY, events.CLOSE)
    return account


def pause(start: str, end: str | None = None, pause_id: str = "PSE-1") -> Pause:
    return Pause(pause_id, D(start), None if end is None else D(end), "hardship")


def start(account: Account, paused: Pause) -> None:
    start_pause(account, paused, as_of=AS_OF, policy=POLICY)


def resume(account: Account, pause_id: str, on: str) -> Pause:
    return resume_pause(account, pause_id, on=D(on), as_of=AS_OF, policy=POLICY)


def test_a_pause_lowers_dpd_at_once_and_records_why_the_figures_moved() -> None:
    account = late_account()
    assert account.state.days_past_due == 15
    seen = len(account.pending_events)

    start(account, pause("2026-02-10"))

    assert account.state.days_past_due == 15 - 11
    recorded = account.pending_events[seen:]
    assert [type(e).__name__ for e in recorded] == ["PauseStarted", "DelinquencyUpdated"]
    update = recorded[1]
    assert isinstance(update, events.DelinquencyUpdated)
    assert update.trigger == events.PAUSE_ACTION


def test_a_resume_ends_the_pause_on_its_date_and_keeps_the_record() -> None:
    account = late_account()
    start(account, pause("2026-02-10"))

    resumed = resume(account, "PSE-1", "2026-02-15")

    assert resumed == pause("2026-02-10", "2026-02-15")
    assert account.pauses == {"PSE-1": resumed}
    assert account.state.days_past_due == 15 - 5
    assert isinstance(account.pending_events[-2], events.PauseEnded)


def test_a_pause_over_every_late_day_cures_the_account_as_paused() -> None:
    account = late_account()

    start(account, pause("2026-02-06"))

    cured = [e for e in account.pending_events if isinstance(e, events.AccountCured)]
    assert [(e.reason, e.trigger) for e in cured] == [("paused", events.PAUSE_ACTION)]
    assert (account.state.status, account.state.arrears_minor) == ("current", 150_000)


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(pause("2026-02-15", "2026-02-16", "PSE-2"), id="inside"),
        pytest.param(pause("2026-02-01", "2026-02-11", "PSE-2"), id="across-start"),
        pytest.param(pause("2026-02-19", None, "PSE-2"), id="across-end"),
        pytest.param(pause("2026-02-01", None, "PSE-2"), id="around"),
    ],
)
def test_a_pause_that_overlaps_another_is_refused(second: Pause) -> None:
    account = late_account()
    start(account, pause("2026-02-10", "2026-02-20"))

    with pytest.raises(PauseRefused, match="overlaps pause PSE-1"):
        start(account, second)

    assert set(account.pauses) == {"PSE-1"}


def test_an_open_ended_pause_overlaps_every_later_pause() -> None:
    account = late_account()
    start(account, pause("2026-02-10"))

    with pytest.raises(PauseRefused, match="overlaps"):
        start(account, pause("2026-06-01", "2026-06-02", "PSE-2"))


def test_a_pause_may_start_on_the_day_the_previous_one_ends() -> None:
    account = late_account()
    start(account, pause("2026-02-10", "2026-02-12"))

    start(account, pause("2026-02-12", "2026-02-14", "PSE-2"))

    assert account.state.days_past_due == 15 - 4


@pytest.mark.parametrize(
    ("refused", "rule"),
    [
        (pause("2026-01-04"), "before the account was opened"),
        (pause("2026-02-10", "2026-02-10"), "must end after it starts"),
        (pause("2026-02-10", "2026-02-09"), "must end after it starts"),
    ],
    ids=["before-opening", "zero-days", "ends-before-start"],
)
def test_a_pause_that_breaks_a_rule_is_refused_naming_the_rule(refused: Pause, rule: str) -> None:
    account = late_account()

    with pytest.raises(PauseRefused, match=rule):
        start(account, refused)

    assert account.pauses == {}
    assert account.state.days_past_due == 15


def test_a_pause_may_start_on_the_opening_date() -> None:
    account = late_account()

    start(account, pause("2026-01-05", "2026-01-06"))

    assert set(account.pauses) == {"PSE-1"}


def test_a_pause_that_has_not_started_cannot_be_resumed() -> None:
    account = late_account()
    start(account, pause("2026-03-01"))

    with pytest.raises(PauseRefused, match="not started yet"):
        resume(account, "PSE-1", "2026-02-28")


@pytest.mark.parametrize("on", ["2026-02-15", "2026-02-16"])
def test_a_pause_that_has_ended_cannot_be_resumed(on: str) -> None:
    account = late_account()
    start(account, pause("2026-02-10", "2026-02-15"))

    with pytest.raises(PauseRefused, match="already ended"):
        resume(account, "PSE-1", on)

    assert account.pauses["PSE-1"].end_date == D("2026-02-15")


def test_resuming_an_unknown_pause_says_it_was_not_found() -> None:
    with pytest.raises(PauseNotFound):
        resume(late_account(), "PSE-9", "2026-02-15")


def test_a_closed_account_can_be_neither_paused_nor_resumed() -> None:
    account = late_account()
    start(account, pause("2026-02-10"))
    account.close(Closure(D("2026-02-20"), "charged_off"), D("2026-02-19"), POLICY)

    with pytest.raises(PauseRefused, match="only an open account"):
        start(account, pause("2026-03-01", None, "PSE-2"))
    with pytest.raises(PauseRefused, match="closed"):
        resume(account, "PSE-1", "2026-02-21")

    assert account.pauses == {"PSE-1": pause("2026-02-10")}


def test_an_account_not_opened_yet_cannot_be_paused() -> None:
    account = Account("ACC-1", not_assessed(POLICY))

    with pytest.raises(PauseRefused, match="only an open account"):
        start(account, pause("2026-02-10"))


def test_a_pause_resumed_on_its_first_day_covers_no_day_and_blocks_no_other_pause() -> None:
    account = late_account()
    start(account, pause("2026-02-21"))
    resume(account, "PSE-1", "2026-02-21")

    start(account, pause("2026-02-10", "2026-02-25", "PSE-2"))

    assert set(account.pauses) == {"PSE-1", "PSE-2"}
    assert account.state.days_past_due == 15 - 11
