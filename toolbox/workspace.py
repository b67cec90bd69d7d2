"""Where things live on disk, and the workspace's job registry (SQLite).

Layout (DESIGN.md): <root>/datasets/<name>/, runs/<run>/, exports/<name>/, sdk/*.zip, toolbox.db.
The registry records every long job (train, eval, export, deploy), whether a terminal or the web UI
started it, so the UI's Runs page lists both and survives restarts of the app.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

ENV_WORKSPACE = "TOOLBOX_WORKSPACE"
ENV_JOB_ID = "TOOLBOX_JOB_ID"  # set by the UI when it starts a CLI job it already registered


def default_root() -> Path:
    return Path(os.environ.get(ENV_WORKSPACE) or "workspace").expanduser().resolve()


@dataclass
class Workspace:
    """A workspace folder; paths are created on demand, never at import."""

    root: Path

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser().resolve() if root else default_root()

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def sdk(self) -> Path:
        return self.root / "sdk"

    @property
    def db_path(self) -> Path:
        return self.root / "toolbox.db"

    def ensure(self) -> "Workspace":
        for p in (self.datasets, self.runs, self.exports, self.sdk):
            p.mkdir(parents=True, exist_ok=True)
        return self

    def dataset_dir(self, name_or_dir: str | os.PathLike) -> Path:
        """A dataset by workspace name, or a folder path given directly."""
        return self._resolve(name_or_dir, self.datasets, "dataset", "python -m toolbox check PATH --name NAME")

    def run_dir(self, name_or_dir: str | os.PathLike) -> Path:
        return self._resolve(name_or_dir, self.runs, "run", "python -m toolbox runs list")

    def export_dir(self, name_or_dir: str | os.PathLike) -> Path:
        return self._resolve(name_or_dir, self.exports, "export", "python -m toolbox export --run RUN")

    @staticmethod
    def _resolve(name_or_dir: str | os.PathLike, parent: Path, kind: str, hint: str) -> Path:
        candidate = parent / str(name_or_dir)
        if candidate.is_dir():
            return candidate
        direct = Path(name_or_dir).expanduser()
        if direct.is_dir():
            return direct.resolve()
        known = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        listed = ", ".join(known[:10]) if known else "none yet"
        raise UsageError(f"no {kind} named '{name_or_dir}' in {parent} (known: {listed}); see `{hint}`")

    # ------------------------------------------------------------------ job registry
    def registry(self) -> "JobRegistry":
        return JobRegistry(self.db_path)


JOB_COLUMNS = ("id", "kind", "name", "args", "status", "pid", "pgid", "started", "ended",
               "exit_code", "error", "out_dir", "log_path")


class JobRegistry:
    """The SQLite table of jobs: id, kind, name, args (JSON list), status, pid/pgid, times, paths.

    status is one of queued, running, ok, failed, cancelled. A job whose process died without
    writing its end (kill -9, power loss) is reported as failed by `refresh`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, name TEXT,"
                " args TEXT, status TEXT, pid INTEGER, pgid INTEGER, started REAL, ended REAL,"
                " exit_code INTEGER, error TEXT, out_dir TEXT, log_path TEXT)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def add(self, kind: str, args: list[str], *, name: str = "", status: str = "running",
            pid: int | None = None, pgid: int | None = None, out_dir: str = "", log_path: str = "") -> int:
        with closing(self._connect()) as db, db:
            cur = db.execute(
                "INSERT INTO jobs (kind, name, args, status, pid, pgid, started, out_dir, log_path)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (kind, name, json.dumps(args), status, pid, pgid, time.time(), out_dir, log_path))
            return int(cur.lastrowid)

    def update(self, job_id: int, **fields: Any) -> None:
        bad = set(fields) - set(JOB_COLUMNS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    def claim(self, job_id: int, **fields: Any) -> bool:
        """Move a queued job to running, atomically: True for the one caller that won it.

        Two app processes on one workspace may both see the same queued row; the single
        `UPDATE ... WHERE status = 'queued'` lets exactly one of them start it.
        """
        bad = set(fields) - set(JOB_COLUMNS)
        if bad:
            raise ValueError(f"unknown job fields: {sorted(bad)}")
        sets = ", ".join(["status = 'running'", *(f"{k} = ?" for k in fields)])
        with closing(self._connect()) as db, db:
            cur = db.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND status = 'queued'",
                             (*fields.values(), job_id))
            return cur.rowcount == 1

    def finish(self, job_id: int, status: str, exit_code: int, error: str | None = None) -> None:
        self.update(job_id, status=status, exit_code=exit_code, error=error, ended=time.time())

    def get(self, job_id: int) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

    def list(self, limit: int = 200) -> list[dict]:
        self.refresh()
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_row(r) for r in rows]

    def refresh(self) -> None:
        """Mark running jobs whose process is gone as failed (they could not record their end)."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT id, pid FROM jobs WHERE status = 'running'").fetchall()
        for r in rows:
            if r["pid"] and not pid_alive(int(r["pid"])):
                self.finish(int(r["id"]), "failed", -1, "the job's process ended without reporting (killed?)")


def record_job_output(workspace: "Workspace", out_dir: str | os.PathLike) -> None:
    """Tell the job registry where the current job writes (its run/export folder), if this is a job.

    The CLI puts the job's id in TOOLBOX_JOB_ID (the UI does so for jobs it starts), so a step calls
    this once it knows its folder, and the UI can follow a job started from a terminal.
    """
    job_id = os.environ.get(ENV_JOB_ID)
    if not job_id or os.environ.get("PADDLE_TRAINER_ID") not in (None, "0"):
        return
    try:
        workspace.registry().update(int(job_id), out_dir=str(Path(out_dir).resolve()))
    except Exception:  # noqa: BLE001 - bookkeeping must never stop the work
        pass


def _row(row: sqlite3.Row) -> dict:
    d = dict(row)
    try:
        d["args"] = json.loads(d.get("args") or "[]")
    except json.JSONDecodeError:
        pass
    return d


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
