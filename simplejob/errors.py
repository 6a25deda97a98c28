"""The exceptions simplejob raises: one base class, each subclass carrying its fields."""

from __future__ import annotations

from .protocol import SupervisorExit


class SimplejobError(Exception):
    """Base class of every error simplejob raises on purpose (validation raises ValueError)."""


class CalledJobError(SimplejobError, RuntimeError):
    """run()/rerun() finished with at least one job that failed, timed out or did not finish."""

    def __init__(self, failed: dict[str, str]) -> None:
        self.failed = failed  # id -> why, e.g. {"build": "exit code 2", "fetch": "RetryOut"}
        shown = ", ".join(f"{job_id} ({why})" for job_id, why in list(failed.items())[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        super().__init__(f"{len(failed)} job(s) failed: {shown}{more}; see report() and the job logs")


class StateFileError(SimplejobError, RuntimeError):
    """The state file cannot be used; it is left untouched."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"state file {path!r}: {problem}")


class StateFileLocked(StateFileError):
    """Another live supervisor owns the state file."""

    def __init__(self, path: str, pid: int | None, host: str | None) -> None:
        self.pid = pid
        self.host = host
        owner = f"pid {pid} on host {host}" if pid else "another process (owner not yet recorded)"
        super().__init__(
            path,
            f"in use by {owner}; wait for that batch to finish, stop it, or choose another stateFile",
        )


class SupervisorDied(SimplejobError, RuntimeError):
    """The supervisor process ended without finishing the batch."""

    def __init__(self, pid: int, returncode: int | None, stateFile: str) -> None:
        self.pid = pid
        self.returncode = returncode
        self.stateFile = stateFile
        how = f"signal {-returncode}" if returncode is not None and returncode < 0 else f"exit code {returncode}"
        super().__init__(
            f"the simplejob supervisor (pid {pid}) died ({how}) before the batch finished; "
            f"its jobs were stopped. The state is in {stateFile!r}: a new JobManager with "
            f"stateFile={stateFile!r} resumes the batch"
        )


class BatchInterrupted(SupervisorDied):
    """The batch was stopped (Ctrl-C, SIGTERM, cancel of the owner) before it finished."""

    def __init__(self, pid: int, stateFile: str, reason: str | None) -> None:
        SimplejobError.__init__(
            self,
            f"the batch was {reason or 'interrupted'} (supervisor pid {pid}); its running jobs were "
            f"killed and recorded as Interrupted in {stateFile!r}: a new JobManager with "
            f"stateFile={stateFile!r} resumes it",
        )
        self.pid, self.returncode, self.stateFile, self.reason = pid, int(SupervisorExit.INTERRUPTED), stateFile, reason


class StateNotWritten(SupervisorDied):
    """The supervisor could not write the state file (a full disk, a file-size limit, a read-only
    file system) and stopped the batch; what it had written is kept, and a resume loses nothing."""

    def __init__(self, pid: int, returncode: int, stateFile: str, problem: str) -> None:
        SimplejobError.__init__(
            self,
            f"{problem}; the supervisor (pid {pid}) stopped the batch and killed its running jobs. "
            f"The state written before is in {stateFile!r}: when the file can be written again, "
            f"a new JobManager with stateFile={stateFile!r} resumes the batch",
        )
        self.pid, self.returncode, self.stateFile, self.problem = pid, returncode, stateFile, problem
