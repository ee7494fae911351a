"""`tunewise ui [--port N] [--host H] [--root runs] [--lang en|zh]`."""

from __future__ import annotations

import sys

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def exposure_warning(host: str) -> str | None:
    """The warning printed when the board listens beyond this machine (it can start jobs and read files)."""
    if host in LOCAL_HOSTS:
        return None
    return (f"warning: the board listens on {host}, so anyone who can reach this machine on that port can start "
            "training, read your data and run exports. There is no login. Use --host 127.0.0.1 (the default) unless "
            "you trust that network.")


def cmd_ui(a) -> int:
    import os

    from tunewise.extras import require_extra

    require_extra("ui", "the web board")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    warn = exposure_warning(a.host)
    if warn:
        print(warn, file=sys.stderr, flush=True)
    import signal

    def _terminate(signum, frame):  # SIGTERM stops the board like Ctrl+C, so its jobs are stopped too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    from tunewise.ui import jobs
    from tunewise.ui.app import serve

    jobs.allow_remote_code(a.trust_remote_code)

    print(f"[tunewise] board at http://{'127.0.0.1' if a.host in ('0.0.0.0', '::') else a.host}:{a.port} "
          f"(runs folder: {a.root}); Ctrl+C stops it", file=sys.stderr, flush=True)
    try:
        serve(root=a.root, host=a.host, port=a.port, lang=a.lang, block=True, allow_hosts=a.allow_host)
    finally:
        from tunewise.ui import jobs

        jobs.stop_all()
    return 0


def register(sub) -> None:
    p = sub.add_parser("ui", help="open the local web board: configure with explanations, train with live curves, "
                                  "chat, export")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; default 127.0.0.1 (this machine only). 0.0.0.0 exposes the board "
                        "to the network (a warning is printed)")
    p.add_argument("--root", default="runs", help="folder of run directories the board shows and writes (default runs)")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="initial language (switchable on the page)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests addressed to this host name (e.g. behind a reverse proxy); requests for "
                        "any other host than the one served are refused")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let the board's chat and the jobs it starts run the Python code a run's model ships")
    p.set_defaults(func=cmd_ui)
