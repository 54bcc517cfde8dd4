"""What every `callqa` command shares: the Typer app, the console, params loading, errors.

`cli.py` (data and scoring commands) and `cli_model.py` (model commands) register on `app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="callqa",
    help="Offline speech quality inspection for contact-center calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: Typer's rich panels label every flag `<bool>`
)
models_app = typer.Typer(help="Manage bundled models.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(models_app, name="models")
cache_app = typer.Typer(
    help="Inspect or clear the per-file cache.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(cache_app, name="cache")

console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _params(path: Path):
    from callqa.config import ConfigError, load_params

    try:
        return load_params(path)
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None


def _print_summary(title: str, summary: dict) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.3f}".rstrip("0").rstrip(".")
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list | tuple):
            value = ", ".join(map(str, value)) or "-"
        table.add_row(str(key), str(value))
    console.print(table)


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _override(cfg, values: dict):
    """A copy of a config section with the given non-None values replaced (and re-validated)."""
    from callqa.config import format_validation_error

    changes = {k: v for k, v in values.items() if v is not None}
    if not changes:
        return cfg
    from pydantic import ValidationError

    try:
        return type(cfg).model_validate({**cfg.model_dump(), **changes})
    except ValidationError as err:
        msg = format_validation_error(err, "command-line options", type(cfg))
        console.print(f"[red]error:[/red] {msg}")
        raise typer.Exit(2) from None
