"""Properties of compressed fits: lossless equals raw, row order is irrelevant, a weight equals repetition."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpcompute.models import fit_table
from xpcompute.records import ResultRecord
from xpcompute.spec import CompressSpec, FitSpec

MODELS = st.sampled_from([("ttest", ()), ("ols", ("pre",)), ("ols", ("country", "pre")), ("proportion", ())])


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(min_value=40, max_value=300))
    seed = draw(st.integers(min_value=0, max_value=2**31))
    rng = np.random.default_rng(seed)
    # every cell and country appears at least twice, so every design is estimable
    cell = rng.choice(["control", "a", "b"], size=n)
    cell[:6] = ["control", "a", "b"] * 2
    country = rng.choice(["US", "CA", "MX"], size=n)
    country[:6] = ["US", "CA", "MX", "MX", "CA", "US"]
    pre = np.round(rng.normal(size=n), draw(st.integers(min_value=0, max_value=3)))
    y = pre + rng.normal(size=n)
    return pa.table({"cell": cell, "country": country, "pre": pre, "y": y, "bin": (y > 0).astype(np.int64),
                     "w": rng.integers(1, 4, size=n).astype(np.float64)})


def key(r: ResultRecord) -> tuple[str, str | None]:
    return (r.cell, r.segment)


def assert_same(a: list[ResultRecord], b: list[ResultRecord], rtol: float = 1e-8) -> None:
    assert [key(r) for r in a] == [key(r) for r in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose([x.effect, x.se, x.p_value], [y.effect, y.se, y.p_value], rtol=rtol, atol=1e-12)


def spec_for(model: tuple[str, tuple[str, ...]], metric: str, **kw: object) -> FitSpec:
    name, covariates = model
    return FitSpec(metric="bin" if name == "proportion" else metric, treatment="cell", model=name,  # type: ignore[arg-type]
                   covariates=covariates, **kw)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), MODELS)
def test_lossless_compressed_fit_equals_raw_fit(table: pa.Table, model: tuple[str, tuple[str, ...]]) -> None:
    comp = fit_table(table, spec_for(model, "y"))
    raw = fit_table(table, spec_for(model, "y", compress=CompressSpec(kind="none")))
    assert comp.compressed.n_groups <= raw.compressed.n_groups
    assert_same(comp.records, raw.records)


@settings(max_examples=40, deadline=None)
@given(tables(), MODELS, st.randoms(use_true_random=False))
def test_row_order_does_not_matter(table: pa.Table, model: tuple[str, tuple[str, ...]], rnd) -> None:  # type: ignore[no-untyped-def]
    perm = list(range(table.num_rows))
    rnd.shuffle(perm)
    assert_same(fit_table(table, spec_for(model, "y")).records,
                fit_table(table.take(pa.array(perm)), spec_for(model, "y")).records, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(tables(), MODELS)
def test_integer_weight_equals_repeating_the_row(table: pa.Table, model: tuple[str, tuple[str, ...]]) -> None:
    reps = np.asarray(table.column("w").to_numpy(), dtype=np.int64)
    expanded = table.take(pa.array(np.repeat(np.arange(table.num_rows), reps)))
    assert_same(fit_table(table, spec_for(model, "y", weights="w")).records,
                fit_table(expanded, spec_for(model, "y")).records)
