"""Where job attempts run: the supervisor talks to an Executor (executor.py) only, so that another
backend (a Dask cluster, say) can replace the local worker-process pool (pool.py, worker.py)
without touching the scheduler. proctree.py holds the platform-specific process control."""
