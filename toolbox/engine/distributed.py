"""Single process or data-parallel: device selection, the launcher, and cross-rank reductions.

Under `python -m paddle.distributed.launch` every worker gets PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM;
the trainer then wraps the model in `paddle.DataParallel`, each rank reads its share of every epoch
(toolbox.data.loader.BatchPlan), only rank 0 writes files, and logged losses and evaluation results
are combined across ranks. `--device gpu:0,1` on a plain command re-executes the same command under the
launcher for the user (`launch_command`), with the run name fixed so all ranks write to one run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from ..errors import RuntimeFailure, UsageError

GPU_INSTALL_HINT = ("install the GPU build of PaddlePaddle 3 from Paddle's package index, e.g. "
                    "`python -m pip install paddlepaddle-gpu==3.3.1 -i "
                    "https://www.paddlepaddle.org.cn/packages/stable/cu126/` (pick the CUDA version of your "
                    "driver), or train with --device cpu")


def rank() -> int:
    return int(os.environ.get("PADDLE_TRAINER_ID", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1)


def is_main() -> bool:
    return rank() == 0


def parse_device(device: str) -> tuple[str, list[int]]:
    """'cpu' → ('cpu', []); 'gpu' → ('gpu', [0]); 'gpu:0,1' → ('gpu', [0, 1])."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return "cpu", []
    if d in ("gpu", "cuda"):
        return "gpu", [0]
    if d.startswith(("gpu:", "cuda:")):
        try:
            ids = [int(x) for x in d.split(":", 1)[1].split(",") if x.strip()]
        except ValueError:
            ids = []
        if ids and all(i >= 0 for i in ids) and len(set(ids)) == len(ids):
            return "gpu", ids
    raise UsageError(f"--device must be cpu, gpu or gpu:IDS (e.g. gpu:0,1), got '{device}'")


def needs_launch(device: str) -> bool:
    """True when the user asked for several GPUs and this process is not already a launched worker."""
    kind, ids = parse_device(device)
    return kind == "gpu" and len(ids) > 1 and "PADDLE_TRAINER_ID" not in os.environ


def launch_command(argv: Sequence[str], gpu_ids: Sequence[int], log_dir: str | Path,
                   python: str = sys.executable) -> list[str]:
    """The `python -m paddle.distributed.launch --devices ... ENTRY train ...` command for `argv`."""
    entry = Path(__file__).with_name("launch_entry.py")
    return [python, "-m", "paddle.distributed.launch", "--devices", ",".join(str(i) for i in gpu_ids),
            "--log_dir", str(log_dir), str(entry), *argv]


def relaunch(argv: Sequence[str], gpu_ids: Sequence[int], log_dir: str | Path) -> int:
    """Run `argv` (CLI arguments after `python -m toolbox`) under the launcher; return its exit code."""
    cmd = launch_command(argv, gpu_ids, log_dir)
    env = dict(os.environ)
    env.setdefault("TOOLBOX_JOB_ID", "0")  # the launching process is the registered job, not rank 0
    print("launching:", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise


def use_cpu_cores() -> int:
    """Give Paddle's CPU kernels the cores this process may use, shared among the local workers.

    Paddle runs its CPU kernels on one thread unless OMP_NUM_THREADS says otherwise; on a 2-core machine
    two threads train RT-DETR-R18 ~30 % faster (benchmarks/bench_train.py). A value the user set wins.
    """
    import paddle

    from .. import USER_OMP_NUM_THREADS

    if USER_OMP_NUM_THREADS:
        return int(USER_OMP_NUM_THREADS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("PADDLE_LOCAL_SIZE") or os.environ.get("PADDLE_TRAINERS_NUM") or 1)
    threads = max(1, cores // max(1, local))
    paddle.base.core.set_num_threads(threads)
    return threads


def setup_device(device: str, amp: bool) -> str:
    """Select the Paddle device for this process; returns the place string used."""
    import paddle

    kind, ids = parse_device(device)
    if amp and kind != "gpu":
        raise UsageError("--amp needs a GPU (automatic mixed precision has no speed-up on CPU); "
                         "drop --amp or pass --device gpu")
    if kind == "cpu":
        paddle.set_device("cpu")
        use_cpu_cores()
        return "cpu"
    if not paddle.device.is_compiled_with_cuda():
        raise RuntimeFailure(f"--device {device}: this PaddlePaddle build has no CUDA support; {GPU_INSTALL_HINT}")
    if paddle.device.cuda.device_count() < 1:
        raise RuntimeFailure(f"--device {device}: no GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    if world_size() > 1:  # the launcher assigns one device per worker
        place = f"gpu:{paddle.distributed.ParallelEnv().device_id}"
    else:
        place = f"gpu:{ids[0]}"
    paddle.set_device(place)
    return place


def init_parallel() -> None:
    if world_size() > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()


def wrap_model(model, sync_bn: bool = False):
    """DataParallel under the launcher (BatchNorm synchronised across GPUs when the recipe says sync_bn),
    tolerating parameters without a gradient."""
    import paddle

    if world_size() <= 1:
        return model
    if sync_bn:
        model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Parameters without a gradient in a step (e.g. a batch without boxes) must not stall the reduce
    # (PaddleDetection sets find_unused_parameters for RT-DETR too).
    return paddle.DataParallel(model, find_unused_parameters=True)


def mean_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (same keys on every rank)."""
    if world_size() <= 1 or not values:
        return values
    import paddle
    import paddle.distributed as dist

    keys = sorted(values)
    t = paddle.to_tensor([float(values[k]) for k in keys], dtype="float64")
    dist.all_reduce(t)
    arr = (t / world_size()).numpy()
    return {k: float(v) for k, v in zip(keys, arr)}


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list when not distributed)."""
    if world_size() <= 1:
        return [obj]
    import paddle.distributed as dist

    out: list[Any] = []
    dist.all_gather_object(out, obj)
    return out


def from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (decisions such as 'stop early' must agree)."""
    return gather(obj)[0]


def barrier() -> None:
    if world_size() > 1:
        import paddle.distributed as dist

        dist.barrier()
