"""`cascade up` starts the whole local stack, `cascade down` leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cascade.shared import migrations
from cascade.shared.infra.processes import find_free_port, pid_alive
from cascade.shared.stack import MARKER_ENV, SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cascade(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cascade.shared.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _stack_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "CASCADE_HOME": str(home), "CASCADE_BROKER": "embedded"}
    env["CASCADE_KAFKA_PORT"] = str(find_free_port())
    env["CASCADE_POSTGRES_PORT"] = str(find_free_port())
    for name in SERVICES:
        env[f"{name.upper()}_HTTP_PORT"] = str(find_free_port())
    return env


def _marked(home: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_ENV) == str(home):
                found.append(process)
        except psutil.Error:
            continue
    return found


async def _migrated_revision(database_url: str) -> str | None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return str(revision) if revision is not None else None
    finally:
        await engine.dispose()


def test_up_starts_every_service_ready_and_down_leaves_nothing(tmp_path: Path) -> None:
    home = (tmp_path / "stack").resolve()
    env = _stack_env(home)
    try:
        started = _cascade("up", env=env, timeout=240)
        assert started.returncode == 0, started.stdout + started.stderr

        stack_env = dict(
            line.split("=", 1) for line in (home / "stack.env").read_text().splitlines()
        )
        assert set(stack_env) == {"KAFKA_BOOTSTRAP_SERVERS"} | {
            f"{name.upper()}_URL" for name in SERVICES
        }
        for name in SERVICES:
            url = stack_env[f"{name.upper()}_URL"]
            assert url.endswith(env[f"{name.upper()}_HTTP_PORT"])
            assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200

        state = json.loads((home / "stack.json").read_text())
        server = state["database_server_url"].rpartition("/")[0]
        for name in SERVICES:
            revision = asyncio.run(_migrated_revision(f"{server}/{name}"))
            assert revision == migrations.head_revision(f"cascade.{name}")
        started_pids = list(state["service_pids"].values())
        assert len(_marked(home)) > len(started_pids)  # services, broker and PostgreSQL
    finally:
        stopped = _cascade("down", env=env, timeout=120)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _marked(home) == []
    assert not any(pid_alive(pid) for pid in started_pids)
