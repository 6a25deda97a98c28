"""Where a batch lives, and what a TARGET of `status`, `logs` and `forget` names.

`simplejob run path/jobs.json` keeps its batch beside the jobs file:

    path/.simplejob/jobs/state.json (+ .journal, .lock)    the state file
    path/.simplejob/jobs/logs/<id>.log                      each job's output

so that running the same command again resumes it, and every job's output is kept without any
flag. --stateFile and --logOutputDirectory override either; --fresh moves the folder (or the
state file) aside to a free name `<name>.old-N`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .. import jsonline, statefile
from ..forget import owner_lock

FOLDER = ".simplejob"
STATE_NAME = "state.json"
LOGS_NAME = "logs"


@dataclass
class Batch:
    stateFile: str | None  # None: a fresh temporary one for this run (the reference's form)
    logOutputDirectory: str  # "" for none
    folder: str | None  # the default folder, when the batch lives there


def default_folder(jobs_file: str) -> str:
    """.simplejob/<jobs file name without extension>/ beside the jobs file."""
    directory, name = os.path.split(os.path.abspath(jobs_file))
    return os.path.join(directory, FOLDER, os.path.splitext(name)[0] or name)


def for_run(jobs_file: str, state_file: str | None, log_dir: str | None, *, reference: bool) -> Batch:
    """The files of `run`. The reference's own form keeps its documented behaviour: a new state
    file for every run (nothing is resumed) and logs only when --logOutputDirectory is given."""
    if state_file:
        state = os.path.abspath(state_file)
        return Batch(state, os.path.abspath(log_dir) if log_dir else os.path.splitext(state)[0] + ".logs", None)
    if reference:
        return Batch(None, os.path.abspath(log_dir) if log_dir else "", None)
    folder = default_folder(jobs_file)
    logs = os.path.abspath(log_dir) if log_dir else os.path.join(folder, LOGS_NAME)
    return Batch(os.path.join(folder, STATE_NAME), logs, folder)


def resolve_target(target: str) -> str:
    """The state file a TARGET names: a state file, a jobs file (its default batch) or a batch folder.

    Raises ValueError when it names none of these."""
    if os.path.isdir(target):
        return os.path.abspath(os.path.join(target, STATE_NAME))
    try:
        with open(target, encoding="utf-8") as f:
            head = f.read(1 << 16)
    except FileNotFoundError:
        raise ValueError(f"no state file (nor jobs file) at {target!r}") from None
    except OSError as error:
        raise ValueError(f"cannot read {target!r}: {error.strerror or error}") from None
    if '"jobContexts"' in head:
        return os.path.join(default_folder(target), STATE_NAME)
    return os.path.abspath(target)


def read_jobs_file(path: str) -> list[Any]:
    """The jobContexts of a jobs file; ValueError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, *jsonline.DECODE_ERRORS) as error:
        raise ValueError(f"cannot read jobs file {path!r}: {error}") from None
    if not isinstance(data, dict) or "jobContexts" not in data:
        raise ValueError(f'jobs file {path!r} must hold an object {{"jobContexts": [...]}}')
    contexts = data["jobContexts"]
    if not isinstance(contexts, list):
        raise ValueError(f'jobs file {path!r}: "jobContexts" must be a list of job contexts')
    return contexts


def _free_name(path: str) -> str:
    number = 1
    while os.path.lexists(f"{path}.old-{number}") or os.path.lexists(statefile.journal_path(f"{path}.old-{number}")):
        number += 1
    return f"{path}.old-{number}"


def move_aside(batch: Batch) -> str | None:
    """--fresh: move the old batch to a free name (never delete it); return that name, or None if
    there was nothing to move. Refused (StateFileLocked) while a batch owns the state file."""
    if batch.stateFile is None or not os.path.lexists(batch.stateFile):
        return None
    with owner_lock(batch.stateFile):
        if batch.folder is not None:
            aside = _free_name(batch.folder)
            os.rename(batch.folder, aside)  # state, journal, lock and logs together
            return aside
        aside = _free_name(batch.stateFile)
        if os.path.lexists(statefile.journal_path(batch.stateFile)):
            os.rename(statefile.journal_path(batch.stateFile), statefile.journal_path(aside))
        os.rename(batch.stateFile, aside)
        return aside


def shown_path(path: str) -> str:
    """A path as messages show it: relative to the current directory when below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
