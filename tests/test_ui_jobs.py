"""The UI's job manager (toolbox/ui/jobs.py): registry first, own process group, per-device queue,
cancel, and a manager that restarts (a new app process) finding everything again."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from toolbox.ui.jobs import JobManager, devices_conflict, job_devices, last_error_line, tail


def test_job_devices():
    assert job_devices(["--device", "cpu"]) == {"cpu"}
    assert job_devices(["--device=gpu"]) == {"gpu:0"}
    assert job_devices(["--device", "gpu:0,1"]) == {"gpu:0", "gpu:1"}
    assert job_devices(["--dataset", "x"]) == {"default"}
    assert devices_conflict({"gpu:0", "gpu:1"}, {"gpu:1"})
    assert not devices_conflict({"gpu:0"}, {"gpu:1"})
    assert not devices_conflict({"cpu"}, {"gpu:0"})
    assert devices_conflict({"default"}, {"gpu:3"})


def test_tail_collapses_progress_bars(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("start\nstep 1\r step 2\r step 3\nerror: the dataset 'x' does not exist\n")
    assert tail(log) == "start\n step 3\nerror: the dataset 'x' does not exist"
    assert last_error_line(str(log)) == "the dataset 'x' does not exist"
    assert tail(tmp_path / "missing.log") == ""


def _group(seconds: int = 120) -> subprocess.Popen:
    """A real process group of two processes, like a CLI job started in a terminal."""
    return subprocess.Popen(["bash", "-c", f"sleep {seconds} & sleep {seconds}; wait"], start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_failed_cli_job_records_its_error(workspace):
    """A job whose CLI refuses its arguments ends as failed with the CLI's own one-line error."""
    jobs = JobManager(workspace)
    job_id = jobs.submit("eval", ["--run", "no-such-run", "--bogus-option"], name="no-such-run")
    row = jobs.registry.get(job_id)
    assert row["status"] == "running" and row["pid"] and row["pgid"] == row["pid"]
    assert os.getpgid(0) != row["pgid"]  # its own process group
    row = jobs.wait(job_id, timeout=120)
    assert row["status"] == "failed"
    assert row["exit_code"] in (1, 2, 3)
    assert row["error"] and "Traceback" not in row["error"]
    assert "python -m toolbox eval --run no-such-run" in tail(row["log_path"])


def test_one_training_job_per_device(workspace):
    """A second training job on a busy device waits as queued, and starts once the device is free."""
    reg = workspace.registry()
    terminal = _group()
    try:
        # a training job on the CPU started from a terminal (the CLI registered it itself)
        busy = reg.add("train", ["train", "--dataset", "d", "--device", "cpu"], pid=terminal.pid, pgid=terminal.pid)
        jobs = JobManager(workspace)
        queued = jobs.submit("train", ["--dataset", "missing", "--model", "tiny-test", "--device", "cpu",
                                       "--run", "r2"], name="r2")
        other = jobs.submit("eval", ["--run", "nothing"], name="x")  # not a training job: starts at once
        assert jobs.registry.get(queued)["status"] == "queued"
        assert jobs.registry.get(other)["status"] in ("running", "failed")
        # a second manager (the app restarted) sees the same queue and the terminal job
        again = JobManager(workspace)
        assert {r["id"] for r in again.jobs()} >= {busy, queued, other}
        assert again.schedule() == []
        # cancel the terminal job through the new manager: its whole process group goes
        children = subprocess.run(["pgrep", "-g", str(terminal.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2
        assert "stop requested" in again.cancel(busy)
        terminal.wait(timeout=10)
        deadline = time.time() + 10
        while any(_alive(int(p)) for p in children) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(int(p)) for p in children)
        # the device is free now: the queued job starts (and fails fast on its missing dataset)
        again.poll()
        assert again.registry.get(busy)["status"] == "failed"  # it could not record its own end
        assert again.registry.get(queued)["status"] in ("running", "failed")
        row = again.wait(queued, timeout=120)
        assert row["status"] == "failed" and row["error"]
    finally:
        if terminal.poll() is None:
            os.killpg(terminal.pid, signal.SIGKILL)


def test_cancel_queued_job(workspace):
    terminal = _group()
    try:
        workspace.registry().add("train", ["train", "--device", "gpu:0"], pid=terminal.pid, pgid=terminal.pid)
        jobs = JobManager(workspace)
        job_id = jobs.submit("train", ["--dataset", "d", "--device", "gpu:0,1"], name="later")
        assert jobs.registry.get(job_id)["status"] == "queued"
        assert "will not start" in jobs.cancel(job_id)
        row = jobs.registry.get(job_id)
        assert row["status"] == "cancelled" and row["exit_code"] == 130 and not row["pid"]
    finally:
        os.killpg(terminal.pid, signal.SIGKILL)
        terminal.wait()


def test_unknown_kind(workspace):
    from toolbox.errors import UsageError
    with pytest.raises(UsageError):
        JobManager(workspace).submit("predict", [])


_RACER = r"""
import json, sys, time
from pathlib import Path
from toolbox.ui.jobs import JobManager
from toolbox.workspace import Workspace
ws, name = sys.argv[1], sys.argv[2]
jobs = JobManager(Workspace(ws), python="/bin/true")  # each start is a real, instant process
claim = jobs.registry.claim
def claim_like_a_real_launch(*a, **k):  # a real launch (a Python process) takes tens of ms, /bin/true ~1
    won = claim(*a, **k)
    time.sleep(0.005)
    return won
jobs.registry.claim = claim_like_a_real_launch
Path(ws, name + ".ready").touch()
while not Path(ws, "go").exists():
    time.sleep(0.001)
print(json.dumps(jobs.schedule()))
"""


def test_two_app_processes_never_start_the_same_job(workspace):
    """Two app processes schedule one queue at the same instant: each queued job starts exactly once."""
    import json
    import sys

    reg = workspace.registry()
    queued = [reg.add("export", ["export", "--run", f"r{i}"], name=f"r{i}", status="queued") for i in range(60)]
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(workspace.root), f"racer{i}"],
                               stdout=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.time() + 60
    while not all((workspace.root / f"racer{i}.ready").exists() for i in range(2)):  # both wait at the line
        assert time.time() < deadline and all(p.poll() is None for p in racers), "a racer did not start"
        time.sleep(0.01)
    (workspace.root / "go").touch()  # ...and start within ~1 ms of each other; 60 claims take >= 300 ms
    outs = [p.communicate(timeout=120)[0] for p in racers]
    assert all(p.returncode == 0 for p in racers), outs
    started = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    both = set(started[0]) & set(started[1])
    assert not both, f"jobs started by both processes: {sorted(both)}"
    assert sorted(started[0] + started[1]) == queued
    assert started[0] and started[1], "one process did all the work: the race was not exercised"
    for job_id in queued:  # one launch line per job log: nobody started it twice
        log = (workspace.root / "jobs" / f"{job_id}.log").read_text()
        assert log.count("$ python -m toolbox") == 1, log


def test_events_are_found_by_job_id(workspace, monkeypatch):
    """A resumed run (two jobs, one events.jsonl) and two exports of one name started in the same second
    (one renamed into place, one still staging) each get exactly their own events."""
    from toolbox.events import EventLog
    from toolbox.ui.jobs import job_events

    reg = workspace.registry()
    run = workspace.runs / "r"
    first = reg.add("train", ["train", "--run", "r"], name="r", status="ok", out_dir=str(run))
    resumed = reg.add("train", ["train", "--run", "r", "--resume"], name="r", out_dir=str(run))
    for job, steps in ((first, (1, 2)), (resumed, (3,))):
        monkeypatch.setenv("TOOLBOX_JOB_ID", str(job))
        log = EventLog(run / "events.jsonl")
        log.write("start", run="r")
        for s in steps:
            log.write("log", step=s)
    e1 = reg.add("export", ["export", "--name", "e"], name="e", status="ok", out_dir=str(workspace.exports / "e"))
    e2 = reg.add("export", ["export", "--name", "e"], name="e", out_dir=str(workspace.exports / "e"))
    for job, folder in ((e1, workspace.exports / "e"), (e2, workspace.exports / ".e.x1y2.tmp")):
        monkeypatch.setenv("TOOLBOX_JOB_ID", str(job))
        EventLog(folder / "events.jsonl").write("start", name="e")
        EventLog(folder / "events.jsonl").write("log", step=job)
    views = {j: job_events(reg.get(j), workspace) for j in (first, resumed, e1, e2)}
    assert [e.get("step") for e in views[first]] == [None, 1, 2]
    assert [e.get("step") for e in views[resumed]] == [None, 3]
    assert views[first][0]["job"] == first and views[resumed][0]["job"] == resumed
    assert [e.get("step") for e in views[e1]] == [None, e1]
    assert [e.get("step") for e in views[e2]] == [None, e2]
    # a job that has not written its start yet has no events (not an earlier job's)
    later = reg.add("train", ["train", "--run", "r", "--resume"], name="r", out_dir=str(run))
    assert job_events(reg.get(later), workspace) == []
    monkeypatch.setenv("TOOLBOX_JOB_ID", "0")  # a launcher's placeholder is no job id
    assert "job" not in EventLog(workspace.root / "x.jsonl").write("start")
