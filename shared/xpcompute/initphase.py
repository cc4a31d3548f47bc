"""A function's init phase: import its modules with the garbage collector paused, then freeze what they made.

Why: importing a handler's modules allocates hundreds of thousands of long-lived objects (pydantic's schemas and
validators, FastAPI's OpenAPI models, numpy's and pyarrow's type tables), and the collector runs full passes over
them as it goes, finding nothing to free: 40-70 ms of a handler's import on the benchmark machine
(``benchmarks/bench_coldstart.py``). ``gc.freeze`` then moves those objects out of the collector's view, so the
collections the requests trigger do not walk them again either. Cycles made while paused are collected normally
once the collector runs again, so nothing leaks.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def init_phase() -> Iterator[None]:
    """``with init_phase(): <the handler's imports and start-up>``."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


__all__ = ["init_phase"]
