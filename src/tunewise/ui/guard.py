"""What the board accepts: runs listed under its own root, and requests addressed to the host it serves.

The board can start jobs that write and delete inside a run directory, so every action that names a run
checks it with `board_run` (the name comes from the page, which anyone who can reach the port can forge).
`HostCheck` refuses a request whose Host header names another host: a web page elsewhere cannot make a
browser drive the board through a DNS name that points at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import socket
from pathlib import Path

LOCAL_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def board_run(root: str | Path, run: str | Path | None) -> str | None:
    """`run` resolved, when it is a run folder directly under `root` (as the board lists them; a run just started
    may not have its config.yaml yet); None for anything else: another folder, a traversal, a symlink out."""
    from tunewise.config.schema import unsafe_run_name

    if not run:
        return None
    try:
        want, top = Path(run).resolve(), Path(root).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
    if want.parent != top or unsafe_run_name(want.name):
        return None
    return str(want)


def refusal(lang: str) -> str:
    return ("只能操作本面板运行目录下列出的运行。" if lang == "zh"
            else "The board only acts on runs listed under its runs folder; choose one from the list.")


def allowed_hosts(host: str, extra: list[str] | None = None) -> set[str]:
    """Host names a request may address: this machine's loopback names, the address served, and `extra`."""
    names = set(LOCAL_NAMES) | {h.lower() for h in (extra or [])}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host.lower())
    else:  # listening on every interface: the machine's own names and addresses
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            try:
                names.update(info[4][0] for info in socket.getaddrinfo(name, None))
            except OSError:
                pass
    return names


def hostname_of(header: str) -> str:
    """'example.com:7860' -> 'example.com'; '[::1]:7860' -> '::1'."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class HostCheck:
    """ASGI middleware: 403 for an HTTP or websocket request whose Host is not one the board serves."""

    def __init__(self, app, allowed: set[str]):
        self.app, self.allowed = app, {hostname_of(a) for a in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if hostname_of(host) not in self.allowed:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = f"tunewise board: requests for host '{host}' are refused (not the address this board serves)".encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
