"""Data-parallel training on CPU: two processes under `python -m paddle.distributed.launch --nproc_per_node 2`
(gloo), the way multi-GPU runs are started, with discrete sampling (frozen offsets; find_unused_parameters).
Both ranks train on their shares and end with equal weights."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolbox.events import read_events

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_cpu_training_ranks_agree(session_workspace, tiny_dataset, tmp_path):
    ws = session_workspace
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for k in ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM", "TOOLBOX_JOB_ID"):
        env.pop(k, None)
    logs = tmp_path / "launch_logs"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(logs),
           str(ROOT / "toolbox" / "engine" / "launch_entry.py"), "--workspace", str(ws.root), "train",
           "--dataset", tiny_dataset, "--model", "tiny-test", "--run", "dist2", "--max-steps", "3",
           "--log-interval", "1", "--pretrained", "none", "--num-workers", "0", "--no-progress",
           "--sampling", "discrete"]  # frozen offsets under data parallelism
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    worker_logs = {p.name: p.read_text(errors="replace") for p in logs.glob("workerlog.*")}
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:], {k: v[-2000:] for k, v in worker_logs.items()})
    assert set(worker_logs) == {"workerlog.0", "workerlog.1"}
    evs = list(read_events(ws.runs / "dist2" / "events.jsonl"))
    start, end = evs[0], evs[-1]
    assert start["world_size"] == 2 and start["effective_batch"] == 4
    assert start["steps_per_epoch"] == 4  # 16 images / (2 per rank x 2 ranks)
    assert [e["step"] for e in evs if e["type"] == "log"] == [1, 2, 3]
    assert end["status"] == "ok" and end["ranks_agree"] is True
    sums = end["rank_weight_sums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    # rank 0 alone wrote the run folder; rank 1 trained (its log shows the loop), wrote nothing there
    assert "done: 3 steps" in worker_logs["workerlog.0"] and (ws.runs / "dist2" / "checkpoints" / "last").is_dir()
    assert any(e["type"] == "eval" for e in evs)
