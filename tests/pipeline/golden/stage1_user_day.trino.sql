WITH "alloc" AS (
  SELECT
    CAST("user_id" AS BIGINT) AS "user_id",
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
    CAST("user_id" AS BIGINT) AS "user_id",
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
      CAST("user_id" AS BIGINT) AS "user_id",
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
      CAST("user_id" AS BIGINT) AS "user_id",
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
), "distinct_17" AS (
  SELECT
    "user_id",
    COUNT(*) AS "c17"
  FROM (
    SELECT DISTINCT
      CAST("user_id" AS BIGINT) AS "user_id",
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
    CAST("user_id" AS BIGINT) AS "user_id",
    "_xp_day" AS "day",
    MAX(CASE WHEN "event_type" = 'cancel' THEN 1 ELSE 0 END) AS "c13",
    MIN(CASE WHEN "event_type" = 'cancel' THEN 0 ELSE 1 END) AS "c14"
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
), "src_billing_d" AS (
  SELECT
    CAST("user_id" AS BIGINT) AS "user_id",
    "_xp_day" AS "day",
    SUM("amount_cents") AS "c11",
    COUNT(CASE WHEN "kind" = 'rental' THEN 1 END) AS "c12"
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
), "src_billing_pre" AS (
  SELECT
    CAST("user_id" AS BIGINT) AS "user_id",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN "amount_cents"
      END
    ) AS "c18"
  FROM "xp_billing"
  WHERE
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
  GROUP BY
    "user_id"
), "src_playback_d" AS (
  SELECT
    CAST("user_id" AS BIGINT) AS "user_id",
    "_xp_day" AS "day",
    SUM("watch_seconds") AS "c0",
    MAX(CASE WHEN "watch_seconds" > 0 THEN 1 ELSE 0 END) AS "c1",
    COUNT(1) AS "c2",
    COUNT(CASE WHEN "watch_seconds" >= 3600 THEN 1 END) AS "c3",
    SUM("rebuffer_seconds") AS "c6",
    SUM("watch_seconds") AS "c7",
    SUM("watch_seconds") AS "c8",
    COUNT(1) AS "c9",
    CAST(SUM("startup_latency_ms") AS DOUBLE) / NULLIF(COUNT("startup_latency_ms"), 0) AS "c10"
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
), "src_playback_pre" AS (
  SELECT
    CAST("user_id" AS BIGINT) AS "user_id",
    SUM(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN "watch_seconds"
      END
    ) AS "c15",
    COUNT(
      CASE
        WHEN "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
        THEN 1
      END
    ) AS "c16"
  FROM "xp_playback"
  WHERE
    "event_date" BETWEEN CAST('2025-12-29' AS DATE) AND CAST('2026-01-04' AS DATE)
  GROUP BY
    "user_id"
), "per_user" AS (
  SELECT
    "user_id",
    MAX("c17") AS "c17",
    MAX("c18") AS "c18",
    MAX("c15") AS "c15",
    MAX("c16") AS "c16"
  FROM (
    SELECT
      "user_id",
      CAST("c17" AS DOUBLE) AS "c17",
      CAST(NULL AS DOUBLE) AS "c18",
      CAST(NULL AS DOUBLE) AS "c15",
      CAST(NULL AS DOUBLE) AS "c16"
    FROM "distinct_17"
    UNION ALL
    SELECT
      "user_id",
      CAST(NULL AS DOUBLE) AS "c17",
      CAST("c18" AS DOUBLE) AS "c18",
      CAST(NULL AS DOUBLE) AS "c15",
      CAST(NULL AS DOUBLE) AS "c16"
    FROM "src_billing_pre"
    UNION ALL
    SELECT
      "user_id",
      CAST(NULL AS DOUBLE) AS "c17",
      CAST(NULL AS DOUBLE) AS "c18",
      CAST("c15" AS DOUBLE) AS "c15",
      CAST("c16" AS DOUBLE) AS "c16"
    FROM "src_playback_pre"
  ) AS "stacked"
  GROUP BY
    "user_id"
), "per_user_day" AS (
  SELECT
    "user_id",
    "day",
    MAX("c4") AS "c4",
    MAX("c5") AS "c5",
    MAX("c13") AS "c13",
    MAX("c14") AS "c14",
    MAX("c11") AS "c11",
    MAX("c12") AS "c12",
    MAX("c0") AS "c0",
    MAX("c1") AS "c1",
    MAX("c2") AS "c2",
    MAX("c3") AS "c3",
    MAX("c6") AS "c6",
    MAX("c7") AS "c7",
    MAX("c8") AS "c8",
    MAX("c9") AS "c9",
    MAX("c10") AS "c10"
  FROM (
    SELECT
      "user_id",
      "day",
      CAST("c4" AS DOUBLE) AS "c4",
      CAST(NULL AS DOUBLE) AS "c5",
      CAST(NULL AS DOUBLE) AS "c13",
      CAST(NULL AS DOUBLE) AS "c14",
      CAST(NULL AS DOUBLE) AS "c11",
      CAST(NULL AS DOUBLE) AS "c12",
      CAST(NULL AS DOUBLE) AS "c0",
      CAST(NULL AS DOUBLE) AS "c1",
      CAST(NULL AS DOUBLE) AS "c2",
      CAST(NULL AS DOUBLE) AS "c3",
      CAST(NULL AS DOUBLE) AS "c6",
      CAST(NULL AS DOUBLE) AS "c7",
      CAST(NULL AS DOUBLE) AS "c8",
      CAST(NULL AS DOUBLE) AS "c9",
      CAST(NULL AS DOUBLE) AS "c10"
    FROM "distinct_4"
    UNION ALL
    SELECT
      "user_id",
      "day",
      CAST(NULL AS DOUBLE) AS "c4",
      CAST("c5" AS DOUBLE) AS "c5",
      CAST(NULL AS DOUBLE) AS "c13",
      CAST(NULL AS DOUBLE) AS "c14",
      CAST(NULL AS DOUBLE) AS "c11",
      CAST(NULL AS DOUBLE) AS "c12",
      CAST(NULL AS DOUBLE) AS "c0",
      CAST(NULL AS DOUBLE) AS "c1",
      CAST(NULL AS DOUBLE) AS "c2",
      CAST(NULL AS DOUBLE) AS "c3",
      CAST(NULL AS DOUBLE) AS "c6",
      CAST(NULL AS DOUBLE) AS "c7",
      CAST(NULL AS DOUBLE) AS "c8",
      CAST(NULL AS DOUBLE) AS "c9",
      CAST(NULL AS DOUBLE) AS "c10"
    FROM "distinct_5"
    UNION ALL
    SELECT
      "user_id",
      "day",
      CAST(NULL AS DOUBLE) AS "c4",
      CAST(NULL AS DOUBLE) AS "c5",
      CAST("c13" AS DOUBLE) AS "c13",
      CAST("c14" AS DOUBLE) AS "c14",
      CAST(NULL AS DOUBLE) AS "c11",
      CAST(NULL AS DOUBLE) AS "c12",
      CAST(NULL AS DOUBLE) AS "c0",
      CAST(NULL AS DOUBLE) AS "c1",
      CAST(NULL AS DOUBLE) AS "c2",
      CAST(NULL AS DOUBLE) AS "c3",
      CAST(NULL AS DOUBLE) AS "c6",
      CAST(NULL AS DOUBLE) AS "c7",
      CAST(NULL AS DOUBLE) AS "c8",
      CAST(NULL AS DOUBLE) AS "c9",
      CAST(NULL AS DOUBLE) AS "c10"
    FROM "src_account_d"
    UNION ALL
    SELECT
      "user_id",
      "day",
      CAST(NULL AS DOUBLE) AS "c4",
      CAST(NULL AS DOUBLE) AS "c5",
      CAST(NULL AS DOUBLE) AS "c13",
      CAST(NULL AS DOUBLE) AS "c14",
      CAST("c11" AS DOUBLE) AS "c11",
      CAST("c12" AS DOUBLE) AS "c12",
      CAST(NULL AS DOUBLE) AS "c0",
      CAST(NULL AS DOUBLE) AS "c1",
      CAST(NULL AS DOUBLE) AS "c2",
      CAST(NULL AS DOUBLE) AS "c3",
      CAST(NULL AS DOUBLE) AS "c6",
      CAST(NULL AS DOUBLE) AS "c7",
      CAST(NULL AS DOUBLE) AS "c8",
      CAST(NULL AS DOUBLE) AS "c9",
      CAST(NULL AS DOUBLE) AS "c10"
    FROM "src_billing_d"
    UNION ALL
    SELECT
      "user_id",
      "day",
      CAST(NULL AS DOUBLE) AS "c4",
      CAST(NULL AS DOUBLE) AS "c5",
      CAST(NULL AS DOUBLE) AS "c13",
      CAST(NULL AS DOUBLE) AS "c14",
      CAST(NULL AS DOUBLE) AS "c11",
      CAST(NULL AS DOUBLE) AS "c12",
      CAST("c0" AS DOUBLE) AS "c0",
      CAST("c1" AS DOUBLE) AS "c1",
      CAST("c2" AS DOUBLE) AS "c2",
      CAST("c3" AS DOUBLE) AS "c3",
      CAST("c6" AS DOUBLE) AS "c6",
      CAST("c7" AS DOUBLE) AS "c7",
      CAST("c8" AS DOUBLE) AS "c8",
      CAST("c9" AS DOUBLE) AS "c9",
      CAST("c10" AS DOUBLE) AS "c10"
    FROM "src_playback_d"
  ) AS "stacked"
  GROUP BY
    "user_id",
    "day"
)
SELECT
  "a"."user_id",
  "a"."cell",
  "d"."day",
  "u"."country",
  "u"."device",
  "u"."tenure_bucket",
  "u"."plan",
  CAST(COALESCE("pd"."c0", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "streaming_hours",
  CAST(COALESCE("pd"."c1", 0) AS BIGINT) AS "is_streamer",
  CAST(COALESCE("pd"."c2", 0) AS BIGINT) AS "sessions",
  CAST(COALESCE("pd"."c3", 0) AS BIGINT) AS "long_sessions",
  CAST(COALESCE("pd"."c4", 0) AS BIGINT) AS "active_days",
  CAST(COALESCE("pd"."c5", 0) AS BIGINT) AS "titles_started",
  CAST(COALESCE("pd"."c6", 0) AS DOUBLE) AS "rebuffer_rate",
  CAST(COALESCE("pd"."c7", 0) AS DOUBLE) AS "rebuffer_rate__den",
  CAST(COALESCE("pd"."c8", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "hours_per_session",
  CAST(COALESCE("pd"."c9", 0) AS DOUBLE) AS "hours_per_session__den",
  CAST("pd"."c10" AS DOUBLE) AS "playback_start_latency",
  CAST(COALESCE("pd"."c11", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "revenue",
  CAST(COALESCE("pd"."c12", 0) AS BIGINT) AS "rentals",
  CAST(COALESCE("pd"."c13", 0) AS BIGINT) AS "cancelled",
  CAST(COALESCE("pd"."c14", 1) AS BIGINT) AS "retained",
  CAST(COALESCE("p"."c15", 0) AS DOUBLE) / CAST(3600.0 AS DOUBLE) AS "pre_streaming_hours",
  CAST(COALESCE("p"."c16", 0) AS DOUBLE) AS "pre_sessions",
  CAST(COALESCE("p"."c17", 0) AS DOUBLE) AS "pre_active_days",
  CAST(COALESCE("p"."c18", 0) AS DOUBLE) / CAST(100.0 AS DOUBLE) AS "pre_revenue"
FROM "alloc" AS "a"
CROSS JOIN "day_index" AS "d"
LEFT JOIN "dims" AS "u"
  ON "u"."user_id" = "a"."user_id"
LEFT JOIN "per_user" AS "p"
  ON "p"."user_id" = "a"."user_id"
LEFT JOIN "per_user_day" AS "pd"
  ON "pd"."user_id" = "a"."user_id" AND "pd"."day" = "d"."day"
