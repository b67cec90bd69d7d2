"""Script entry for `python -m paddle.distributed.launch ... launch_entry.py COMMAND ...`.

The launcher runs a script file, not a module; this file puts the repository on sys.path and runs the
toolbox CLI with the same arguments, so each worker is an ordinary `python -m toolbox` process.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from toolbox.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
