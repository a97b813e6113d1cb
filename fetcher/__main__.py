"""`python -m fetcher`, and the `fetcher` console script: the command line.

Ctrl-C in the first half second, while requests, typer and the rest are imported, would
print a traceback; until the command installs its own handlers it ends the process quietly
with 130, as the shell reports an interrupted command.

The forkserver that worker processes are forked from imports this module too (see
fetcher.preload), before the worker's modules; a spawned worker of the console script
imports it first. What it does at import is done in processes fetcher owns, never in a
library user's.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn


def main() -> NoReturn:
    from fetcher.cli import main as command
    from fetcher.errors import leave

    try:
        command()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            leave(exc.code)  # the process is ours: no teardown
        raise


def _interrupted(signum: int, frame: object) -> None:
    os._exit(130)


def _import_tenacity_alone() -> None:
    """Import tenacity without tornado, which it imports whenever it is installed (the dask
    extra brings it) to offer tornado coroutines, which fetcher never uses: with asyncio,
    35 ms at each start of the command and of each worker process. Hidden for that import
    only: Dask's own import of tornado, later, works as ever."""
    if "tenacity" in sys.modules or "tornado" in sys.modules:
        return
    sys.modules["tornado"] = None  # type: ignore[assignment]  # `import tornado` fails
    try:
        import tenacity  # noqa: F401
    finally:
        del sys.modules["tornado"]


signal.signal(signal.SIGINT, _interrupted)
_import_tenacity_alone()

if __name__ == "__main__":
    main()
