"""Where job attempts run. The supervisor talks to an Executor only, so that another backend
(a Dask cluster, say) can replace the local worker-process pool without touching the scheduler."""
from __future__ import annotations

from .executor import Event, Executor
from .pool import LocalProcessPool

__all__ = ["Event", "Executor", "LocalProcessPool"]
