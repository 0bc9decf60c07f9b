"""danlu ui [--host 127.0.0.1] [--port 7860] [--workspace DIR] [--auth USER:PASS]"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("ui", help="The web UI (zh / en): data, train, runs, chat, evaluate, export and serve.")(ui)


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs --auth."),
    port: int = typer.Option(7860, "--port", help="Port (0: a free one)."),
    workspace: str = typer.Option(".", "--workspace", "-w", help="The only folder the UI reads and writes."),
    auth: str = typer.Option(None, "--auth", help="USER:PASS required to open the UI."),
):
    from danlu.ui.app import check_bind, serve

    check_bind(host, auth)
    if port == 0:
        port = _free_port(host)
    typer.echo(f"danlu ui: http://{host}:{port}  (workspace {workspace}; Ctrl-C to stop)", err=True)
    serve(host, port, workspace, auth)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
