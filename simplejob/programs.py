"""How simplejob starts its own programs (the supervisor, the workers).

They run as `python -c ...` with this package's directory first on sys.path, rather than
through multiprocessing: spawn/forkserver would re-run the caller's script (the documented
snippets have no `if __name__ == "__main__":` guard), and changing PYTHONPATH would leak into
the jobs' environments.
"""

from __future__ import annotations

import os
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_command(module: str, *args: str) -> list[str]:
    """The program module.main(), with args as its sys.argv[1:]."""
    boot = f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); import {module} as m; m.main()"
    return [sys.executable, "-c", boot, *args]
