"""simplejob: run a batch of shell commands in dependency order, several at a time, with the
batch's state in a JSON file that survives interruption and that a person can read."""
from __future__ import annotations

from .errors import CalledJobError, SimplejobError, StateFileError, StateFileLocked, SupervisorDied
from .job import Job, SimpleJob
from .manager import BatchInterrupted, JobManager, SimpleJobManager
from .model import JobRunningStatus
from .report import Report

__version__ = "0.1.0"

__all__ = [
    "BatchInterrupted", "CalledJobError", "Job", "JobManager", "JobRunningStatus", "Report", "SimpleJob",
    "SimpleJobManager", "SimplejobError", "StateFileError", "StateFileLocked", "SupervisorDied",
]
