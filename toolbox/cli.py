"""The command line: `python -m toolbox [--workspace DIR] [--debug] COMMAND ...`.

Each step module owns its sub-commands through a `register(subparsers, common)` function, so the
options of a step live next to the code they drive. This module only parses, runs, records long
commands in the workspace's job registry and turns errors into one line and an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from typing import Sequence

from .errors import EXIT_CANCELLED, EXIT_RUNTIME, EXIT_USAGE, ToolboxError
from .workspace import ENV_JOB_ID, Workspace

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "toolbox.data.cli",      # check, convert, split
    "toolbox.engine.cli",    # train, eval, predict
    "toolbox.export.cli",    # export
    "toolbox.deploy.cli",    # deploy, runtimes
    "toolbox.runs_cli",      # runs
)
JOB_KINDS = {"check", "convert", "train", "eval", "export", "deploy"}  # recorded in toolbox.db
PADDLE_COMMANDS = {"train", "eval", "export", "predict"}  # import Paddle before taking over SIGTERM


class _Parser(argparse.ArgumentParser):
    """argparse that exits with the contract's usage code (2) and a one-line hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS,
                        help="workspace folder (default: $TOOLBOX_WORKSPACE or ./workspace)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print full tracebacks on errors")
    parser = _Parser(prog="python -m toolbox", parents=[common],
                     description="No-code toolbox for RT-DETR detectors on PaddlePaddle: "
                                 "check data, train, evaluate, export, deploy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a step not built yet
            if e.name and name.startswith(e.name):
                continue
            raise
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    args.workspace = Workspace(getattr(args, "workspace", None))
    job = _JobRecord(args.command, argv, args.workspace) if args.command in JOB_KINDS else None
    if args.command in PADDLE_COMMANDS and _needs_paddle(args):
        import paddle  # noqa: F401 - importing Paddle installs its own SIGTERM handler: load it first
    signal.signal(signal.SIGTERM, _raise_interrupt)  # UI cancel and `kill` end a job like Ctrl-C
    try:
        code = int(args.func(args) or 0)
    except ToolboxError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        code = e.exit_code
        if job:
            job.finish(code, str(e))
        return code
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        if job:
            job.finish(EXIT_CANCELLED, "cancelled")
        return EXIT_CANCELLED
    except Exception as e:  # noqa: BLE001 - the contract: one line, no traceback without --debug
        if debug:
            traceback.print_exc()
        print(f"error: unexpected failure in '{args.command}': {type(e).__name__}: {e} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        if job:
            job.finish(EXIT_RUNTIME, f"{type(e).__name__}: {e}")
        return EXIT_RUNTIME
    if job:
        job.finish(code, None)
    return code


def _needs_paddle(args) -> bool:
    """False for train/eval/predict of an RF-DETR model or run (toolbox.rfdetr: a torch-only process)."""
    if args.command not in ("train", "eval", "predict") or getattr(args, "export", None):
        return True
    try:
        from .rfdetr.dispatch import family

        return family(args.workspace, model=getattr(args, "model", None), config=getattr(args, "config", None),
                      run=getattr(args, "run", None), resume=getattr(args, "resume", None)) != "rfdetr"
    except Exception:  # noqa: BLE001 - unsure: load Paddle as before; the command reports the real problem
        return True


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


class _JobRecord:
    """Registers a long command in the workspace registry (or adopts the row the UI created)."""

    def __init__(self, kind: str, argv: list[str], workspace: Workspace):
        self.job_id: int | None = None
        rank = os.environ.get("PADDLE_TRAINER_ID")
        given = os.environ.get(ENV_JOB_ID)
        if rank not in (None, "0") or (rank is not None and given):
            return  # a worker of a distributed launch: the launching process records the job
        try:
            self.registry = workspace.registry()
            if given:
                self.job_id = int(given)
                self.registry.update(self.job_id, pid=os.getpid(), status="running")
            else:
                self.job_id = self.registry.add(kind, argv, pid=os.getpid(), pgid=os.getpgid(0))
                os.environ[ENV_JOB_ID] = str(self.job_id)  # for record_job_output and launched workers
        except Exception as e:  # noqa: BLE001 - the registry must never stop the work itself
            print(f"warning: could not record the job in {workspace.db_path}: {e}", file=sys.stderr)
            self.job_id = None

    def finish(self, code: int, error: str | None) -> None:
        if self.job_id is None:
            return
        status = "ok" if code == 0 else "cancelled" if code == EXIT_CANCELLED else "failed"
        try:
            self.registry.finish(self.job_id, status, code, error)
        except Exception as e:  # noqa: BLE001
            print(f"warning: could not record the job's end: {e}", file=sys.stderr)
