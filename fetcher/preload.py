"""Imported first by the forkserver of worker processes (`fetcher.pools.warm`), and only there.

In that process, before it imports the worker's modules: Ctrl-C is ignored (the workers it
forks inherit that until they set their own: the run decides how a run stops), it will end
without the interpreter's teardown, its standard input, output and error are /dev/null (it
holds no pipe or terminal of the run's; each worker is handed the run's own), and tenacity
is imported as the command imports it, without tornado (fetcher.__main__). Imported
anywhere else, it does nothing.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys


def _preloading() -> bool:
    """Whether this import is a forkserver's preload (and not another process's import)."""
    server = sys.modules.get("multiprocessing.forkserver")
    frame = sys._getframe()
    while server is not None and frame is not None:
        if frame.f_code is server.main.__code__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _quiet_server() -> None:
    """In the server, first: ignore Ctrl-C (its children, the workers, inherit that until
    they set their own), hold no standard stream of the run's, and end without the
    interpreter's teardown of every module (60 ms that the run's end waited for)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    atexit.register(_leave, os.getpid())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # (multiprocessing closes sys.stdin, but not descriptor 0)
        os.dup2(null, fd)
    os.close(null)
    # what the command imports first: tenacity without tornado (fetcher.__main__), with
    # Ctrl-C held back meanwhile (that module takes charge of it)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import fetcher.__main__  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C held back is dropped
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _leave(server: int) -> None:
    """The server's exit handler: leave at once (not in a worker, which inherits it)."""
    if os.getpid() == server:
        os._exit(0)


if _preloading():
    _quiet_server()
