WITH "alloc" AS (
  SELECT
    "user_id" AS "user_id",
    MIN(CAST("cell" AS VARCHAR)) AS "cell"
  FROM "xp_allocations"
  WHERE
    "cell" IN ('control', 'autoplay', 'autoplay_plus')
  GROUP BY
    "user_id"
  HAVING
    MIN(CAST("cell" AS VARCHAR)) = MAX(CAST("cell" AS VARCHAR))
), "dims" AS (
  SELECT
    "user_id" AS "user_id",
    MIN(CAST("country" AS VARCHAR)) AS "country",
    MIN(CAST("device" AS VARCHAR)) AS "device",
    MIN(
      CAST(CASE
        WHEN "signup_date" IS NULL
        THEN NULL
        WHEN DATE_DIFF('DAY', "signup_date", CAST('2026-01-05' AS DATE)) < 90
        THEN '0-3m'
        WHEN DATE_DIFF('DAY', "signup_date", CAST('2026-01-05' AS DATE)) < 365
        THEN '3-12m'
        WHEN DATE_DIFF('DAY', "signup_date", CAST('2026-01-05' AS DATE)) < 1095
        THEN '1-3y'
        ELSE '3y+'
      END AS VARCHAR)
    ) AS "tenure_bucket",
    MIN(CAST("plan" AS VARCHAR)) AS "plan"
  FROM "xp_users"
  GROUP BY
    "user_id"
), "distinct_4" AS (
  SELECT
    "user_id",
    COUNT(*) AS "c4"
  FROM (
    SELECT DISTINCT
      "user_id" AS "user_id",
      "event_date" AS "v"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
      AND NOT "event_date" IS NULL
  ) AS "x"
  GROUP BY
    "user_id"
), "distinct_5" AS (
  SELECT
    "user_id",
    COUNT(*) AS "c5"
  FROM (
    SELECT DISTINCT
      "user_id" AS "user_id",
      "title_id" AS "v"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
      AND NOT "title_id" IS NULL
  ) AS "x"
  GROUP BY
    "user_id"
), "distinct_26" AS (
  SELECT
    "user_id",
    COUNT(*) AS "c26"
  FROM (
    SELECT DISTINCT
      "user_id" AS "user_id",
      "event_date" AS "v"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
      AND NOT "event_date" IS NULL
  ) AS "x"
  GROUP BY
    "user_id"
), "src_account" AS (
  SELECT
    "user_id" AS "user_id",
    MAX(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "event_type" = 'cancel'
        THEN 1
        ELSE 0
      END
    ) AS "c13",
    MIN(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "event_type" = 'cancel'
        THEN 0
        ELSE 1
      END
    ) AS "c14",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "event_type" = 'profile_edit'
        THEN 1
      END
    ) AS "c23"
  FROM "xp_account"
  WHERE
    "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
  GROUP BY
    "user_id"
), "src_billing" AS (
  SELECT
    "user_id" AS "user_id",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN "amount_cents"
      END
    ) AS "c11",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "kind" = 'rental'
        THEN 1
      END
    ) AS "c12",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "kind" = 'rental'
        THEN "amount_cents"
      END
    ) AS "c21",
    MAX(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "kind" = 'rental'
        THEN 1
        ELSE 0
      END
    ) AS "c22",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN "amount_cents"
      END
    ) AS "c27"
  FROM "xp_billing"
  WHERE
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-14' AS DATE)
  GROUP BY
    "user_id"
), "src_playback" AS (
  SELECT
    "user_id" AS "user_id",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN "watch_seconds"
      END
    ) AS "c0",
    MAX(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "watch_seconds" > 0
        THEN 1
        ELSE 0
      END
    ) AS "c1",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN 1
      END
    ) AS "c2",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "watch_seconds" >= 3600
        THEN 1
      END
    ) AS "c3",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN "rebuffer_seconds"
      END
    ) AS "c6",
    CAST(SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN "startup_latency_ms"
      END
    ) AS DOUBLE) / NULLIF(
      COUNT(
        CASE
          WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
          THEN "startup_latency_ms"
        END
      ),
      0
    ) AS "c10",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "rebuffer_seconds" >= 30
        THEN 1
      END
    ) AS "c15",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "startup_latency_ms" > 2000
        THEN 1
      END
    ) AS "c17",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND NOT "startup_latency_ms" IS NULL
        THEN 1
      END
    ) AS "c18",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        AND "watch_seconds" < 120
        THEN 1
      END
    ) AS "c19",
    MAX(
      CASE
        WHEN "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
        THEN "watch_seconds"
      END
    ) AS "c20",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN "watch_seconds"
      END
    ) AS "c24",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN 1
      END
    ) AS "c25"
  FROM "xp_playback"
  WHERE
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-14' AS DATE)
  GROUP BY
    "user_id"
), "ratio_constants" AS (
  SELECT
    CASE
      WHEN ABS(
        CAST(SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "y0" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "d0" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) BETWEEN CAST(1.00000000000000008e-30 AS DOUBLE) AND CAST(1.00000000000000002e+30 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "y0" END)) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "d0" END)) * ABS(
        CAST(SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "y0" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "d0" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      THEN CAST(CAST(CAST(SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "y0" END) AS DOUBLE) / NULLIF(
        SUM(CASE WHEN NOT "y0" IS NULL AND NOT "d0" IS NULL THEN "d0" END),
        CAST(0.00000000000000000e+00 AS DOUBLE)
      ) AS REAL) AS DOUBLE)
      ELSE CAST(0.00000000000000000e+00 AS DOUBLE)
    END AS "c0",
    CASE
      WHEN ABS(
        CAST(SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "y1" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "d1" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) BETWEEN CAST(1.00000000000000008e-30 AS DOUBLE) AND CAST(1.00000000000000002e+30 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "y1" END)) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "d1" END)) * ABS(
        CAST(SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "y1" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "d1" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      THEN CAST(CAST(CAST(SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "y1" END) AS DOUBLE) / NULLIF(
        SUM(CASE WHEN NOT "y1" IS NULL AND NOT "d1" IS NULL THEN "d1" END),
        CAST(0.00000000000000000e+00 AS DOUBLE)
      ) AS REAL) AS DOUBLE)
      ELSE CAST(0.00000000000000000e+00 AS DOUBLE)
    END AS "c1",
    CASE
      WHEN ABS(
        CAST(SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "y2" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "d2" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) BETWEEN CAST(1.00000000000000008e-30 AS DOUBLE) AND CAST(1.00000000000000002e+30 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "y2" END)) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "d2" END)) * ABS(
        CAST(SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "y2" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "d2" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      THEN CAST(CAST(CAST(SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "y2" END) AS DOUBLE) / NULLIF(
        SUM(CASE WHEN NOT "y2" IS NULL AND NOT "d2" IS NULL THEN "d2" END),
        CAST(0.00000000000000000e+00 AS DOUBLE)
      ) AS REAL) AS DOUBLE)
      ELSE CAST(0.00000000000000000e+00 AS DOUBLE)
    END AS "c2",
    CASE
      WHEN ABS(
        CAST(SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "y3" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "d3" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) BETWEEN CAST(1.00000000000000008e-30 AS DOUBLE) AND CAST(1.00000000000000002e+30 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "y3" END)) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "d3" END)) * ABS(
        CAST(SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "y3" END) AS DOUBLE) / NULLIF(
          SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "d3" END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      THEN CAST(CAST(CAST(SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "y3" END) AS DOUBLE) / NULLIF(
        SUM(CASE WHEN NOT "y3" IS NULL AND NOT "d3" IS NULL THEN "d3" END),
        CAST(0.00000000000000000e+00 AS DOUBLE)
      ) AS REAL) AS DOUBLE)
      ELSE CAST(0.00000000000000000e+00 AS DOUBLE)
    END AS "c3"
  FROM (
    SELECT
      CAST(COALESCE("p5"."c6", 0) AS DOUBLE) AS "y0",
      CAST(COALESCE("p5"."c0", 0) AS DOUBLE) AS "d0",
      CAST(COALESCE("p5"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "y1",
      CAST(COALESCE("p5"."c2", 0) AS DOUBLE) AS "d1",
      CAST(COALESCE("p5"."c15", 0) AS DOUBLE) AS "y2",
      CAST(COALESCE("p5"."c2", 0) AS DOUBLE) AS "d2",
      CAST(COALESCE("p5"."c17", 0) AS DOUBLE) AS "y3",
      CAST(COALESCE("p5"."c18", 0) AS DOUBLE) AS "d3"
    FROM "alloc" AS "a"
    LEFT JOIN "src_playback" AS "p5"
      ON "p5"."user_id" = "a"."user_id"
  ) AS "v"
)
SELECT
  "a"."user_id",
  "a"."cell",
  "u"."country",
  "u"."device",
  "u"."tenure_bucket",
  "u"."plan",
  CAST(COALESCE("p5"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "streaming_hours",
  CAST(COALESCE("p5"."c1", 0) AS BIGINT) AS "is_streamer",
  CAST(COALESCE("p5"."c2", 0) AS BIGINT) AS "sessions",
  CAST(COALESCE("p5"."c3", 0) AS BIGINT) AS "long_sessions",
  CAST(COALESCE("p0"."c4", 0) AS BIGINT) AS "active_days",
  CAST(COALESCE("p1"."c5", 0) AS BIGINT) AS "titles_started",
  CAST(COALESCE("p5"."c6", 0) AS DOUBLE) AS "rebuffer_rate",
  CAST(COALESCE("p5"."c0", 0) AS DOUBLE) AS "rebuffer_rate__den",
  CAST(COALESCE("p5"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "hours_per_session",
  CAST(COALESCE("p5"."c2", 0) AS DOUBLE) AS "hours_per_session__den",
  CAST("p5"."c10" AS DOUBLE) AS "playback_start_latency",
  CAST(COALESCE("p4"."c11", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "revenue",
  CAST(COALESCE("p4"."c12", 0) AS BIGINT) AS "rentals",
  CAST(COALESCE("p3"."c13", 0) AS BIGINT) AS "cancelled",
  CAST(COALESCE("p3"."c14", 1) AS BIGINT) AS "retained",
  CAST(COALESCE("p5"."c15", 0) AS DOUBLE) AS "rebuffered_session_rate",
  CAST(COALESCE("p5"."c2", 0) AS DOUBLE) AS "rebuffered_session_rate__den",
  CAST(COALESCE("p5"."c17", 0) AS DOUBLE) AS "slow_start_rate",
  CAST(COALESCE("p5"."c18", 0) AS DOUBLE) AS "slow_start_rate__den",
  CAST(COALESCE("p5"."c19", 0) AS BIGINT) AS "early_abandons",
  CAST("p5"."c20" AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "longest_session_hours",
  CAST(COALESCE("p4"."c21", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "rental_revenue",
  CAST(COALESCE("p4"."c22", 0) AS BIGINT) AS "is_renter",
  CAST(COALESCE("p3"."c23", 0) AS BIGINT) AS "profile_edits",
  CAST(COALESCE("p5"."c24", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "pre_streaming_hours",
  CAST(COALESCE("p5"."c25", 0) AS DOUBLE) AS "pre_sessions",
  CAST(COALESCE("p2"."c26", 0) AS DOUBLE) AS "pre_active_days",
  CAST(COALESCE("p4"."c27", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "pre_revenue",
  (
    CAST(COALESCE("p5"."c6", 0) AS DOUBLE)
  ) - "rc"."c0" * (
    CAST(COALESCE("p5"."c0", 0) AS DOUBLE)
  ) AS "rebuffer_rate__res",
  (
    CAST(COALESCE("p5"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE)
  ) - "rc"."c1" * (
    CAST(COALESCE("p5"."c2", 0) AS DOUBLE)
  ) AS "hours_per_session__res",
  (
    CAST(COALESCE("p5"."c15", 0) AS DOUBLE)
  ) - "rc"."c2" * (
    CAST(COALESCE("p5"."c2", 0) AS DOUBLE)
  ) AS "rebuffered_session_rate__res",
  (
    CAST(COALESCE("p5"."c17", 0) AS DOUBLE)
  ) - "rc"."c3" * (
    CAST(COALESCE("p5"."c18", 0) AS DOUBLE)
  ) AS "slow_start_rate__res"
FROM "alloc" AS "a"
LEFT JOIN "dims" AS "u"
  ON "u"."user_id" = "a"."user_id"
LEFT JOIN "distinct_4" AS "p0"
  ON "p0"."user_id" = "a"."user_id"
LEFT JOIN "distinct_5" AS "p1"
  ON "p1"."user_id" = "a"."user_id"
LEFT JOIN "distinct_26" AS "p2"
  ON "p2"."user_id" = "a"."user_id"
LEFT JOIN "src_account" AS "p3"
  ON "p3"."user_id" = "a"."user_id"
LEFT JOIN "src_billing" AS "p4"
  ON "p4"."user_id" = "a"."user_id"
LEFT JOIN "src_playback" AS "p5"
  ON "p5"."user_id" = "a"."user_id"
CROSS JOIN "ratio_constants" AS "rc"
