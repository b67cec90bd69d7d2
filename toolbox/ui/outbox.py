"""The only files the web app hands to the browser: copies of what a page shows or offers for download.

Gradio serves any file under its `allowed_paths`; giving it the workspace would expose the job registry
(`toolbox.db`), job logs, checkpoints and annotations to anyone who can reach the app. Instead the app
gives Gradio no workspace folder at all (it is even on the blocked list), and each page publishes the
pictures, plots and zips it shows through `Outbox.publish`: a hard link (a copy across file systems) in
a private temporary folder, which Gradio then moves into its own cache and serves from there.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path


class Outbox:
    """A per-process temporary folder of published files (removed when the app exits)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self._root = Path(root) if root else None
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="toolbox-ui-out-"))
                atexit.register(shutil.rmtree, self._root, True)
            return self._root

    def publish(self, path: str | os.PathLike | None) -> str | None:
        """A servable copy of `path` (same name), or None when there is no such file.

        The copy is keyed by the source's path, size and modification time, so a page that refreshes
        every few seconds reuses one copy until the file really changes.
        """
        if not path:
            return None
        src = Path(path)
        try:
            st = src.stat()
        except OSError:
            return None
        if not src.is_file():
            return None
        key = hashlib.sha1(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
        dest = self.root / key / src.name
        if dest.is_file():
            return str(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return str(dest)
