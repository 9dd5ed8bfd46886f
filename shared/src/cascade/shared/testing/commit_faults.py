"""Offset commits the group coordinator refuses, for matrix R5's storm (test workers only).

aiokafka's own tests reach `CommitFailedError` this way: `GroupCoordinator._send_req` is
patched to answer an OffsetCommit request with a group error instead of sending it. The
consumer then sees what a real rebalance causes: `RebalanceInProgressError` makes aiokafka
rejoin the group, `UnknownMemberIdError` makes it rejoin as a new member, and the commit
raises `CommitFailedError`. The offsets stay uncommitted, so the records are redelivered.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import RebalanceInProgressError, UnknownMemberIdError
from aiokafka.protocol.commit import OffsetCommitRequest

# Taken in turn, so that a run sees both ways back into the group.
_GROUP_ERRORS = (RebalanceInProgressError, UnknownMemberIdError)


def refuse_every_nth_offset_commit(every: int) -> None:
    """Makes this process's coordinators refuse every `every`-th OffsetCommit request."""
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    send = GroupCoordinator._send_req
    requests, errors = itertools.count(1), itertools.cycle(_GROUP_ERRORS)

    async def refusing_send(coordinator: GroupCoordinator, request: Any) -> Any:
        if isinstance(request, OffsetCommitRequest) and next(requests) % every == 0:
            code = next(errors).errno
            # Only `topics` is read from the response: (topic, [(partition, error), ...]).
            topics = [(t, [(p, code) for p, _, _ in parts]) for t, parts in request._topics]
            return SimpleNamespace(topics=topics)
        return await send(coordinator, request)

    GroupCoordinator._send_req = refusing_send
