"""The ``facestream`` command line.

Adding a command: write ``facestream/commands/<name>.py`` defining a click command or group
(see ``facestream/commands/config.py``), then add ONE line below, e.g.::

    from facestream.commands.worker import worker
    main.add_command(worker)

Inside a command, ``get_app(ctx).settings`` is the validated Settings (see facestream/commands/_common.py).
"""

from __future__ import annotations

import click

from facestream import __version__
from facestream.commands._common import LOG_LEVELS, init_app


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="facestream")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Override FACESTREAM_LOG__LEVEL.",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """Real-time face detection for camera fleets: RTSP ingest -> Redis -> batched detector workers.

    Configuration comes from FACESTREAM_* environment variables (see `facestream config show`).
    """
    init_app(ctx, log_level)


# -- commands: one import + one add_command line each -------------------------------------------------
from facestream.commands.config import config  # noqa: E402

main.add_command(config)
from facestream.commands.train import train  # noqa: E402

main.add_command(train)
from facestream.commands.export import export  # noqa: E402

main.add_command(export)
from facestream.commands.worker import worker  # noqa: E402

main.add_command(worker)
from facestream.commands.events import events  # noqa: E402

main.add_command(events)
from facestream.commands.camera import camera  # noqa: E402

main.add_command(camera)
from facestream.commands.ingest import ingest  # noqa: E402

main.add_command(ingest)
from facestream.commands.replay import replay  # noqa: E402

main.add_command(replay)
from facestream.commands.demo import demo  # noqa: E402

main.add_command(demo)
from facestream.commands.detect import detect  # noqa: E402

main.add_command(detect)
from facestream.commands.evaluate import eval_group  # noqa: E402

main.add_command(eval_group)
from facestream.commands.label import label  # noqa: E402

main.add_command(label)
from facestream.commands.compress import compress  # noqa: E402

main.add_command(compress)
from facestream.commands.mine_negatives import mine_negatives  # noqa: E402

main.add_command(mine_negatives)


if __name__ == "__main__":  # pragma: no cover
    main()
