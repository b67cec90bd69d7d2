"""The CLI front door: exit codes, one-line errors, --help, workspace resolution, job registry."""
import subprocess
import sys

from toolbox.cli import main
from toolbox.workspace import JobRegistry


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "toolbox", *args], capture_output=True, text=True, env=env)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "runs" in r.stdout


def test_usage_error_exit_code_is_2():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr


def test_a_learning_rate_of_zero_is_refused_before_training():
    r = run_cli("train", "--dataset", "d", "--model", "RT-DETR-R18", "--lr", "0")
    assert r.returncode == 2 and "argument --lr: must be above 0, got 0" in r.stderr and "Traceback" not in r.stderr


def test_runs_delete_unknown_is_usage_error(workspace, capsys):
    code = main(["--workspace", str(workspace.root), "runs", "delete", "nope"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no run named 'nope'" in err


def test_workspace_option_after_command(workspace, tmp_path, capsys):
    other = tmp_path / "other"
    (other / "runs" / "r1").mkdir(parents=True)
    assert main(["runs", "list", "--workspace", str(other)]) == 0
    assert "r1" in capsys.readouterr().out


def test_registry_marks_dead_jobs_failed(tmp_path):
    reg = JobRegistry(tmp_path / "toolbox.db")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    job = reg.add("train", ["train"], pid=p.pid)
    rows = reg.list()
    assert rows[0]["id"] == job and rows[0]["status"] == "failed"


def test_sigterm_cancels_a_paddle_command_with_exit_130(workspace, tmp_path):
    """Importing Paddle replaces SIGTERM handlers: the CLI must still turn the UI's cancel into 130."""
    import os
    import signal
    import time

    import paddle

    from toolbox.data.demo import generate
    from toolbox.models import build_model

    data = generate(tmp_path / "d", num_train=60, num_val=2, image_size=128)
    paddle.save(build_model("tiny-test", num_classes=3).state_dict(), str(tmp_path / "w.pdparams"))
    out = tmp_path / "o"
    env = {**os.environ, "TOOLBOX_WORKSPACE": str(workspace.root), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "toolbox", "predict", str(data / "images"), "--model", "tiny-test",
                          "--num-classes", "3", "--weights", str(tmp_path / "w.pdparams"), "--out", str(out)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while p.poll() is None and not any(out.glob("**/*.json")) and time.time() < deadline:
        time.sleep(0.2)  # wait until it is predicting: Paddle is loaded
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err


def test_terminal_job_records_its_output_folder(workspace, tmp_path):
    """A job started from a terminal names its folder in the registry, so the UI can follow it."""
    import os

    from toolbox.data.demo import generate

    data = generate(tmp_path / "d", num_train=4, num_val=2, image_size=128)
    env = {**os.environ, "TOOLBOX_WORKSPACE": str(workspace.root), "OMP_NUM_THREADS": "1"}
    env.pop("TOOLBOX_JOB_ID", None)
    r = subprocess.run([sys.executable, "-m", "toolbox", "train", "--dataset", str(data), "--model", "tiny-test",
                        "--pretrained", "none", "--max-steps", "1", "--batch-size", "2", "--input-size", "128",
                        "--run", "r1", "--no-progress"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    job = JobRegistry(workspace.db_path).list()[0]
    assert job["kind"] == "train" and job["status"] == "ok"
    assert job["out_dir"] == str((workspace.runs / "r1").resolve())
    from toolbox.events import read_events  # its start event names the job, so followers match it exactly
    assert [e.get("job") for e in read_events(workspace.runs / "r1" / "events.jsonl") if e["type"] == "start"] == [job["id"]]
