"""``wildvox serve``: the HTTP service and web page; ``wildvox serve keys add|list|revoke``.

The keys commands import neither torch nor the service (they answer at once); ``serve`` loads
them when it starts."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from wildvox.cli.common import console, fail, printable, shown
from wildvox.service.keys import LOCAL_HOSTS, ApiKeyError, ApiKeys, keys_path

STORE_OPT = typer.Option(
    None, "--store", help="Speaker store file (default: $WILDVOX_STORE); keys live beside it."
)
serve_app = typer.Typer(
    help="Serve the model over HTTP (JSON API, OpenAPI docs at /docs, web page at /).",
    no_args_is_help=False,
)
keys_app = typer.Typer(
    help="API keys of the service: stored salted and hashed in the store's folder.",
    no_args_is_help=True,
)
serve_app.add_typer(keys_app, name="keys")


def _keys(store: Path | None) -> ApiKeys:
    if store is None:
        from wildvox.api import default_store_path  # imports torch: only when needed

        store = default_store_path()
    return ApiKeys(keys_path(store))


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    model: Path | None = typer.Option(None, "--model", help="Exported model folder."),
    store: Path | None = STORE_OPT,
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve without API keys (only on 127.0.0.1/localhost/::1)."
    ),
    max_upload_mb: float = typer.Option(25.0, help="Largest request body, in MiB."),
    max_seconds: float = typer.Option(120.0, help="Longest recording accepted, in seconds."),
    max_diarize_seconds: float = typer.Option(
        1800.0, help="Longest recording /v1/diarize accepts, in seconds (decoded in blocks)."
    ),
    threads: int = typer.Option(1, help="CPU threads of the embedder."),
) -> None:
    """Serve /v1/embed, /v1/verify, /v1/enroll, /v1/identify, /v1/diarize, /v1/speakers and
    /healthz, with the web page at / and the OpenAPI docs at /docs. Every /v1/ request needs
    an X-API-Key header (`wildvox serve keys add LABEL`) unless --no-auth."""
    if ctx.invoked_subcommand is not None:
        return
    if no_auth and host not in LOCAL_HOSTS:
        fail(f"--no-auth is allowed only on {', '.join(LOCAL_HOSTS)}, not on {host}")
    try:
        import uvicorn

        from wildvox.service.app import ServiceConfig, create_app
    except ImportError as exc:
        fail(f"{exc}: install the service with `pip install 'wildvox[serve]'`")
    from wildvox.inference.model_io import ModelFileError
    from wildvox.store import StoreError

    try:
        config = ServiceConfig(
            model=model,
            store=store,
            auth=not no_auth,
            max_upload_bytes=round(max_upload_mb * 2**20),
            max_seconds=max_seconds,
            max_diarize_seconds=max_diarize_seconds,
            threads=threads,
        )
        app = create_app(config)
    except (ModelFileError, StoreError, ValueError) as exc:
        fail(printable(exc))
    uvicorn.run(app, host=host, port=port, log_level="info")


@keys_app.command("add")
def keys_add(
    label: str = typer.Argument(..., help="Who or what the key is for."),
    store: Path | None = STORE_OPT,
) -> None:
    """Make a key; it is printed once, on stdout, and only its salted hash is kept."""
    keys = _keys(store)
    try:
        key, info = keys.add(label)
    except (ApiKeyError, OSError) as exc:
        fail(printable(exc))
    console.print(shown(f"key {info.key_id} ({info.label}) added to {keys.path}"))
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    store: Path | None = STORE_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The keys: id, label and creation time (never the secrets)."""
    try:
        keys = _keys(store).list()
    except ApiKeyError as exc:
        fail(printable(exc))
    if as_json:
        rows = [{k: v for k, v in asdict(i).items() if k in ("key_id", "label", "created")}
                for i in keys]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "label", "created (UTC)")
    for i in keys:
        when = datetime.datetime.fromtimestamp(i.created, datetime.UTC)
        table.add_row(i.key_id, shown(i.label), when.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `wildvox serve keys list`)."),
    store: Path | None = STORE_OPT,
) -> None:
    """Remove a key; a running server refuses it from its next request on."""
    try:
        info = _keys(store).revoke(key_id)
    except (ApiKeyError, OSError) as exc:
        fail(printable(exc))
    console.print(shown(f"revoked key {info.key_id} ({info.label})"))
