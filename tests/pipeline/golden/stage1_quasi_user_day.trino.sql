WITH "alloc" AS (
  SELECT
    "customer_id" AS "user_id",
    MIN(
      CAST(CASE
        WHEN CAST("region" AS VARCHAR) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST("region" AS VARCHAR) IS NULL
        THEN 'comparison'
      END AS VARCHAR)
    ) AS "cell"
  FROM "xp_customers"
  WHERE
    CASE
      WHEN CAST("region" AS VARCHAR) IN ('north', 'west')
      THEN 'treated'
      WHEN NOT CAST("region" AS VARCHAR) IS NULL
      THEN 'comparison'
    END IN ('comparison', 'treated')
  GROUP BY
    "customer_id"
  HAVING
    MIN(
      CAST(CASE
        WHEN CAST("region" AS VARCHAR) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST("region" AS VARCHAR) IS NULL
        THEN 'comparison'
      END AS VARCHAR)
    ) = MAX(
      CAST(CASE
        WHEN CAST("region" AS VARCHAR) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST("region" AS VARCHAR) IS NULL
        THEN 'comparison'
      END AS VARCHAR)
    )
), "dims" AS (
  SELECT
    "customer_id" AS "user_id",
    MIN(CAST("tier" AS VARCHAR)) AS "tier"
  FROM "xp_customers"
  GROUP BY
    "customer_id"
), "day_index" AS (
  SELECT
    CAST("day" AS INTEGER) AS "day"
  FROM (VALUES
    (-2),
    (-1),
    (0),
    (1)) AS "days"("day")
), "src_orders_d" AS (
  SELECT
    "customer_id" AS "user_id",
    "_xp_day" AS "day",
    SUM("amount") AS "c0",
    COUNT(1) AS "c1",
    COUNT(CASE WHEN "items" >= 3 THEN 1 END) AS "c2",
    MAX(1) AS "c3",
    SUM(
      CASE
        WHEN 100 % NULLIF("items", 0) < 50
        THEN CAST("amount" AS DOUBLE) / NULLIF("items", 0)
      END
    ) AS "c4"
  FROM (
    SELECT
      *,
      CAST(CAST(FLOOR(
        CAST(CAST(DATE_DIFF('DAY', CAST('2026-02-23' AS DATE), CAST("ordered_at" AS DATE)) AS INTEGER) AS DOUBLE) / CAST(7 AS DOUBLE)
      ) AS INTEGER) - 2 AS INTEGER) AS "_xp_day"
    FROM "xp_orders"
    WHERE
      "ordered_at" >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
      AND "ordered_at" < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
  ) AS "e"
  GROUP BY
    "customer_id",
    "_xp_day"
)
SELECT
  "a"."user_id",
  "a"."cell",
  "d"."day",
  "u"."tier",
  CAST(COALESCE("p0"."c0", 0) AS DOUBLE) AS "revenue",
  CAST(COALESCE("p0"."c1", 0) AS BIGINT) AS "orders",
  CAST(COALESCE("p0"."c2", 0) AS BIGINT) AS "big_orders",
  CAST(COALESCE("p0"."c3", 0) AS BIGINT) AS "buyer",
  CAST(COALESCE("p0"."c4", 0) AS DOUBLE) AS "per_item"
FROM "alloc" AS "a"
CROSS JOIN "day_index" AS "d"
LEFT JOIN "dims" AS "u"
  ON "u"."user_id" = "a"."user_id"
LEFT JOIN "src_orders_d" AS "p0"
  ON "p0"."user_id" = "a"."user_id" AND "p0"."day" = "d"."day"
