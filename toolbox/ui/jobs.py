"""Long steps (train, eval, export, deploy) as CLI child processes the UI starts, follows and cancels.

Why child processes: the app never holds work in its own process, so a browser refresh, a second
tab or a restart of `app.py` loses nothing. Each job is
1. registered in the workspace's SQLite registry first (status "queued"), then
2. started as `python -m toolbox --workspace WS <kind> ...` in its own process group
   (start_new_session=True) with TOOLBOX_JOB_ID set, so the CLI adopts the row instead of adding one,
   stdout and stderr going to `<workspace>/jobs/<id>.log`;
3. followed through the `events.jsonl` of its output folder (toolbox.events.read_events);
4. cancelled by SIGTERM to its process group (the CLI turns it into exit 130), SIGKILL after a grace.

One training job per device at a time: a later one stays "queued" in the registry until the device is
free, and a scheduler thread starts it. The queue lives in the registry, so it survives a restart.
"""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import EXIT_CANCELLED, UsageError
from ..events import read_events
from ..workspace import ENV_JOB_ID, JobRegistry, Workspace

JOB_KINDS = ("check", "convert", "train", "eval", "export", "deploy")
ACTIVE = ("queued", "running")
CANCEL_GRACE_S = 20.0
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding toolbox/


def job_devices(args: Iterable[str]) -> set[str]:
    """The devices a training command occupies, from its --device option.

    'cpu' → {'cpu'}; 'gpu' → {'gpu:0'}; 'gpu:0,1' → {'gpu:0', 'gpu:1'}; no --device → {'default'},
    which conflicts with every device (we cannot know what the engine will pick).
    """
    args = list(args)
    value = None
    for i, a in enumerate(args):
        if a == "--device" and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith("--device="):
            value = a.split("=", 1)[1]
    if not value:
        return {"default"}
    value = value.strip().lower()
    if value == "cpu":
        return {"cpu"}
    kind, _, ids = value.partition(":")
    kind = kind or "gpu"
    if not ids:
        return {f"{kind}:0"}
    return {f"{kind}:{i.strip()}" for i in ids.split(",") if i.strip()}


def devices_conflict(a: set[str], b: set[str]) -> bool:
    return bool(a & b) or "default" in a or "default" in b


@dataclass
class JobView:
    """What the UI shows of a job: its registry row plus what its events say."""

    row: dict
    events: list[dict]

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def status(self) -> str:
        return str(self.row.get("status") or "unknown")

    def last(self, type_: str) -> dict | None:
        for ev in reversed(self.events):
            if ev.get("type") == type_:
                return ev
        return None


class JobManager:
    """Starts, schedules, reaps and cancels the workspace's jobs (thread-safe)."""

    def __init__(self, workspace: Workspace, python: str = sys.executable,
                 extra_env: dict[str, str] | None = None):
        self.workspace = workspace
        self.registry: JobRegistry = workspace.registry()
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.logs_dir = workspace.root / "jobs"
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cancel_requested: set[int] = set()

    # ------------------------------------------------------------------ submit / schedule
    def submit(self, kind: str, args: list[str], *, name: str = "", out_dir: str | os.PathLike = "") -> int:
        """Register a job (queued) and start it now if its device is free; returns the job id."""
        if kind not in JOB_KINDS:
            raise UsageError(f"unknown job kind '{kind}' (one of {', '.join(JOB_KINDS)})")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            job_id = self.registry.add(kind, [kind, *args], name=name, status="queued", out_dir=str(out_dir))
            self.registry.update(job_id, log_path=str(self.logs_dir / f"{job_id}.log"))
            self.schedule()
        return job_id

    def schedule(self) -> list[int]:
        """Start queued jobs, oldest first, whose devices no running training job holds."""
        started = []
        with self._lock:
            jobs = sorted(self.registry.list(limit=1000), key=lambda r: int(r["id"]))
            busy: list[set[str]] = [job_devices(_cmd_args(r)) for r in jobs
                                    if r["kind"] == "train" and r["status"] == "running"]
            for row in jobs:
                if row["status"] != "queued":
                    continue
                if row["kind"] == "train":
                    devs = job_devices(_cmd_args(row))
                    if any(devices_conflict(devs, b) for b in busy):
                        continue  # stays queued; later jobs for other devices may still start
                    busy.append(devs)
                if self._launch(row):
                    started.append(int(row["id"]))
        return started

    def _launch(self, row: dict) -> bool:
        """Claim the queued row (atomically: another app process may race us) and start it."""
        job_id = int(row["id"])
        log_path = Path(row.get("log_path") or self.logs_dir / f"{job_id}.log")
        if not self.registry.claim(job_id, started=time.time(), log_path=str(log_path)):
            return False  # another process started it, or it was cancelled meanwhile
        args = list(row["args"])
        cmd = [self.python, "-m", "toolbox", "--workspace", str(self.workspace.root), *args]
        env = {**os.environ, **self.extra_env, ENV_JOB_ID: str(job_id)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONWARNINGS", "ignore")  # library warnings (ccache, …) would bury the log tail
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"$ python -m toolbox {' '.join(args)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=str(PACKAGE_PARENT), env=env, start_new_session=True)
            except OSError as e:
                self.registry.finish(job_id, "failed", 3, f"could not start the job: {e}")
                return True
        self._procs[job_id] = proc
        self.registry.update(job_id, pid=proc.pid, pgid=proc.pid)
        return True

    # ------------------------------------------------------------------ reaping
    def poll(self) -> None:
        """Reap finished children (recording an end the CLI could not write) and start queued jobs."""
        with self._lock:
            for job_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del self._procs[job_id]
                row = self.registry.get(job_id)
                # still active: the CLI died before recording its end (usage error, crash, signal);
                # exit_code -1: the registry's own sweep saw it gone first, without its exit code
                if row and (row["status"] in ACTIVE or row.get("exit_code") == -1):
                    if code == 0:
                        status = "ok"
                    elif job_id in self._cancel_requested or code == EXIT_CANCELLED:
                        status = "cancelled"
                    else:
                        status = "failed"
                    error = None if status == "ok" else ("cancelled" if status == "cancelled" else
                                                         last_error_line(row.get("log_path")) or
                                                         f"the job exited with code {code}")
                    self.registry.finish(job_id, status, code, error)
            self.schedule()

    def start_background(self, interval: float = 1.0) -> None:
        """A daemon thread calling poll() every `interval` seconds (the app's scheduler)."""
        if self._thread and self._thread.is_alive():
            return

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception as e:  # noqa: BLE001 - the scheduler must outlive one bad row
                    print(f"warning: job scheduler: {type(e).__name__}: {e}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, name="toolbox-jobs", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._stop.set()

    def wait(self, job_id: int, timeout: float = 600.0, interval: float = 0.5) -> dict:
        """Block until the job leaves queued/running (tests, scripts); returns its row."""
        deadline = time.time() + timeout
        while True:
            self.poll()
            row = self.registry.get(job_id)
            if row is None or row["status"] not in ACTIVE:
                return row or {}
            if time.time() > deadline:
                raise TimeoutError(f"job {job_id} still {row['status']} after {timeout:.0f} s")
            time.sleep(interval)

    # ------------------------------------------------------------------ cancel
    def cancel(self, job_id: int) -> str:
        """Stop a job: a queued one is marked cancelled, a running one gets SIGTERM (then SIGKILL)."""
        with self._lock:
            row = self.registry.get(job_id)
            if row is None:
                raise UsageError(f"no job {job_id} in {self.registry.path}")
            if row["status"] == "queued":
                self.registry.finish(job_id, "cancelled", EXIT_CANCELLED, "cancelled before it started")
                return f"job {job_id} was queued and will not start"
            if row["status"] != "running":
                return f"job {job_id} is already {row['status']}"
            pgid = row.get("pgid") or row.get("pid")
            if not pgid:
                return f"job {job_id} has no process recorded yet"
            self._cancel_requested.add(job_id)
        _signal_group(int(pgid), int(row.get("pid") or pgid), signal.SIGTERM)
        threading.Thread(target=self._kill_later, args=(job_id, int(pgid), int(row.get("pid") or pgid)),
                         daemon=True).start()
        return f"job {job_id}: stop requested (it saves nothing further and ends as cancelled)"

    def _kill_later(self, job_id: int, pgid: int, pid: int) -> None:
        deadline = time.time() + CANCEL_GRACE_S
        while time.time() < deadline:
            row = self.registry.get(job_id)
            if not row or row["status"] not in ACTIVE:
                return
            time.sleep(0.5)
        _signal_group(pgid, pid, signal.SIGKILL)

    # ------------------------------------------------------------------ reading
    def jobs(self, limit: int = 200) -> list[dict]:
        return self.registry.list(limit=limit)

    def view(self, job_id: int) -> JobView | None:
        row = self.registry.get(job_id)
        if row is None:
            return None
        return JobView(row, job_events(row, self.workspace))

    def latest_active(self) -> dict | None:
        """The newest queued or running job of any kind, or None."""
        return next((r for r in self.jobs() if r["status"] in ACTIVE), None)

    def latest(self, kind: str, active_first: bool = True) -> dict | None:
        """The newest job of a kind (a running or queued one first): what a page follows by default."""
        rows = [r for r in self.jobs() if r["kind"] == kind]
        if active_first:
            for r in rows:
                if r["status"] in ACTIVE:
                    return r
        return rows[0] if rows else None


def _cmd_args(row: dict) -> list[str]:
    args = row.get("args") or []
    return [str(a) for a in args] if isinstance(args, list) else []


def _signal_group(pgid: int, pid: int, sig: int) -> None:
    """Signal the job's process group; never our own group (a job started in our group, by a test)."""
    try:
        if pgid != os.getpgid(0):
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def job_out_dir(row: dict) -> Path | None:
    """Where a job writes its events: the registry's out_dir (set when the UI submits it, or by the
    step itself through record_job_output once it knows its folder)."""
    return Path(row["out_dir"]) if row.get("out_dir") else None


def job_events(row: dict, workspace: Workspace) -> list[dict]:
    """This job's events: from the `start` event carrying its id to the next job's `start`.

    Exports build in exports/.<name>.*.tmp and then rename it to <name> (or <name>.failed), so those
    folders are searched too; the job id, not the time or the folder, says which events are whose.
    """
    out = job_out_dir(row)
    if out is None:
        return []
    candidates = [out]
    if row.get("kind") == "export":
        staging = sorted(out.parent.glob(f".{glob.escape(out.name)}.*.tmp"))
        candidates = [*staging, out, out.with_name(out.name + ".failed")]
    for folder in candidates:
        mine = events_of_job(read_events(folder / "events.jsonl"), int(row["id"]))
        if mine:
            return mine
    return []


def events_of_job(events: Iterable[dict], job_id: int) -> list[dict]:
    """The slice of an events stream that job `job_id` wrote (empty when it has not started)."""
    mine: list[dict] = []
    inside = False
    for ev in events:
        if ev.get("type") == "start":
            inside = ev.get("job") == job_id
        if inside:
            mine.append(ev)
    return mine


def tail(path: str | os.PathLike | None, lines: int = 40, max_bytes: int = 200_000) -> str:
    """The last lines of a log, with tqdm's carriage-return redraws collapsed to their last state."""
    if not path:
        return ""
    p = Path(path)
    if not p.is_file():
        return ""
    with open(p, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        parts = [s for s in line.split("\r") if s.strip()]
        if parts:
            out.append(parts[-1].rstrip())
    return "\n".join(out[-lines:])


def last_error_line(log_path: str | None) -> str | None:
    """The job's one-line error (the CLI prints `error: ...`), else its last line."""
    text = tail(log_path, lines=30)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[len("error:"):].strip()
    return lines[-1][-300:] if lines else None
