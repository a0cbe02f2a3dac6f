"""``nas-attn dashboard RUN_DIR``: the run's Pareto dashboard as one offline HTML file, or
served (``--serve``) and refreshed from the storage while the search runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nas_attn.cli import app, console, err_console


@app.command("dashboard")
def dashboard(
    run_dir: Annotated[Path, typer.Argument(help="the run folder (has run.json)")],
    output: Annotated[Path | None, typer.Option(
        "--out", "-o", "--output", help="HTML file to write [default: RUN_DIR/dashboard.html]")
    ] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="serve the page over HTTP, rebuilt from the storage as trials finish")
    ] = False,
    host: Annotated[str, typer.Option("--host", help="address to bind (--serve)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port (--serve; 0 picks a free one)")
                    ] = 8050,
    refresh: Annotated[float, typer.Option(
        "--refresh", help="seconds between the page's refreshes (--serve; 0: never)")] = 10.0,
) -> None:
    """Pareto front, hypervolume, attribution, parallel coordinates, learning curves and the
    trial table of a run, in one self-contained HTML page."""
    from nas_attn.search.run_dir import read_run

    read_run(run_dir)  # a clear error for a folder that is not a run
    if not serve:
        from nas_attn.viz.dashboard import write_dashboard

        out = write_dashboard(run_dir, output)
        console.print(f"dashboard written to {out}", highlight=False)
        return
    from nas_attn.viz.serve import PageSource, check_options, is_loopback, make_server

    check_options(host, port, refresh)
    if not is_loopback(host):
        err_console.print(f"[yellow]warning:[/] serving on {host}: anyone who can reach this "
                          "address sees the run (no authentication)", highlight=False)
    source = PageSource(run_dir, refresh_s=refresh)
    source.get("page")  # fail now, not on the first request, when the storage is unreadable
    if output is not None:
        output.write_bytes(source.get("page"))
    server = make_server(source, host, port)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"serving {run_dir} at http://{shown}:{server.server_address[1]}/ "
                  "(Ctrl-C stops)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
