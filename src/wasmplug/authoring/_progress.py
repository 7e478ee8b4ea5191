"""Live progress for long steps (plugin builds, first compiles): a task board.

On a terminal, with ``rich`` installed (the ``author`` extra brings it), each task is one
line: a spinner, its name, what it is doing and the time elapsed, then a green check
or a red cross with the final message. Elsewhere (a pipe, a CI log, ``TERM=dumb``, no
``rich``) it prints plain lines instead. Tasks that end within ``show_after_s``
(cache hits) print nothing at all, so a warm run stays quiet; that includes quick
failures, whose exception reaches the caller anyway.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import attrs

from ._build import ProgressEvent

__all__ = ["ProgressBoard", "Task"]


@attrs.define(eq=False)
class Task:
    """One line of a :class:`ProgressBoard`; update it with :meth:`say`.

    Attributes:
        name: What the task works on (a plugin name).
        message: What it is doing now.
        started: ``time.monotonic()`` at the start, in seconds.
        state: ``"running"``, ``"done"`` or ``"failed"``.
    """

    name: str
    message: str
    started: float = attrs.field(factory=time.monotonic)
    state: str = "running"
    _board: ProgressBoard | None = attrs.field(default=None, repr=False)
    _shown: bool = attrs.field(default=False, repr=False)
    _row: Any = attrs.field(default=None, repr=False)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the task started."""
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """Replace the task's message (shown at once on a live board)."""
        self.message = message
        if self._board is not None:
            self._board._update(self)


class ProgressBoard:
    """Shows long-running tasks live on a terminal, as plain lines elsewhere.

    Use it as a context manager. It is thread-safe: builds running in a thread pool
    may report to it at once. Pass it as ``progress=`` to :func:`build_python`,
    :func:`build_js` or :func:`build_project` (it is callable with a
    :class:`ProgressEvent`), or wrap any step in :meth:`task`::

        with ProgressBoard(title="plugins") as board:
            built = build_project("hello", progress=board)
            with board.task("hello", "compiling (first time ~10 s)"):
                host.precompile([built.path])

    Args:
        stream: Where to write (default: ``sys.stderr``).
        live: ``True`` for the live display, ``False`` for plain lines, ``None`` to
            decide: live when ``stream`` is a terminal, ``TERM`` is not ``dumb`` and
            ``rich`` is importable.
        title: A heading shown above the tasks (live display only).
        show_after_s: A task that ends sooner (a cache hit, a quick refusal) is not
            shown at all; its exception, if any, reaches the caller. Seconds.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        live: bool | None = None,
        title: str | None = None,
        show_after_s: float = 0.5,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._title = title
        self._show_after_s = show_after_s
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._progress: Any = None
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()
        self.live = self._can_go_live() if live is None else live

    def _can_go_live(self) -> bool:
        if os.environ.get("TERM") == "dumb" or not getattr(self._stream, "isatty", bool)():
            return False
        try:
            import rich  # noqa: F401
        except ImportError:
            return False
        return True

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ProgressBoard:
        if self.live:
            self._progress = _make_rich_progress(self._stream, self._title)
            self._progress.start()
        self._timer = threading.Thread(target=self._reveal_loop, daemon=True, name="progress")
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=1.0)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _reveal_loop(self) -> None:
        """Show tasks once they have run for ``show_after_s`` (every 0.1 s)."""
        while not self._stop.wait(0.1):
            with self._lock:
                for task in list(self._tasks.values()):
                    if task.state == "running" and task.elapsed_s >= self._show_after_s:
                        self._show(task)

    # -- tasks -----------------------------------------------------------------------

    def start(self, name: str, message: str) -> Task:
        """Start a task (or restart the one with this name) and return it."""
        task = Task(name, message, board=self)
        with self._lock:
            self._tasks[name] = task
            if self._show_after_s <= 0:
                self._show(task)
        return task

    def finish(self, task: Task, message: str | None = None, *, failed: bool = False) -> None:
        """End ``task``: done (or failed), with a final message."""
        with self._lock:
            if task.state != "running":
                return
            task.state = "failed" if failed else "done"
            if message is not None:
                task.message = message
            if task._shown:
                self._render_end(task)

    @contextlib.contextmanager
    def task(self, name: str, message: str, *, done: str | None = None) -> Iterator[Task]:
        """A task for the duration of a ``with`` block: failed if the block raises.

        Args:
            name: What the task works on.
            message: What it is doing (e.g. ``compiling (first time ~10 s)``).
            done: The final message (default: ``done``; the elapsed time is shown too).
        """
        task = self.start(name, message)
        try:
            yield task
        except BaseException as e:
            why = str(e).split("\n", 1)[0] or type(e).__name__
            self.finish(task, f"{type(e).__name__}: {why}", failed=True)
            raise
        self.finish(task, done if done is not None else "done")

    def __call__(self, event: ProgressEvent | str) -> None:
        """A ``progress`` callback: one task per :attr:`ProgressEvent.target`."""
        if not isinstance(event, ProgressEvent):
            with self._lock:
                print(str(event), file=self._stream, flush=True)
            return
        with self._lock:
            task = self._tasks.get(event.target)
            if event.status == "started" or task is None or task.state != "running":
                task = self.start(event.target, event.message)
            if event.status == "started":
                return
            self.finish(task, event.message, failed=event.status == "failed")

    # -- rendering (under the lock) -------------------------------------------------------

    def _show(self, task: Task) -> None:
        if task._shown:
            return
        task._shown = True
        if self._progress is not None:
            task._row = self._progress.add_task(
                task.message, total=1, name=task.name, state="running", t0=task.started, ended=None
            )
        else:
            print(f"{task.name}: {task.message}", file=self._stream, flush=True)

    def _update(self, task: Task) -> None:
        with self._lock:
            if not task._shown:
                return
            if self._progress is not None:
                self._progress.update(task._row, description=task.message)
            else:
                print(f"{task.name}: {task.message}", file=self._stream, flush=True)

    def _render_end(self, task: Task) -> None:
        if self._progress is not None:
            self._progress.update(
                task._row,
                description=task.message,
                state=task.state,
                ended=time.monotonic(),
                completed=1,
            )
        else:
            mark = "failed" if task.state == "failed" else "done"
            message = task.message
            text = message if message.startswith(mark) else f"{mark}: {message}"
            print(f"{task.name}: {text} [{task.elapsed_s:.1f} s]", file=self._stream, flush=True)


def _make_rich_progress(stream: TextIO, title: str | None) -> Any:
    """A rich ``Progress``: status mark, name, elapsed seconds, message."""
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    class StatusColumn(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self._spinner = SpinnerColumn()

        def render(self, task: Any) -> Any:
            if task.fields.get("state") == "failed":
                return Text("✗", style="bold red")
            if task.fields.get("state") == "done":
                return Text("✓", style="bold green")
            return self._spinner.render(task)

    class ElapsedColumn(ProgressColumn):
        """Seconds since the task itself started (not since it was shown), frozen at its end."""

        def render(self, task: Any) -> Any:
            end = task.fields.get("ended") or time.monotonic()
            return Text(f"{end - task.fields['t0']:5.1f} s", style="progress.elapsed")

    columns = [
        StatusColumn(),
        TextColumn("[bold]{task.fields[name]:<20}"),
        ElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    console = Console(file=stream)
    if title:
        console.print(f"[bold]{title}[/bold]")
    return Progress(*columns, console=console, transient=False, refresh_per_second=8)
