"""Start the RT-DETR toolbox in your browser: `python app.py` → http://127.0.0.1:7860.

Options: --host, --port, --auth USER:PASS, --data-dir DIR (repeatable), --root-path P, --workspace DIR,
--demo full|small|none. See `python app.py --help` and toolbox/ui/app.py.
"""
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machines; no telemetry by default

from toolbox.ui.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
