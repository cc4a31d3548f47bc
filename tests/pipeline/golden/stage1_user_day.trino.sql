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
), "day_index" AS (
  SELECT
    CAST("day" AS INTEGER) AS "day"
  FROM (VALUES
    (0),
    (1),
    (2),
    (3),
    (4),
    (5),
    (6),
    (7),
    (8),
    (9)) AS "days"("day")
), "distinct_4" AS (
  SELECT
    "user_id",
    "day",
    COUNT(*) AS "c4"
  FROM (
    SELECT DISTINCT
      "user_id" AS "user_id",
      CAST(DATE_DIFF('DAY', CAST('2026-01-05' AS DATE), "event_date") AS INTEGER) AS "day",
      "event_date" AS "v"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
      AND NOT "event_date" IS NULL
  ) AS "x"
  GROUP BY
    "user_id",
    "day"
), "distinct_5" AS (
  SELECT
    "user_id",
    "day",
    COUNT(*) AS "c5"
  FROM (
    SELECT DISTINCT
      "user_id" AS "user_id",
      CAST(DATE_DIFF('DAY', CAST('2026-01-05' AS DATE), "event_date") AS INTEGER) AS "day",
      "title_id" AS "v"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
      AND NOT "title_id" IS NULL
  ) AS "x"
  GROUP BY
    "user_id",
    "day"
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
), "src_account_d" AS (
  SELECT
    "user_id" AS "user_id",
    "_xp_day" AS "day",
    MAX(CASE WHEN "event_type" = 'cancel' THEN 1 ELSE 0 END) AS "c13",
    MIN(CASE WHEN "event_type" = 'cancel' THEN 0 ELSE 1 END) AS "c14",
    COUNT(CASE WHEN "event_type" = 'profile_edit' THEN 1 END) AS "c23"
  FROM (
    SELECT
      *,
      CAST(DATE_DIFF('DAY', CAST('2026-01-05' AS DATE), "event_date") AS INTEGER) AS "_xp_day"
    FROM "xp_account"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
  ) AS "e"
  GROUP BY
    "user_id",
    "_xp_day"
), "src_billing_pre" AS (
  SELECT
    "user_id" AS "user_id",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN "amount_cents"
      END
    ) AS "c27"
  FROM "xp_billing"
  WHERE
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
  GROUP BY
    "user_id"
), "src_billing_d" AS (
  SELECT
    "user_id" AS "user_id",
    "_xp_day" AS "day",
    SUM("amount_cents") AS "c11",
    COUNT(CASE WHEN "kind" = 'rental' THEN 1 END) AS "c12",
    SUM(CASE WHEN "kind" = 'rental' THEN "amount_cents" END) AS "c21",
    MAX(CASE WHEN "kind" = 'rental' THEN 1 ELSE 0 END) AS "c22"
  FROM (
    SELECT
      *,
      CAST(DATE_DIFF('DAY', CAST('2026-01-05' AS DATE), "event_date") AS INTEGER) AS "_xp_day"
    FROM "xp_billing"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
  ) AS "e"
  GROUP BY
    "user_id",
    "_xp_day"
), "src_playback_pre" AS (
  SELECT
    "user_id" AS "user_id",
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
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
  GROUP BY
    "user_id"
), "src_playback_d" AS (
  SELECT
    "user_id" AS "user_id",
    "_xp_day" AS "day",
    SUM("watch_seconds") AS "c0",
    MAX(CASE WHEN "watch_seconds" > 0 THEN 1 ELSE 0 END) AS "c1",
    COUNT(1) AS "c2",
    COUNT(CASE WHEN "watch_seconds" >= 3600 THEN 1 END) AS "c3",
    SUM("rebuffer_seconds") AS "c6",
    CAST(SUM("startup_latency_ms") AS DOUBLE) / NULLIF(COUNT("startup_latency_ms"), 0) AS "c10",
    COUNT(CASE WHEN "rebuffer_seconds" >= 30 THEN 1 END) AS "c15",
    COUNT(CASE WHEN "startup_latency_ms" > 2000 THEN 1 END) AS "c17",
    COUNT(CASE WHEN NOT "startup_latency_ms" IS NULL THEN 1 END) AS "c18",
    COUNT(CASE WHEN "watch_seconds" < 120 THEN 1 END) AS "c19",
    MAX("watch_seconds") AS "c20"
  FROM (
    SELECT
      *,
      CAST(DATE_DIFF('DAY', CAST('2026-01-05' AS DATE), "event_date") AS INTEGER) AS "_xp_day"
    FROM "xp_playback"
    WHERE
      "event_date" BETWEEN CAST('2026-01-05' AS DATE) AND CAST('2026-01-14' AS DATE)
  ) AS "e"
  GROUP BY
    "user_id",
    "_xp_day"
)
SELECT
  "a"."user_id",
  "a"."cell",
  "d"."day",
  "u"."country",
  "u"."device",
  "u"."tenure_bucket",
  "u"."plan",
  CAST(COALESCE("p7"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "streaming_hours",
  CAST(COALESCE("p7"."c1", 0) AS BIGINT) AS "is_streamer",
  CAST(COALESCE("p7"."c2", 0) AS BIGINT) AS "sessions",
  CAST(COALESCE("p7"."c3", 0) AS BIGINT) AS "long_sessions",
  CAST(COALESCE("p0"."c4", 0) AS BIGINT) AS "active_days",
  CAST(COALESCE("p1"."c5", 0) AS BIGINT) AS "titles_started",
  CAST(COALESCE("p7"."c6", 0) AS DOUBLE) AS "rebuffer_rate",
  CAST(COALESCE("p7"."c0", 0) AS DOUBLE) AS "rebuffer_rate__den",
  CAST(COALESCE("p7"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "hours_per_session",
  CAST(COALESCE("p7"."c2", 0) AS DOUBLE) AS "hours_per_session__den",
  CAST("p7"."c10" AS DOUBLE) AS "playback_start_latency",
  CAST(COALESCE("p5"."c11", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "revenue",
  CAST(COALESCE("p5"."c12", 0) AS BIGINT) AS "rentals",
  CAST(COALESCE("p3"."c13", 0) AS BIGINT) AS "cancelled",
  CAST(COALESCE("p3"."c14", 1) AS BIGINT) AS "retained",
  CAST(COALESCE("p7"."c15", 0) AS DOUBLE) AS "rebuffered_session_rate",
  CAST(COALESCE("p7"."c2", 0) AS DOUBLE) AS "rebuffered_session_rate__den",
  CAST(COALESCE("p7"."c17", 0) AS DOUBLE) AS "slow_start_rate",
  CAST(COALESCE("p7"."c18", 0) AS DOUBLE) AS "slow_start_rate__den",
  CAST(COALESCE("p7"."c19", 0) AS BIGINT) AS "early_abandons",
  CAST("p7"."c20" AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "longest_session_hours",
  CAST(COALESCE("p5"."c21", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "rental_revenue",
  CAST(COALESCE("p5"."c22", 0) AS BIGINT) AS "is_renter",
  CAST(COALESCE("p3"."c23", 0) AS BIGINT) AS "profile_edits",
  CAST(COALESCE("p6"."c24", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "pre_streaming_hours",
  CAST(COALESCE("p6"."c25", 0) AS DOUBLE) AS "pre_sessions",
  CAST(COALESCE("p2"."c26", 0) AS DOUBLE) AS "pre_active_days",
  CAST(COALESCE("p4"."c27", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "pre_revenue"
FROM "alloc" AS "a"
CROSS JOIN "day_index" AS "d"
LEFT JOIN "dims" AS "u"
  ON "u"."user_id" = "a"."user_id"
LEFT JOIN "distinct_4" AS "p0"
  ON "p0"."user_id" = "a"."user_id" AND "p0"."day" = "d"."day"
LEFT JOIN "distinct_5" AS "p1"
  ON "p1"."user_id" = "a"."user_id" AND "p1"."day" = "d"."day"
LEFT JOIN "distinct_26" AS "p2"
  ON "p2"."user_id" = "a"."user_id"
LEFT JOIN "src_account_d" AS "p3"
  ON "p3"."user_id" = "a"."user_id" AND "p3"."day" = "d"."day"
LEFT JOIN "src_billing_pre" AS "p4"
  ON "p4"."user_id" = "a"."user_id"
LEFT JOIN "src_billing_d" AS "p5"
  ON "p5"."user_id" = "a"."user_id" AND "p5"."day" = "d"."day"
LEFT JOIN "src_playback_pre" AS "p6"
  ON "p6"."user_id" = "a"."user_id"
LEFT JOIN "src_playback_d" AS "p7"
  ON "p7"."user_id" = "a"."user_id" AND "p7"."day" = "d"."day"
