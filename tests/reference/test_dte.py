"""DTE (period x cell effects, errors clustered by user) against statsmodels and linearmodels at 1e-8.

The raw data is an unbalanced user-by-day panel (some user-days missing) with
three cells of unequal size, a user-level country key and a per-user
frequency weight. The reference is statsmodels OLS on the raw user-day rows
with ``cov_type='cluster'`` grouped by user (a weighted user is repeated as
that many distinct users), and linearmodels ``PanelOLS`` clustered by entity.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcompute.compression.io import from_parquet_bytes, to_parquet_bytes
from xpcompute.compression.panel import compress_panel, compress_user_periods, panel_columns, panel_sums
from xpcompute.errors import (
    CellError,
    ColumnTypeError,
    InputError,
    MissingColumnError,
    MissingValuesError,
    ZeroVarianceError,
)
from xpcompute.models import fit_compressed, fit_table
from xpcompute.models.dte import DTEModel
from xpcompute.models.panel_data import PanelData
from xpcompute.records import ResultRecord
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8
CELLS = ("control", "a", "b")


def make_panel(
    n_users: int = 400,
    n_periods: int = 5,
    seed: int = 0,
    presence: float = 0.75,
    weights: bool = False,
    dates: bool = False,
) -> pa.Table:
    """Unbalanced user-by-day rows: user effect, day effect, a growing effect in cell 'a', heteroskedastic noise."""
    rng = np.random.default_rng(seed)
    cell_u = rng.choice(len(CELLS), size=n_users, p=[0.5, 0.3, 0.2])
    country_u = rng.choice(["US", "CA", "MX"], size=n_users, p=[0.5, 0.3, 0.2])
    w_u = rng.integers(1, 4, size=n_users).astype(np.float64)
    user_effect = rng.normal(size=n_users)
    uu, tt = np.meshgrid(np.arange(n_users), np.arange(n_periods), indexing="ij")
    keep = rng.random(uu.shape) < presence
    u, t = uu[keep], tt[keep]
    y = (
        1.0 + 0.2 * t + user_effect[u] + 0.1 * t * (cell_u[u] == 1) - 0.05 * (cell_u[u] == 2)
        + 0.3 * (country_u[u] == "US") + rng.normal(size=len(u)) * (1 + 0.5 * (cell_u[u] == 2))
    )
    days: Any = (
        pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in t], pa.date32()) if dates else t
    )
    cols: dict[str, Any] = {
        "user": (u * 7 + 11).astype(np.int64),
        "day": days,
        "cell": pa.array(np.asarray(CELLS)[cell_u[u]].tolist(), pa.string()),
        "country": pa.array(country_u[u].tolist(), pa.string()),
        "y": y,
    }
    if weights:
        cols["w"] = w_u[u]
    order = rng.permutation(len(u))
    return pa.table(cols).take(pa.array(order))


def expand_users(table: pa.Table, weight: str = "w") -> pa.Table:
    """Repeat each user's rows ``w`` times as ``w`` distinct users (the meaning of a per-user frequency weight)."""
    reps = np.asarray(table.column(weight).to_numpy(), dtype=np.int64)
    idx = np.repeat(np.arange(table.num_rows), reps)
    copy_no = np.concatenate([np.arange(r) for r in reps]) if len(reps) else np.zeros(0, np.int64)
    out = table.take(pa.array(idx)).drop_columns([weight])
    users = out.column("user").to_numpy() * 10 + copy_no
    return out.set_column(out.schema.get_field_index("user"), "user", pa.array(users))


class Reference:
    """statsmodels OLS on the raw rows, design ordered like ``PanelDesign``, clustered by user."""

    def __init__(self, table: pa.Table, covariates: tuple[str, ...] = (), use_t: bool = False) -> None:
        df = table.to_pandas()
        df = df[df["y"].notna()]
        self.periods = sorted(df["day"].unique())
        self.labels = [str(p) for p in self.periods]
        cells = ["control", *sorted(c for c in df["cell"].unique() if c != "control")]
        self.cells = cells
        p = len(self.periods)
        cols = [(df["day"] == d).to_numpy(float) for d in self.periods]
        for c in cells[1:]:
            cols += [((df["day"] == d) & (df["cell"] == c)).to_numpy(float) for d in self.periods]
        for k in covariates:
            cols += [(df[k] == level).to_numpy(float) for level in sorted(df[k].unique())[1:]]
        x = np.column_stack(cols)
        groups = np.unique(df["user"].to_numpy(), return_inverse=True)[1]
        self.res = sm.OLS(df["y"].to_numpy(), x).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=use_t)
        self.x, self.y, self.groups = x, df["y"].to_numpy(), groups
        self.share = np.array([(df["day"] == d).mean() for d in self.periods])
        self.p = p

    def column(self, cell: str, period: int) -> int:
        return self.p * self.cells.index(cell) + period

    def overall(self, cell: str) -> tuple[float, float, float, tuple[float, float]]:
        """Row-weighted average effect over periods: effect, se, p-value, interval."""
        r = np.zeros(len(self.res.params))
        r[self.p * self.cells.index(cell): self.p * (self.cells.index(cell) + 1)] = self.share
        test = self.res.t_test(r)
        lo, hi = np.asarray(test.conf_int()).ravel()
        return float(np.squeeze(test.effect)), float(np.squeeze(test.sd)), float(np.squeeze(test.pvalue)), (lo, hi)


def check_against(records: list[ResultRecord], ref: Reference) -> None:
    by_key = {(r.time, r.cell): r for r in records}
    assert set(by_key) == {(t, c) for t in [None, *ref.labels] for c in ref.cells[1:]}
    for c in ref.cells[1:]:
        for i, label in enumerate(ref.labels):
            r, j = by_key[(label, c)], ref.column(c, i)
            np.testing.assert_allclose(r.effect, ref.res.params[j], rtol=RTOL, atol=1e-12)
            np.testing.assert_allclose(r.se, ref.res.bse[j], rtol=RTOL)
            np.testing.assert_allclose(r.p_value, ref.res.pvalues[j], rtol=1e-7)
            np.testing.assert_allclose([r.ci_low, r.ci_high], ref.res.conf_int()[j], rtol=RTOL)
        effect, se, p, (lo, hi) = ref.overall(c)
        r = by_key[(None, c)]
        np.testing.assert_allclose([r.effect, r.se, r.ci_low, r.ci_high], [effect, se, lo, hi], rtol=RTOL)
        np.testing.assert_allclose(r.p_value, p, rtol=1e-7)


def dte_spec(**kw: Any) -> FitSpec:
    return FitSpec(**{"metric": "y", "treatment": "cell", "model": "dte", "time": "day", "cluster": "user", **kw})


# ---- effects and standard errors ---------------------------------------------------------------
@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize("covariates", [(), ("country",)])
def test_dte_matches_statsmodels_cluster(compress: str, covariates: tuple[str, ...]) -> None:
    table = make_panel(seed=1)
    out = fit_table(table, dte_spec(covariates=covariates, compress=CompressSpec.parse(compress)))
    check_against(out.records, Reference(table, covariates))
    if compress == "lossless":
        assert out.compressed.n_groups == 3 * (3 if covariates else 1)


def test_keys_not_named_as_covariates_are_summed_over() -> None:
    """A panel grouped by country but fitted without it is the model without the country dummies."""
    table = make_panel(seed=15)
    compressed = compress_panel(table, dte_spec(covariates=("country",)))
    check_against(fit_compressed(compressed, dte_spec()), Reference(table))


def test_dte_frequency_weights_equal_repeated_users() -> None:
    """A user with weight w is w users (w clusters): same as statsmodels on the expanded rows."""
    table = make_panel(n_users=300, seed=2, weights=True, dates=True)
    out = fit_table(table, dte_spec(weights="w", covariates=("country",)))
    expanded = expand_users(table)
    check_against(out.records, Reference(expanded, ("country",)))
    unweighted = fit_table(expanded, dte_spec(covariates=("country",)))
    for a, b in zip(out.records, unweighted.records, strict=True):
        np.testing.assert_allclose([a.effect, a.se, a.n_cell, a.mean_cell], [b.effect, b.se, b.n_cell, b.mean_cell],
                                   rtol=1e-10)
    assert out.records[0].time is None and out.records[2].time == "2024-01-01"


def test_dte_means_and_counts_are_cell_period_means() -> None:
    table = make_panel(seed=3)
    out = fit_table(table, dte_spec())
    df = table.to_pandas()
    for r in out.records:
        rows = df if r.time is None else df[df["day"].astype(str) == r.time]
        for cell, n, mean in ((r.cell, r.n_cell, r.mean_cell), ("control", r.n_control, r.mean_control)):
            sel = rows[rows["cell"] == cell]["y"]
            assert n == len(sel)
            np.testing.assert_allclose(mean, sel.mean(), rtol=1e-12)


def test_dte_matches_linearmodels_panelols() -> None:
    """linearmodels with ``debiased=True, group_debias=True`` applies the same correction as statsmodels."""
    pd = pytest.importorskip("pandas")
    from linearmodels import PanelOLS

    table = make_panel(seed=4)
    out = fit_table(table, dte_spec())
    ref = Reference(table)
    df = table.to_pandas()
    index = pd.MultiIndex.from_arrays([df["user"], df["day"]])
    exog = pd.DataFrame(ref.x, index=index, columns=[f"x{j}" for j in range(ref.x.shape[1])])
    lm = PanelOLS(pd.Series(ref.y, index=index), exog).fit(
        cov_type="clustered", cluster_entity=True, debiased=True, group_debias=True
    )
    by_key = {(r.time, r.cell): r for r in out.records}
    for c in ref.cells[1:]:
        for i, label in enumerate(ref.labels):
            j = ref.column(c, i)
            np.testing.assert_allclose(by_key[(label, c)].effect, lm.params.iloc[j], rtol=RTOL)
            np.testing.assert_allclose(by_key[(label, c)].se, lm.std_errors.iloc[j], rtol=RTOL)


def test_dte_relative_effect_by_delta_method() -> None:
    """Per period, relative lift = tau_t / alpha_t (control mean); SE from statsmodels' clustered covariance."""
    table = make_panel(seed=16)
    out = fit_table(table, dte_spec())
    ref = Reference(table)
    by_key = {(r.time, r.cell): r for r in out.records}
    cov = ref.res.cov_params()
    for c in ref.cells[1:]:
        for i, label in enumerate(ref.labels):
            j = ref.column(c, i)
            alpha, tau = ref.res.params[i], ref.res.params[j]
            grad = np.zeros(len(ref.res.params))
            grad[i], grad[j] = -tau / alpha**2, 1 / alpha
            r = by_key[(label, c)]
            np.testing.assert_allclose(r.relative_effect, tau / alpha, rtol=RTOL)
            np.testing.assert_allclose(r.relative_se, np.sqrt(grad @ cov @ grad), rtol=RTOL)


def test_dte_student_t_variant_matches_statsmodels_use_t() -> None:
    class DTEWithT(DTEModel):
        use_t = True

    table = make_panel(n_users=120, seed=5)
    compressed = compress_panel(table, dte_spec())
    records = DTEWithT().estimate(PanelData(compressed=compressed, spec=dte_spec()))
    ref = Reference(table, use_t=True)
    check_against(records, ref)
    assert records[0].df == len(np.unique(table.column("user").to_numpy())) - 1


def test_dte_null_metric_rows_dropped_and_users_without_data_not_counted() -> None:
    table = make_panel(seed=6)
    y = table.column("y").to_numpy().copy()
    users = table.column("user").to_numpy()
    mask = np.zeros(len(y), bool)
    mask[::17] = True
    mask |= users == users[0]  # one user loses every row: it must not count as a cluster
    table = table.set_column(table.schema.get_field_index("y"), "y", pa.array(y, mask=mask))
    out = fit_table(table, dte_spec())
    check_against(out.records, Reference(table))
    assert out.compressed.layout.dropped["y"] == int(mask.sum())
    assert any("dropped" in note for note in out.records[0].notes)
    with pytest.raises(MissingValuesError, match="null_policy"):
        fit_table(table, dte_spec(null_policy="refuse"))


def test_dte_duplicate_user_days_are_separate_rows() -> None:
    """Two rows for one user-day: the compressed fit equals the regression on all rows (presence counts)."""
    table = make_panel(n_users=200, seed=7)
    table = pa.concat_tables([table, table.slice(0, 40)])
    check_against(fit_table(table, dte_spec()).records, Reference(table))


# ---- the compressed table ---------------------------------------------------------------------------
def test_panel_layout_and_parquet_round_trip() -> None:
    table = make_panel(seed=8, weights=True)
    spec = dte_spec(weights="w", covariates=("country",))
    compressed = compress_panel(table, spec)
    layout = compressed.layout
    assert layout.kind == "panel" and layout.keys == ("cell", "country")
    assert layout.extra["periods"] == ["0", "1", "2", "3", "4"]
    assert (layout.extra["time"], layout.extra["cluster"], layout.extra["weights"]) == ("day", "user", "w")
    names, exps = panel_columns("y", 5)
    assert len(names) == 2 * 5 + 15 + 25 + 15 and exps.shape == (len(names), 10)
    assert {"cell", "country", "_n", "y__users", "y__y_0", "y__p_4", "y__yy_0_4", "y__yp_4_0", "y__pp_3_4"} <= set(
        compressed.table.column_names
    )
    assert compressed.compression_ratio == table.num_rows / 9
    sums = panel_sums(compressed, "y")
    np.testing.assert_allclose(sums.users.sum(), compressed.table.column("_n").to_numpy().sum())
    w = table.column("w").to_numpy()
    np.testing.assert_allclose(sums.p.sum(), w.sum())  # user-days, frequency-weighted
    # the panel holds sums of z = (y - shift) / scale, the metric's constants recorded in the layout
    z = layout.metrics["y"].transform(0).apply(table.column("y").to_numpy())
    np.testing.assert_allclose(sums.y.sum(), (w * z).sum())

    back = from_parquet_bytes(to_parquet_bytes(compressed))
    assert back.layout == compressed.layout
    assert back.table.equals(compressed.table)
    a = fit_compressed(compressed, spec)
    b = fit_compressed(back, spec)
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]


def test_lossless_equals_one_row_per_user() -> None:
    table = make_panel(seed=9, weights=True)
    lossless = fit_table(table, dte_spec(weights="w", covariates=("country",)))
    raw = fit_table(table, dte_spec(weights="w", covariates=("country",), compress=CompressSpec(kind="none")))
    assert raw.compressed.n_groups == len(np.unique(table.column("user").to_numpy()))
    for a, b in zip(lossless.records, raw.records, strict=True):
        assert (a.time, a.cell) == (b.time, b.cell)
        np.testing.assert_allclose([a.effect, a.se, a.p_value], [b.effect, b.se, b.p_value], rtol=1e-10)


def test_several_metrics_in_one_panel() -> None:
    """Metrics compressed together keep their own rows (a null drops a row from that metric only)."""
    table = make_panel(n_users=150, seed=17)
    y = table.column("y").to_numpy()
    z = np.where(np.arange(len(y)) % 5 == 0, np.nan, 2 * y + 1)
    table = table.append_column("z", pa.array(z, from_pandas=True))
    both = compress_user_periods(table, metrics=("y", "z"), treatment="cell", time="day", cluster="user")
    assert both.layout.dropped == {"y": 0, "z": int(np.isnan(z).sum())}
    for metric in ("y", "z"):
        alone = compress_user_periods(table, metrics=(metric,), treatment="cell", time="day", cluster="user")
        a = fit_compressed(both, dte_spec(metric=metric))
        b = fit_compressed(alone, dte_spec(metric=metric))
        assert [r.model_dump() for r in a] == [r.model_dump() for r in b]
    ref = Reference(table.drop_columns(["y"]).rename_columns([*table.column_names[:4], "y"]))
    check_against(fit_compressed(both, dte_spec(metric="z")), ref)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_user_and_row_order_do_not_matter(seed: int) -> None:
    table = make_panel(n_users=150, n_periods=4, seed=10, weights=True)
    rng = np.random.default_rng(seed)
    # shuffle rows and relabel users with a random one-to-one map
    users = table.column("user").to_numpy()
    uniq, inv = np.unique(users, return_inverse=True)
    relabel = rng.permutation(len(uniq)) * 3 + 1
    shuffled = table.set_column(table.schema.get_field_index("user"), "user", pa.array(relabel[inv]))
    shuffled = shuffled.take(pa.array(rng.permutation(table.num_rows)))
    spec = dte_spec(weights="w")
    a, b = fit_table(table, spec), fit_table(shuffled, spec)
    for ra, rb in zip(a.records, b.records, strict=True):
        assert (ra.time, ra.cell) == (rb.time, rb.cell)
        np.testing.assert_allclose([ra.effect, ra.se, ra.p_value], [rb.effect, rb.se, rb.p_value], rtol=1e-9)


# ---- bad input -----------------------------------------------------------------------------------------
def test_missing_time_or_cluster_column() -> None:
    table = make_panel(n_users=50, seed=11)
    with pytest.raises(MissingColumnError, match=r"time column \(--time\) 'date' not found"):
        fit_table(table, dte_spec(time="date"))
    with pytest.raises(MissingColumnError, match=r"cluster column .*'uid' not found.*has columns"):
        fit_table(table, dte_spec(cluster="uid"))


def test_user_in_two_cells_is_refused() -> None:
    table = make_panel(n_users=50, seed=12)
    cells = table.column("cell").to_pylist()
    users = table.column("user").to_pylist()
    target = users[0]
    first = next(i for i, u in enumerate(users) if u == target)
    second = next(i for i, u in enumerate(users) if u == target and i != first)
    cells[second] = "b" if cells[first] != "b" else "a"
    bad = table.set_column(table.schema.get_field_index("cell"), "cell", pa.array(cells))
    with pytest.raises(CellError, match=rf"user {target} appears in cells .* each user must stay in one cell"):
        fit_table(bad, dte_spec())


def test_key_or_weight_varying_within_user_is_refused() -> None:
    table = make_panel(n_users=50, seed=13, weights=True)
    users = table.column("user").to_numpy()
    idx = np.flatnonzero(users == users[0])
    country = table.column("country").to_pylist()
    country[idx[1]] = "ZZ"
    bad = table.set_column(table.schema.get_field_index("country"), "country", pa.array(country))
    with pytest.raises(InputError, match=r"key 'country' changes within user .* user-level keys"):
        fit_table(bad, dte_spec(covariates=("country",)))
    w = table.column("w").to_numpy().copy()
    w[idx[1]] += 1
    bad = table.set_column(table.schema.get_field_index("w"), "w", pa.array(w))
    with pytest.raises(InputError, match=r"weight 'w' changes within user .* repeat it on every row"):
        fit_table(bad, dte_spec(weights="w"))


def test_unidentified_cell_period_and_other_bad_specs() -> None:
    table = make_panel(n_users=80, seed=14)
    df_mask = ~((table.column("cell").to_numpy(zero_copy_only=False) == "b") & (table.column("day").to_numpy() == 2))
    with pytest.raises(CellError, match=r"cell 'b' has no rows in period '2'.*filter the time column"):
        fit_table(table.filter(pa.array(df_mask)), dte_spec())
    with pytest.raises(ColumnTypeError, match=r"discrete user-level covariates.*Cast it to string"):
        fit_table(table.append_column("age", pa.array(np.ones(table.num_rows))), dte_spec(covariates=("age",)))
    with pytest.raises(ColumnTypeError, match="metric 'country' has type string"):
        fit_table(table, dte_spec(metric="country"))
    with pytest.raises(InputError, match="per period, not per segment"):
        fit_table(table, dte_spec(segment="country"))
    flat = table.set_column(table.schema.get_field_index("y"), "y", pa.array(np.full(table.num_rows, 2.0)))
    with pytest.raises(ZeroVarianceError, match="no residual variation"):
        fit_table(flat, dte_spec())
    with pytest.raises(InputError, match="time and cluster columns are both 'user'"):
        fit_table(table, dte_spec(time="user"))
    with pytest.raises(InputError, match=r"distinct periods.*coarsen it"):
        fit_table(table.append_column("ts", pa.array(np.arange(table.num_rows))), dte_spec(time="ts"))
    moments = fit_table(make_panel(n_users=40, seed=15), FitSpec(metric="y", treatment="cell")).compressed
    with pytest.raises(InputError, match="needs panel-compressed data"):
        DTEModel().estimate(PanelData(compressed=moments, spec=dte_spec()))


@pytest.mark.parametrize("location,magnitude", [(1e9, 1.0), (-1e6, 1e-150), (1e5, 1e150), (0.0, 1e-300)])
def test_dte_matches_statsmodels_at_any_location_and_magnitude(location: float, magnitude: float) -> None:
    """The panel holds sums of shifted, scaled values (``yy`` at 1e9 x sd kept no digit before).

    statsmodels runs on the rows moved by an exact shift (every value within a factor of two of the first)
    and an exact power of two, which only moves the period intercepts and scales the effects.
    """
    base = make_panel(seed=12)
    y = base.column("y").to_numpy(zero_copy_only=False)
    raw = (location + y) * magnitude
    table = base.set_column(base.schema.get_field_index("y"), "y", pa.array(raw))
    records = fit_table(table, dte_spec()).records
    shifted = raw - raw[0] if location else raw
    if location:
        ok = (raw / raw[0] >= 0.5) & (raw / raw[0] <= 2)
        assert ok.all()  # Sterbenz: the shift is exact
    k = math.frexp(float(np.max(np.abs(shifted))))[1]
    ref_table = base.set_column(base.schema.get_field_index("y"), "y", pa.array(np.ldexp(shifted, -k)))
    ref = Reference(ref_table)
    by_key = {(r.time, r.cell): r for r in records}
    for c in ref.cells[1:]:
        for i, label in enumerate(ref.labels):
            r, j = by_key[(label, c)], ref.column(c, i)
            np.testing.assert_allclose([r.effect, r.se], [math.ldexp(ref.res.params[j], k), math.ldexp(ref.res.bse[j], k)], rtol=RTOL)
            np.testing.assert_allclose(r.p_value, ref.res.pvalues[j], rtol=1e-7)
