"""Small helpers the export modules share: silencing chatty converters into a log file."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def output_to(log_path: str | os.PathLike | None) -> Iterator[None]:
    """Send this process's stdout/stderr (C++ included: paddle2onnx, rknn-toolkit2) to `log_path`.

    The converters print hundreds of progress lines; users see our progress bar and one-line results,
    and the full converter output stays in the export folder's export.log for diagnosis.
    """
    if log_path is None:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
