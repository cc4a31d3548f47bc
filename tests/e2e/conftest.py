"""The e-commerce example on generated raw tables, once per test session, and its oracle.

The example's YAML and plugin module are copied next to freshly generated
data in a temporary folder, so the tests read exactly what a fresh clone
reads after ``python -m xpcompute.synthetic_ecommerce``, and never write into
the checkout.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oracle as oracle_module
from oracle import TREATMENT

from xpcompute.synthetic_ecommerce import generate

# The C++ module may not be built in a fresh checkout; the NumPy specifications are the same maths.
try:
    import xpcompute._core  # noqa: F401
except ImportError:
    os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ecommerce"
CUSTOMERS = 20_000
SEED = 7


@pytest.fixture(scope="session")
def example_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``experiment.yaml`` and ``shop_metrics.py`` of the example, next to a generated ``data/`` folder."""
    root = tmp_path_factory.mktemp("ecommerce")
    for name in ("experiment.yaml", "shop_metrics.py"):
        shutil.copy(EXAMPLE / name, root / name)
    generate(root / "data", customers=CUSTOMERS, seed=SEED)
    return root / "experiment.yaml"


@pytest.fixture(scope="session")
def oracle(example_yaml: Path) -> oracle_module.Oracle:
    return oracle_module.compute(example_yaml.parent / "data", example_yaml)


@pytest.fixture(scope="session")
def expected(oracle: oracle_module.Oracle) -> dict[tuple[str, str], oracle_module.Estimate]:
    """The oracle's headline numbers for the treatment cell."""
    return oracle_module.headline(oracle, TREATMENT)
