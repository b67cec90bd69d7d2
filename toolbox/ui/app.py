"""The web toolbox: a Gradio wizard over every step (Data → Train → Evaluate → Export & deploy → Predict).

`python app.py [--host 127.0.0.1] [--port 7860] [--auth-file FILE | --auth USER:PASS] [--data-dir DIR ...] [--root-path P]
[--workspace DIR] [--demo full|small|none]`. Each page lives in its own module and calls the same
Python functions as the CLI; long steps run as CLI jobs (toolbox.ui.jobs). The same functions are API
endpoints (`gr.api`, named like the CLI commands), so `gradio_client` can script the toolbox.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from .safety import ENV_AUTH, PathGuard, allowed_dirs, disable_analytics, resolve_auth

disable_analytics()  # before gradio is imported anywhere

import gradio as gr  # noqa: E402

from ..errors import EXIT_RUNTIME, EXIT_USAGE, ToolboxError  # noqa: E402
from ..workspace import ENV_WORKSPACE, Workspace  # noqa: E402
from .jobs import JobManager  # noqa: E402
from .widgets import CSS, AppContext  # noqa: E402

ENV_DEMO = "TOOLBOX_DEMO"  # full | small | none: the demo dataset prepared at start-up
DEMO_SIZES = {"full": dict(num_train=120, num_val=30, image_size=320),
              "small": dict(num_train=16, num_val=8, image_size=160, num_classes=3)}

# (tab label, module) in wizard order; each module has build(ctx, demo, tab) and optionally api(ctx)
PAGES = (
    ("1 · Data", "toolbox.ui.data"),
    ("2 · Train", "toolbox.ui.train"),
    ("3 · Evaluate", "toolbox.ui.evaluate"),
    ("4 · Export & deploy", "toolbox.ui.export"),
    ("5 · Predict", "toolbox.ui.predict"),
    ("Runs", "toolbox.ui.runs"),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="The RT-DETR toolbox in your browser.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --auth)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--auth-file", default=None, metavar="FILE",
                     help="a private file (chmod 600) of USER:PASS lines, one per user: the recommended way "
                          "to require a login (needed off loopback)")
    who.add_argument("--auth", default=None, metavar="USER:PASS",
                     help=f"one login (also ${ENV_AUTH}); visible in the process list, prefer --auth-file")
    p.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose datasets the UI may read (repeatable; default /home/aistudio "
                        "when it exists); the workspace is always allowed")
    p.add_argument("--root-path", default=None,
                   help="URL prefix when served behind a proxy (AI Studio, JupyterHub)")
    p.add_argument("--workspace", default=None,
                   help=f"workspace folder (default ${ENV_WORKSPACE} or ./workspace)")
    p.add_argument("--demo", choices=sorted([*DEMO_SIZES, "none"]), default=os.environ.get(ENV_DEMO, "full"),
                   help=f"prepare the built-in demo dataset at start-up (default full; ${ENV_DEMO})")
    return p.parse_args(argv)


def prepare_demo(ws: Workspace, size: str = "full") -> str | None:
    """Generate and import the demo dataset into the workspace once (skipped when already there)."""
    if size == "none":
        return None
    from ..data.demo import DEMO_NAME, ensure_demo_dataset

    if (ws.datasets / DEMO_NAME / "annotations" / "instance_train.json").is_file():
        return DEMO_NAME
    t0 = time.time()
    print(f"preparing the demo dataset in {ws.datasets / DEMO_NAME} (first start only)…", flush=True)
    ensure_demo_dataset(ws, DEMO_NAME, **DEMO_SIZES[size])
    print(f"demo dataset ready ({time.time() - t0:.1f} s)", flush=True)
    return DEMO_NAME


def upload_dir() -> Path:
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="RT-DETR Toolbox", analytics_enabled=False) as demo:
        gr.Markdown(
            "# RT-DETR Toolbox\n"
            "Train a real-time object detector on your own pictures, without writing code. "
            "Walk the steps from left to right: **check your data**, **train**, **evaluate**, "
            "**export** for your device and **try it** on an image. Long steps run as background jobs: "
            "close the tab whenever you like, they keep going (see *Runs*).\n\n"
            f"<span class='tb-step'>Workspace: <code>{ctx.workspace.root}</code></span>",
            elem_classes=["tb-hero"])
        pages: list[tuple[gr.Tab, list[gr.Timer]]] = []
        with gr.Tabs(elem_id="tb-tabs"):
            for label, module_name in PAGES:
                short = module_name.rsplit(".", 1)[-1]
                with gr.Tab(label, id=short, elem_id=f"tab-{short}") as tab:
                    pages.append((tab, _build_page(ctx, module_name, demo, tab)))
        _wire_timers(demo, pages)
    return demo


def _wire_timers(demo: gr.Blocks, pages: list[tuple[gr.Tab, list[gr.Timer]]]) -> None:
    """Only the shown page's timers tick: a hidden page needs no refresh, and two cores need the time.
    The first page is shown when the app opens, so its timers start then."""
    all_timers = [t for _, timers in pages for t in timers]
    if not all_timers:
        return
    for i, (tab, timers) in enumerate(pages):
        mine = {id(t) for t in timers}

        def only(mine=mine):
            return [gr.update(active=id(t) in mine) for t in all_timers]

        tab.select(only, None, all_timers, api_visibility="private", show_progress="hidden")
        if i == 0:
            demo.load(only, None, all_timers, api_visibility="private", show_progress="hidden")


def _build_page(ctx: AppContext, module_name: str, demo: gr.Blocks, tab: gr.Tab) -> list[gr.Timer]:
    module = importlib.import_module(module_name)  # a page that fails to import is a bug to see
    timers = module.build(ctx, demo, tab) or []
    if hasattr(module, "api"):
        module.api(ctx)
    return list(timers)


def blocked_paths(ctx: AppContext) -> list[str]:
    """What Gradio must never serve or pick up: the whole workspace (pages publish copies through the
    outbox, see outbox.py), or, when the outbox or upload folder lies inside it, its registry and logs."""
    ws = ctx.workspace.root
    inside = [p for p in (ctx.outbox.root, upload_dir()) if p.resolve() == ws or ws in p.resolve().parents]
    if not inside:
        return [str(ws)]
    return [str(ctx.workspace.db_path), str(ws / "jobs"), str(ctx.workspace.runs)]


def make_context(workspace: Workspace, data_dirs: list[str] | None = None) -> AppContext:
    ws = workspace.ensure()
    guard = PathGuard(allowed_dirs(ws.root, data_dirs), extra_readable=[upload_dir()])
    jobs = JobManager(ws)
    return AppContext(workspace=ws, jobs=jobs, guard=guard)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        auth = resolve_auth(args.host, args.auth, args.auth_file)
        ctx = make_context(Workspace(args.workspace), args.data_dir)
        ctx.settings["demo"] = prepare_demo(ctx.workspace, args.demo)
    except ToolboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code if e.exit_code else EXIT_USAGE
    ctx.jobs.start_background()
    app = build_app(ctx)
    print(f"workspace: {ctx.workspace.root}; readable folders: "
          + ", ".join(str(p) for p in ctx.guard.allowed), flush=True)
    try:
        app.queue(default_concurrency_limit=4).launch(
            server_name=args.host, server_port=args.port, auth=auth, root_path=args.root_path,
            allowed_paths=[], blocked_paths=blocked_paths(ctx), show_error=True, footer_links=["api"],
            theme=gr.themes.Soft(primary_hue="blue", neutral_hue="slate"), css=CSS)
    except OSError as e:  # port taken, address not on this machine
        print(f"error: cannot serve on {args.host}:{args.port}: {e} (pick another --port)", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        ctx.jobs.stop_background()
    return 0
