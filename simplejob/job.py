"""SimpleJob (alias Job): one command, run the same way as a batch of one."""

from __future__ import annotations

from typing import Any

from .manager import JobManager
from .model import DEFAULT_KILL_GRACE, JobRecord, JobRunningStatus
from .report import Report


class SimpleJob:
    """A single job: entry(), then start() and join() (join() alone also runs it)."""

    def __init__(self) -> None:
        self._manager: JobManager | None = None
        self.id: str | None = None

    def entry(
        self,
        commandLine: str | list[str],
        id: str = "",
        timeout: float | None = None,
        retry: int = 0,
        delay: float = 0,
        backoff: float = 1,
        logOutputDirectory: str = "",
        waiting: list[str] | None = None,
        waits: list[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        shell: bool = False,
        killGrace: float = DEFAULT_KILL_GRACE,
        stateFile: str | None = None,
    ) -> None:
        if waiting or waits:
            raise ValueError("a SimpleJob cannot wait on other jobs; use a JobManager for jobs that wait")
        context: dict[str, Any] = {
            "commandLine": commandLine,
            "timeout": timeout,
            "retry": retry,
            "delay": delay,
            "backoff": backoff,
            "cwd": cwd,
            "env": env,
            "shell": shell,
            "killGrace": killGrace,
        }
        if id:
            context["id"] = id
        manager = JobManager(logOutputDirectory=logOutputDirectory, stateFile=stateFile, maxWorkers=1)
        manager.entry([context])
        self._manager = manager
        self.id = manager.jobs[0].id

    def _require_entry(self) -> JobManager:
        if self._manager is None:
            raise RuntimeError("call entry(commandLine=...) before start(), join() or report()")
        return self._manager

    def start(self) -> None:
        self._require_entry().runAllReadyJobs()

    def join(self) -> None:
        """Wait for the job to finish; starts it first if start() was not called."""
        manager = self._require_entry()
        manager.runAllReadyJobs()
        manager.join()

    def is_alive(self) -> bool:
        return self.runningStatus == JobRunningStatus.Running

    @property
    def _record(self) -> JobRecord:
        return self._require_entry().jobs[0]

    @property
    def exitCode(self) -> int | None:
        return self._record.exitCode

    @property
    def runningStatus(self) -> JobRunningStatus:
        return self._record.runningStatus

    @property
    def retried(self) -> int | None:
        return self._record.retried

    @property
    def stateFile(self) -> str | None:
        return self._require_entry().stateFile

    def report(self) -> Report:
        return Report(self._record.report())


Job = SimpleJob
