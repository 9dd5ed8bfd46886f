"""The accounts API: delinquency figures for staff, and pauses for supervisors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cascade.accounts.domain.model import Policy
from cascade.accounts.domain.pauses import PauseNotFound, PauseRefused
from cascade.accounts.entrypoints.api import schemas
from cascade.accounts.service_layer import pause_actions, queries
from cascade.shared.auth import Principal, Role, require_roles

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

_READERS = require_roles(Role.COLLECTOR, Role.SUPERVISOR, Role.LEGAL, Role.OPERATOR)
_SUPERVISORS = require_roles(Role.SUPERVISOR)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown account"}}
_REFUSED: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {"description": "The pause rules refuse it; the error says which rule"},
}


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


def _policies(request: Request) -> Mapping[str, Policy]:
    policies: Mapping[str, Policy] = request.app.state.policies
    return policies


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
# Printable text only: PostgreSQL refuses NUL in text, and no id or label holds control
# characters, so they are a 422 here rather than an error from the database.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
AccountId = Annotated[str, Path(min_length=1, max_length=200, pattern=_PRINTABLE)]
PauseId = Annotated[str, Path(min_length=1, max_length=200, pattern=_PRINTABLE)]
Bucket = Annotated[str | None, Query(min_length=1, max_length=40, pattern=_PRINTABLE)]
Policies = Annotated[Mapping[str, Policy], Depends(_policies)]


@contextmanager
def _answers() -> Iterator[None]:
    """Turns the service layer's refusals into answers a person can act on."""
    try:
        yield
    except pause_actions.AccountNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no account with this id") from None
    except PauseNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "no pause with this id on this account"
        ) from None
    except PauseRefused as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except queries.BadCursor as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None


@router.get(
    "",
    dependencies=[_READERS],
    summary="List accounts, filtered, a page at a time",
    responses={400: {"description": "A cursor this API did not issue"}},
)
async def list_accounts(
    sessions: Sessions,
    account_status: Annotated[schemas.AccountStatus | None, Query(alias="status")] = None,
    bucket: Bucket = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = queries.DEFAULT_LIMIT,
) -> schemas.AccountPage:
    with _answers():
        async with sessions() as session:
            page = await queries.accounts(
                session, status=account_status, bucket=bucket, cursor=cursor, limit=limit
            )
    return schemas.AccountPage.model_validate(page)


@router.get("/{account_id}", dependencies=[_READERS], responses=_NOT_FOUND)
async def read_account(account_id: AccountId, sessions: Sessions) -> schemas.AccountRead:
    with _answers():
        async with sessions() as session, session.begin():
            view = await queries.account(session, account_id)
    return schemas.AccountRead.model_validate(view)


@router.get("/{account_id}/delinquency-history", dependencies=[_READERS], responses=_NOT_FOUND)
async def read_delinquency_history(
    account_id: AccountId, sessions: Sessions
) -> schemas.DelinquencyHistoryRead:
    with _answers():
        async with sessions() as session:
            view = await queries.history(session, account_id)
    return schemas.DelinquencyHistoryRead.model_validate(view)


@router.post("/{account_id}/pauses", status_code=status.HTTP_201_CREATED, responses=_REFUSED)
async def create_pause(
    account_id: AccountId,
    body: schemas.PauseCreate,
    who: Annotated[Principal, _SUPERVISORS],
    sessions: Sessions,
    policies: Policies,
) -> schemas.PauseRead:
    with _answers():
        async with sessions() as session, session.begin():
            pause = await pause_actions.pause_account(
                session,
                account_id,
                start_date=body.start_date,
                end_date=body.end_date,
                reason=body.reason,
                actor=who.subject,
                policies=policies,
            )
            today = await queries.current_business_day(session)
    return schemas.PauseRead.model_validate(queries.pause_view(pause, today))


@router.post("/{account_id}/pauses/{pause_id}/resume", responses=_REFUSED)
async def resume_pause(
    account_id: AccountId,
    pause_id: PauseId,
    who: Annotated[Principal, _SUPERVISORS],
    sessions: Sessions,
    policies: Policies,
) -> schemas.PauseRead:
    with _answers():
        async with sessions() as session, session.begin():
            pause = await pause_actions.resume_account(
                session, account_id, pause_id, actor=who.subject, policies=policies
            )
            today = await queries.current_business_day(session)
    return schemas.PauseRead.model_validate(queries.pause_view(pause, today))
