"""Running notebook cells in a fresh kernel of this Python, with a limit per cell and one for the whole run.

The kernel is ipykernel on ``sys.executable`` (the interpreter running this code, so the project's
``.venv``), started from an explicit kernel spec rather than whatever ``python3`` spec a user
folder may hold. BLAS, OpenMP and numba run one thread each in the kernel, so parallel grading
does not oversubscribe the cores.

A cell that runs past its limit is interrupted (``KeyboardInterrupt`` in the kernel) and the run
goes on with the next cell; when the whole run passes its limit the kernel's process group is
killed and every later cell is reported as not run. A kernel that dies (``os._exit``, a crash, out
of memory) is reported the same way.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from ..errors import GradingError

__all__ = ["THREAD_ENV", "CellResult", "KernelSession", "kernel_argv"]

# One thread for every numerical runtime in a kernel.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

_QUIET = logging.getLogger("tinyml_lab.grading.kernel")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def kernel_argv() -> list[str]:
    """The command that starts an ipykernel on this Python."""
    return [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


class _ThisPython(KernelSpecManager):
    """Every kernel name maps to ipykernel on ``sys.executable``."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        from ipykernel.kernelspec import RESOURCES

        return KernelSpec(argv=kernel_argv(), name="python3", display_name=f"Python {sys.version_info[0]}",
                          language="python", resource_dir=RESOURCES, metadata={"debugger": False})


class _Client(NotebookClient):
    """A notebook client that remembers whether the last cell ran out of time."""

    timed_out = False

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        self.timed_out = True
        return await super()._async_handle_timeout(timeout, cell)


@dataclass
class CellResult:
    """How one cell ran.

    ``status`` is ``ok``, ``error`` (an exception: ``ename``, ``evalue``), ``timeout`` (the cell or the
    whole run went over its limit), ``dead`` (the kernel died in this cell) or ``not run`` (an earlier
    cell ended the run). ``stdout`` is what the cell printed; ``message`` says it in one line.
    """

    status: str
    ename: str = ""
    evalue: str = ""
    stdout: str = ""
    seconds: float = 0.0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class KernelSession:
    """A fresh kernel to run cells in, one after the other.

    Use as a context manager; :meth:`run` executes source code and returns a :class:`CellResult`.

    Args:
        cwd: the kernel's working folder (default: a temporary folder removed at the end).
        cell_timeout: seconds a cell may run before it is interrupted.
        total_timeout: seconds the whole session may run before the kernel is killed (None: no limit).
        startup_timeout: seconds to wait for the kernel to start.
    """

    def __init__(self, cwd: str | Path | None = None, cell_timeout: float = 60.0, total_timeout: float | None = None,
                 startup_timeout: float = 60.0):
        if not cell_timeout > 0:
            raise GradingError(f"the cell timeout must be a positive number of seconds, got {cell_timeout!r}")
        if total_timeout is not None and not total_timeout > 0:
            raise GradingError(f"the total timeout must be a positive number of seconds, got {total_timeout!r}")
        self.cell_timeout = float(cell_timeout)
        self.total_timeout = None if total_timeout is None else float(total_timeout)
        self.startup_timeout = startup_timeout
        self._cwd = cwd
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._ctx = None
        self._timer: threading.Timer | None = None
        self.expired = False
        self.ended: CellResult | None = None
        self.pid: int | None = None
        self.cells_run = 0

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> "KernelSession":
        self._tmp = tempfile.TemporaryDirectory(prefix="tinyml-lab-kernel-")
        if self._cwd is None:
            self._cwd = self._tmp.name
        self._log_path = Path(self._tmp.name) / "kernel.log"  # the kernel's own stdout and stderr
        self._log = open(self._log_path, "wb")  # noqa: SIM115 (closed in __exit__)
        self.notebook = nbformat.v4.new_notebook()
        self.notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython(), log=_QUIET)
        self._client = _Client(self.notebook, km=km, timeout=math.ceil(self.cell_timeout), allow_errors=True,
                               interrupt_on_timeout=True, record_timing=False, shutdown_kernel="immediate",
                               startup_timeout=math.ceil(self.startup_timeout), log=_QUIET,
                               resources={"metadata": {"path": str(self._cwd)}})
        env = dict(os.environ, **THREAD_ENV, PYDEVD_DISABLE_FILE_VALIDATION="1")
        env.pop("JPY_PARENT_PID", None)
        self._ctx = self._client.setup_kernel(env=env, cleanup_kc=True, stdout=self._log, stderr=self._log)
        self._started = time.monotonic()
        try:
            self._ctx.__enter__()
        except Exception as exc:
            self._ctx = None
            self._close_files()
            raise GradingError(f"the kernel ({' '.join(kernel_argv()[:4])}) did not start: {exc}; check that "
                               f"ipykernel is installed in this Python") from None
        self.pid = km.provisioner.pid if km.provisioner is not None else None
        if self.total_timeout is not None:
            self._timer = threading.Timer(self.total_timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._ctx is not None:
            try:
                self._ctx.__exit__(None, None, None)
            except Exception:  # the kernel is gone already; its process group is killed below
                pass
            self._ctx = None
        self.kill()
        self._close_files()

    def _close_files(self) -> None:
        self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kill(self) -> None:
        """Kill the kernel and everything it started (its process group)."""
        if self.pid is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _expire(self) -> None:
        self.expired = True
        self.kill()

    def _kernel_log_tail(self) -> str:
        try:
            self._log.flush()
            lines = [ln.strip() for ln in self._log_path.read_text(errors="replace").splitlines()]
        except OSError:
            return ""
        lines = [ln for ln in lines if ln and "without encryption" not in ln and not ln.startswith("[IPKernelApp]")]
        return lines[-1][:200] if lines else ""

    # ------------------------------------------------------------------ running
    def run(self, source: str) -> CellResult:
        """Execute ``source`` as the next cell."""
        cell = nbformat.v4.new_code_cell(source)
        self.notebook.cells.append(cell)
        index = len(self.notebook.cells) - 1
        if self.ended is not None:
            return CellResult("not run", message=f"not run: {self.ended.message}")
        if not source.strip():
            return CellResult("ok")
        self._client.timed_out = False
        start = time.monotonic()
        try:
            self._client.execute_cell(cell, index, execution_count=self.cells_run + 1)
        except DeadKernelError:
            return self._end(start, None)
        except Exception as exc:  # a broken connection to a killed kernel surfaces as other errors too
            return self._end(start, exc)
        finally:
            self.cells_run += 1
        seconds = time.monotonic() - start
        stdout = "".join(o.get("text", "") for o in cell.outputs
                         if o.get("output_type") == "stream" and o.get("name") == "stdout")
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        if self._client.timed_out:
            return CellResult("timeout", "TimeoutError", "", stdout, seconds,
                              f"timed out after {self.cell_timeout:g} s")
        if errors:
            ename, evalue = str(errors[-1].get("ename", "")), str(errors[-1].get("evalue", ""))
            return CellResult("error", ename, evalue, stdout, seconds, f"{ename}: {evalue}" if evalue else ename)
        return CellResult("ok", stdout=stdout, seconds=seconds, message=stdout.strip())

    def _end(self, start: float, exc: BaseException | None) -> CellResult:
        seconds = time.monotonic() - start
        if self.expired:
            result = CellResult("timeout", "TimeoutError", seconds=seconds,
                                message=f"timed out: the notebook went over the limit of {self.total_timeout:g} s "
                                        f"for the whole run")
            self.ended = CellResult("timeout", message=f"the notebook went over the limit of "
                                                       f"{self.total_timeout:g} s for the whole run")
        else:
            tail = self._kernel_log_tail()
            why = f" ({tail})" if tail else (f" ({type(exc).__name__}: {exc})" if exc is not None else "")
            result = CellResult("dead", "DeadKernelError", seconds=seconds,
                                message=f"kernel died while running this cell{why}")
            self.ended = CellResult("dead", message=f"the kernel died in an earlier cell{why}")
        self.kill()
        return result
