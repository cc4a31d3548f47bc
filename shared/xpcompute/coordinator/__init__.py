"""The coordinator: analyses and jobs in a state store, a state machine over them, and dispatchers.

Entry points: ``Coordinator`` (the state machine, ``service.py``),
``EmbeddedRuntime`` and ``FunctionRuntime`` (wiring, ``runtime.py``),
``AnalysisSpec`` (what an analysis is asked to do), ``run_job`` (the worker
code behind the slice and fit functions). Submodules import lazily so that a
function loads only what it uses.
"""

from __future__ import annotations
