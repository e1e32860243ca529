"""`facestream train CONFIG`: train a detector from a TOML config (resumes by default)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", default=None, help="Run directory (overrides the config's `out`).")
@click.option("--epochs", type=int, default=None, help="Override the number of epochs.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N.")
@click.option("--max-hours", type=float, default=None, help="Stop resumably after this much wall time.")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint in the run directory.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key (TOML value; dotted for nested: sources.0.fill_as=ignore). Repeatable.")
def train(config: Path, out: str | None, epochs: int | None, device: str | None, max_hours: float | None,
          fresh: bool, sets: tuple[str, ...]) -> None:
    """Train FSDet. Writes the resolved config (with git sha), log.jsonl, training.png, and
    last/best .safetensors (EMA weights) + last.state.pt (exact resume) into the run directory.

    Relative paths in the config resolve against the current directory. An ablation is the shipped config
    with one --set changed and its own --out."""
    from training.config import load_config
    from training.data import hard_negatives
    from training.train import train as run

    try:
        cfg = load_config(config, sets=sets, out=out, epochs=epochs, device=device, max_hours=max_hours)
        if cfg.hard_negatives:  # unreadable or malformed: one line now, not a traceback mid-run
            hard_negatives.read(Path(cfg.hard_negatives))
    except (ValueError, OSError) as e:
        raise click.ClickException(f"{config}: {e}") from e
    run_dir = run(cfg, resume=not fresh)
    click.echo(f"run directory: {run_dir}")
