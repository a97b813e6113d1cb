"""Worker processes forked from a warm process (a forkserver), not spawned one by one.

A spawned worker starts a new interpreter and imports fetcher, requests, urllib3 and the
rest again: about a quarter of a CPU second per worker on the project's machine, more than
a whole one-URL run of threads. Here each pool starts one server process per run, which
imports the worker's modules once (`PRELOAD`) and then forks a worker for each request: a
fork of a process that has no thread (never of the run, which has several: forking a
process with threads is unsafe, hence no `fork`). Where the platform has no forkserver,
workers are spawned as before.

The server is the pool's own (`multiprocessing.forkserver.ForkServer`, not the module's
shared one, which a library caller may use for processes of its own), and it lives for one
pool: `Server.stop` ends it once its workers have ended, reaped. While it runs it holds no
standard stream of the run's (its input, output and error are /dev/null: fetcher.preload),
so a pipe from `fetcher … |` or a cron job's ends when the run does; each worker is handed
the run's standard output and error when it starts (`Inherited`), as a spawned one
inherited them. It ignores Ctrl-C, as the run's workers do: the run decides how it stops.

The server never imports the caller's script (`__main__` is not preloaded: an unguarded
script would run there, and its threads, if it starts any, would be forked); each worker
imports it as a spawned one did, so the `__main__` guard check (`refuse_reimport`) holds.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import context, forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fetcher.settings import Settings

# imported by the server before it forks: first what quiets it (a module whose packages
# import nothing heavy: this one's would), then the worker's entry point
PRELOAD = ["fetcher.preload", "fetcher.pools.processes"]
WARC = "fetcher.store.warc"  # what a worker imports for --warc (warcio, 50 ms)
STOP_WAIT = 5.0  # seconds the server has to end once told to, before it is killed


class Server:
    """A pool's forkserver: started with its first worker, stopped by `stop`."""

    def __init__(self, settings: Settings) -> None:
        self.forkserver = forkserver.ForkServer()
        self.forkserver.set_forkserver_preload(PRELOAD + [WARC] * bool(settings.warc))

    def worker(self) -> tuple[Callable[..., BaseProcess], Stdio]:
        """How to make a worker process that this server forks, and the run's standard
        output and error for it to take as its own (None: closed in the run)."""
        return functools.partial(WarmProcess, self.forkserver), stdio()

    def stop(self) -> None:
        """End the server and reap it; its workers must have ended (they hold it alive).
        What `ForkServer._stop` does, without waiting forever for a process that does not
        end (a caller's fork of this process would hold the server's pipe)."""
        server: Any = self.forkserver
        with server._lock:
            pid, alive = server._forkserver_pid, server._forkserver_alive_fd
            if pid is None:
                return
            os.close(alive)  # the server reads the end of this pipe: it leaves
            deadline = time.monotonic() + STOP_WAIT
            with contextlib.suppress(ChildProcessError):  # (reaped by the caller's own wait)
                while os.waitpid(pid, os.WNOHANG) == (0, 0):
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.005)
            address = server._forkserver_address
            if isinstance(address, str) and not util.is_abstract_socket_namespace(address):
                with contextlib.suppress(OSError):
                    os.unlink(address)
            server._forkserver_pid = server._forkserver_alive_fd = None
            server._forkserver_address = None


class WarmProcess(context.ForkServerProcess):
    """A process forked by a given server (the stock one asks the module's shared one)."""

    def __init__(self, server: forkserver.ForkServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server = server

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_server"]  # the worker has no use for it (nor could it be pickled)
        return state

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> Any:
        return WarmPopen(process_obj)


class WarmPopen(popen_forkserver.Popen):
    """The stock forkserver Popen's `_launch` (CPython 3.10 to 3.13), with the process's
    own server in place of the module's."""

    def _launch(self, process_obj: WarmProcess) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)  # type: ignore[attr-defined]
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        fds = self._fds  # type: ignore[attr-defined]
        self.sentinel, w = process_obj._server.connect_to_new_process(fds)
        # the child watches a duplicate of the data pipe's writing end: its parent's life
        _parent_w = os.dup(w)
        close = util.close_fds  # type: ignore[attr-defined]
        self.finalizer = util.Finalize(self, close, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


Stdio = tuple["Inherited | None", "Inherited | None"]


class Inherited:
    """A descriptor of the run's (its standard output or error) for a worker to take as its
    own: passed with the process as multiprocessing passes a pipe, received as a number."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _detach, (reduction.DupFd(self.fd),)


def _detach(passed: Any) -> int:
    return int(passed.detach())


def stdio() -> Stdio:
    """The run's standard output and error, as a worker should inherit them (None: closed)."""
    found: list[Inherited | None] = []
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            found.append(None)
        else:
            found.append(Inherited(fd))
    return found[0], found[1]
