"""The `events.jsonl` stream every long step writes: the UI, tests and users follow it.

One JSON object a line: {"schema_version": 1, "time": ISO-8601, "type": start|log|eval|checkpoint|end, ...}.
Each line is written with a single `write` + flush so a follower never sees half an object.
A `start` event carries `job`, the job's id in the workspace registry (TOOLBOX_JOB_ID, set by the CLI
for every job), so a follower finds a job's events exactly, even when several jobs (a resumed run, two
exports of one name) write to one folder within the same second.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .workspace import ENV_JOB_ID

SCHEMA_VERSION = 1


def current_job_id() -> int | None:
    """This process's job id in the workspace registry, or None outside a registered job."""
    try:
        job = int(os.environ.get(ENV_JOB_ID) or 0)
    except ValueError:
        return None
    return job if job > 0 else None  # "0": a launcher's placeholder, not a registered job


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class EventLog:
    """Appends events to `path`; disabled (writes nothing) on non-zero distributed ranks."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, type: str, **fields: Any) -> dict:
        if type == "start" and "job" not in fields and current_job_id() is not None:
            fields["job"] = current_job_id()
        event = {"schema_version": SCHEMA_VERSION, "time": now_iso(), "type": type, **fields}
        if self.enabled:
            line = json.dumps(event, ensure_ascii=False, default=_jsonable) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
        return event

    def end(self, status: str, exit_code: int, error: str | None = None, **fields: Any) -> dict:
        return self.write("end", status=status, exit_code=exit_code, error=error, **fields)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_events(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the complete events in `path` (a partial last line, still being written, is skipped)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue
