"""What segment discovery reports, as the API serves it: its settings, tests and segments (pydantic models).

Why apart from ``discovery``: the API's response models include a segment report, and importing the discovery
code (numpy, pyarrow.compute, the cube's SQL) for them would cost every API cold start.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from xpcompute.pipeline.slices import SliceFilter

#: the rule that puts each unit in a half (``cube.HALF_SQL`` computes it), as the API and the page state it
HALF_RULE = "half = lowest bit of MD5(unit id as text): 1 if the last hex digit of the digest is odd, else 0"


class SegmentSettings(BaseModel):
    """The knobs of segment discovery (defaults are what the service uses)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_depth: int = Field(default=2, ge=1, le=4, description="Deepest conjunction a leaf can be (number of splits).")
    min_units: int = Field(default=200, ge=2, description="Fewest units of the control and of the treatment cell "
                                                          "a tree node needs in each half (and a dimension value "
                                                          "in the heterogeneity test).")
    split_alpha: float = Field(default=0.01, gt=0, lt=1, description="A split is made when its statistic exceeds "
                                                                      "the chi-square(1) quantile at this level.")
    fdr: float = Field(default=0.05, gt=0, lt=1, description="False discovery rate (Benjamini–Hochberg) across "
                                                              "every test of the analysis.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Level of the reported intervals.")


class HeterogeneityTest(BaseModel):
    """The Wald test that the CATEs of one treatment cell are equal across a dimension's values."""

    model_config = ConfigDict(frozen=True)

    metric: str
    cell: str
    control: str
    dimension: str
    values: list[str]
    left_out: list[str] = Field(default_factory=list, description="Values with fewer than min_units units in a cell.")
    chi2: float | None
    df: int | None
    p_value: float | None
    p_adjusted: float | None = None
    discovered: bool = False
    note: str | None = None


class Segment(BaseModel):
    """One leaf of an honest tree: a conjunction of dimension conditions, estimated on the estimation half."""

    model_config = ConfigDict(frozen=True)

    metric: str
    cell: str
    control: str
    label: str
    slice: SliceFilter = Field(description="The slice filter of this segment: POST it to /analyses/{id}/slices "
                                           "to compute it as a live slice on every unit.")
    depth: int
    n_cell: float = Field(description="Units of the treatment cell in the segment, estimation half.")
    n_control: float = Field(description="Units of the control in the segment, estimation half.")
    effect: float | None = Field(description="Difference in means (cell - control) in the segment, estimation half.")
    se: float | None
    ci_low: float | None
    ci_high: float | None
    rest_effect: float | None = Field(description="The same effect in every unit not in the segment.")
    difference: float | None = Field(description="effect - rest_effect: how much the segment's effect differs.")
    difference_se: float | None
    difference_ci_low: float | None
    difference_ci_high: float | None
    p_value: float | None = Field(description="Two-sided test that the segment's effect equals the rest's.")
    p_adjusted: float | None = None
    discovered: bool = False
    split_statistic: float | None = Field(default=None, description="The criterion of the last split that made "
                                                                    "this leaf, on the split half.")


class SegmentReport(BaseModel):
    """Everything segment discovery tested, corrected together; ``discoveries`` counts the rejections."""

    model_config = ConfigDict(frozen=True)

    analysis_id: str | None = None
    dimensions: list[str]
    metrics: list[str]
    settings: SegmentSettings
    halves: str = Field(default=HALF_RULE, description="How units are assigned to the two halves.")
    criterion: str = Field(default="squared z of the difference of the children's effects on the split half")
    tests: list[HeterogeneityTest] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    tested: int = 0
    discoveries: int = 0
    notes: list[str] = Field(default_factory=list)
