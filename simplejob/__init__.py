"""simplejob: run a batch of shell commands in dependency order, several at a time, with the
batch's state in a JSON file that survives interruption and that a person can read.

The names below are imported on first use, so that simplejob's own worker processes (which
import simplejob.workers.worker) start without loading the manager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BatchInterrupted": "errors",
    "CalledJobError": "errors",
    "Job": "job",
    "JobManager": "manager",
    "JobRunningStatus": "model",
    "Report": "report",
    "SimpleJob": "job",
    "SimpleJobManager": "manager",
    "SimplejobError": "errors",
    "StateFileError": "errors",
    "StateFileLocked": "errors",
    "StateNotWritten": "errors",
    "SupervisorDied": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simplejob' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # the same names, for type checkers (re-exported: "X as X")
    from .errors import BatchInterrupted as BatchInterrupted
    from .errors import CalledJobError as CalledJobError
    from .errors import SimplejobError as SimplejobError
    from .errors import StateFileError as StateFileError
    from .errors import StateFileLocked as StateFileLocked
    from .errors import StateNotWritten as StateNotWritten
    from .errors import SupervisorDied as SupervisorDied
    from .job import Job as Job
    from .job import SimpleJob as SimpleJob
    from .manager import JobManager as JobManager
    from .manager import SimpleJobManager as SimpleJobManager
    from .model import JobRunningStatus as JobRunningStatus
    from .report import Report as Report
