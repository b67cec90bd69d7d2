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
