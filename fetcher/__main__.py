"""`python -m fetcher`, and the `fetcher` console script: the command line.

Ctrl-C in the first half second, while requests, typer and the rest are imported, would
print a traceback; until the command installs its own handlers it ends the process quietly
with 130, as the shell reports an interrupted command.
"""

from __future__ import annotations

import os
import signal
from typing import NoReturn


def main() -> NoReturn:
    signal.signal(signal.SIGINT, _interrupted)
    from fetcher.cli import main as command

    command()


def _interrupted(signum: int, frame: object) -> None:
    os._exit(130)


if __name__ == "__main__":
    main()
