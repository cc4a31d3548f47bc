"""Slice filters: shapes, rendering per dialect, and refusal of hostile names and values."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from pipeline_helpers import Experiment
from sqlglot import exp

from xpcompute.errors import ColumnTypeError, InputError, UnsafeIdentifierError
from xpcompute.pipeline.slices import Condition, SliceFilter
from xpcompute.sql.dialects import render

SHAPES = {
    "everyone": SliceFilter.everyone(),
    "conjunction": SliceFilter.where(country="US", device="ios"),
    "disjunction_in": SliceFilter.either(country=["US", "CA"]),
    "disjunction_columns": SliceFilter.either(country="US", device="tv"),
    "mixed": SliceFilter(
        all_of=(Condition(column="plan", values=("basic",), negate=True),),
        any_of=(Condition(column="country", values=("US",)), Condition(column="device", values=("tv", "web"))),
    ),
}


def test_shapes_render_to_predicates() -> None:
    assert SHAPES["everyone"].to_sql() is None
    assert SHAPES["everyone"].label() == "all users"
    expected = {
        "conjunction": "\"country\" = 'US' AND \"device\" = 'ios'",
        "disjunction_in": "\"country\" IN ('US', 'CA')",
        "disjunction_columns": "(\"country\" = 'US' OR \"device\" = 'tv')",
        "mixed": "NOT (\"plan\" = 'basic') AND (\"country\" = 'US' OR \"device\" IN ('tv', 'web'))",
    }
    for name, text in expected.items():
        predicate = SHAPES[name].to_sql()
        assert predicate is not None
        assert render(predicate, "trino") == text, name
        assert render(predicate, "spark") == text.replace('"', "`"), name
    assert SHAPES["mixed"].label() == "plan!=basic & (country=US | device in (tv, web))"


def test_slice_identity_ignores_order_and_name() -> None:
    a = SliceFilter.where(country="US", device="ios")
    b = SliceFilter(name="US iOS", all_of=(Condition(column="device", values=("ios",)), Condition(column="country", values=("US",))))
    assert a.slice_id == b.slice_id and b.label() == "US iOS"
    assert SliceFilter.either(country=["CA", "US"]).slice_id == SHAPES["disjunction_in"].slice_id
    assert a.slice_id != SHAPES["disjunction_columns"].slice_id
    assert SliceFilter.model_validate_json(a.model_dump_json()) == a


@pytest.mark.parametrize(
    "column",
    [
        "country = 'US' OR 1=1 --",
        "country; DROP TABLE users",
        'country" OR "1"="1',
        "Country",
        "email",  # a real-looking column that is not a declared dimension
        "cell",
        "streaming_hours",
    ],
)
def test_names_that_are_not_declared_dimensions_are_refused(synth: Experiment, column: str) -> None:
    with pytest.raises(UnsafeIdentifierError, match="not a declared dimension"):
        SliceFilter.where(**{column: "US"}).check(synth.spec)


@pytest.mark.parametrize(
    "values,error,message",
    [
        (("US' OR '1'='1",), InputError, "not a known country"),
        (("US'); DROP TABLE analysis; --",), InputError, "not a known country"),
        (("us",), InputError, "use one of: BR, CA"),
        ((5,), ColumnTypeError, "string dimension"),
        ((True,), ColumnTypeError, "string dimension"),
        (("U\x00S",), InputError, "control characters"),
        (("x" * 300,), InputError, "over 256"),
    ],
)
def test_bad_values_are_refused(synth: Experiment, values: tuple[Any, ...], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        SliceFilter(all_of=(Condition(column="country", values=values),)).check(synth.spec)


def test_values_must_have_the_column_type_of_the_table(synth: Experiment) -> None:
    schema = pa.schema([("cell", pa.string()), ("country", pa.int64())])
    with pytest.raises(ColumnTypeError, match="has type int64 in the analysis table"):
        SliceFilter.where(country="US").check(synth.spec, schema)


def test_too_many_conditions_are_refused(synth: Experiment) -> None:
    # distinct conditions: equal ones are folded into one before the count (slice normalisation)
    many = SliceFilter(all_of=tuple(Condition(column="country", values=(f"C{i}",)) for i in range(65)))
    with pytest.raises(InputError, match="at most 64"):
        many.check(synth.spec)


HOSTILE = ["x' OR '1'='1", "x\\' OR 1=1 --", "x\\", "'; DROP TABLE t; --", 'x" OR "1"="1', "Côte d'Ivoire"]


@pytest.mark.parametrize("dialect", ["duckdb", "spark", "trino"])
def test_any_value_is_one_literal_in_every_dialect(dialect: str) -> None:
    """Even unchecked, a value renders as a single string literal that parses back to itself."""
    for value in HOSTILE:
        predicate = Condition(column="country", values=(value,)).to_sql()
        sql = f"SELECT 1 FROM t WHERE {render(predicate, dialect)}"
        tree = sqlglot.parse_one(sql, read=dialect)
        where = tree.find(exp.Where)
        assert where is not None
        literals = list(where.find_all(exp.Literal))
        assert len(literals) == 1 and literals[0].this == value, (dialect, value, sql)
        assert isinstance(where.this, exp.EQ)


def test_hostile_values_match_only_themselves_in_duckdb() -> None:
    con = duckdb.connect()
    con.register("t", pa.table({"country": [*HOSTILE, "US"]}))
    for value in HOSTILE:
        predicate = Condition(column="country", values=(value,)).to_sql()
        rows = con.sql(f"SELECT country FROM t WHERE {render(predicate, 'duckdb')}").fetchall()
        assert rows == [(value,)]
    assert con.sql("SELECT COUNT(*) FROM t").fetchall() == [(len(HOSTILE) + 1,)]


@pytest.mark.spark
def test_hostile_values_match_only_themselves_in_spark(spark: Any) -> None:
    spark.createDataFrame([(v,) for v in [*HOSTILE, "US"]], "country string").createOrReplaceTempView("hostile_t")
    for value in HOSTILE:
        predicate = Condition(column="country", values=(value,)).to_sql()
        rows = spark.sql(f"SELECT country FROM hostile_t WHERE {render(predicate, 'spark')}").collect()
        assert [r.country for r in rows] == [value]


def test_arrow_mask_matches_sql_including_nulls() -> None:
    table = pa.table({"country": ["US", "CA", None, "BR", "US"], "device": ["tv", None, "tv", "ios", "ios"], "plan": ["basic"] * 5})
    con = duckdb.connect()
    con.register("t", table)
    for name, shape in SHAPES.items():
        predicate = shape.to_sql()
        where = f" WHERE {render(predicate, 'duckdb')}" if predicate is not None else ""
        sql_count = con.sql(f"SELECT COUNT(*) FROM t{where}").fetchall()[0]
        mask = shape.to_arrow_mask(table)
        assert sql_count == (table.filter(mask).num_rows,), name
    negated = SliceFilter(all_of=(Condition(column="country", values=("US",), negate=True),))
    assert table.filter(negated.to_arrow_mask(table)).column("country").to_pylist() == ["CA", "BR"]  # null matches nothing


@pytest.mark.parametrize(
    "slice_filter",
    [
        SliceFilter.where(country="US"),
        SliceFilter.where(country=["US", "CA"], device="tv"),
        SliceFilter(all_of=(Condition(column="country", values=("US",), negate=True),)),
        SliceFilter.either(country="MX", device="ios"),
    ],
    ids=["equal", "conjunction", "negation", "disjunction"],
)
def test_dictionary_columns_give_the_same_mask(slice_filter: SliceFilter) -> None:
    """Dictionary-encoded columns are tested per dictionary value; rows (nulls included) get the plain answer."""
    import numpy as np

    rng = np.random.default_rng(7)
    country = rng.choice(np.array(["US", "CA", "MX", "BR", None], dtype=object), 2000)
    device = rng.choice(np.array(["tv", "ios", None], dtype=object), 2000)
    plain = pa.table({"country": pa.array(country, pa.string()), "device": pa.array(device, pa.string())})
    chunks = [plain.slice(0, 700), plain.slice(700)]  # two chunks, each with its own dictionary
    encoded = pa.concat_tables([
        pa.table({c: pa.chunked_array([t.column(c).combine_chunks().dictionary_encode()]) for c in t.column_names})
        for t in chunks
    ])
    assert pa.types.is_dictionary(encoded.schema.field("country").type)
    want = plain.filter(slice_filter.to_arrow_mask(plain))
    got = encoded.filter(slice_filter.to_arrow_mask(encoded))
    assert got.num_rows == want.num_rows > 0
    assert got.column("country").cast(pa.string()).to_pylist() == want.column("country").to_pylist()
