"""Offset commits the group coordinator refuses, for matrix R5's storm (test workers only).

aiokafka's own tests reach `CommitFailedError` this way: `GroupCoordinator._send_req` is
patched to answer an OffsetCommit request with a group error instead of sending it. The
commit then raises `CommitFailedError` and the offsets stay uncommitted, so the records are
redelivered, as when a rebalance overtakes a commit. On `RebalanceInProgressError`
aiokafka rejoins the group at once. On `UnknownMemberIdError` it forgets its member id and
joins as a new member; the broker keeps the old one until its session times out, so the
group's next rebalance waits that long, as after a member's crash. That costs more, so it is
one refusal in four.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import RebalanceInProgressError, UnknownMemberIdError
from aiokafka.protocol.commit import OffsetCommitRequest

from cascade.shared.logging import get_logger

log = get_logger(__name__)

REFUSED = "test.offset_commit_refused"  # logged at each refusal, for the test to count
_GROUP_ERRORS = (RebalanceInProgressError,) * 3 + (UnknownMemberIdError,)


def refuse_every_nth_offset_commit(every: int) -> None:
    """Makes this process's coordinators refuse every `every`-th OffsetCommit request."""
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    send = GroupCoordinator._send_req
    requests, errors = itertools.count(1), itertools.cycle(_GROUP_ERRORS)

    async def refusing_send(coordinator: GroupCoordinator, request: Any) -> Any:
        if isinstance(request, OffsetCommitRequest) and next(requests) % every == 0:
            error = next(errors)
            log.warning(REFUSED, error_class=error.__name__)
            # Only `topics` is read from the response: (topic, [(partition, error), ...]).
            topics = [(t, [(p, error.errno) for p, _, _ in parts]) for t, parts in request._topics]
            return SimpleNamespace(topics=topics)
        return await send(coordinator, request)

    GroupCoordinator._send_req = refusing_send
