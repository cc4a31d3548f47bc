WITH "alloc" AS (
  SELECT
    "customer_id" AS "user_id",
    MIN(CAST("variant" AS TEXT)) AS "cell",
    CASE
      WHEN MIN(CAST("exposed_at" AS TIMESTAMP)) IS NULL
      OR CAST('2026-03-02 00:00:00' AS TIMESTAMP) IS NULL
      THEN NULL
      ELSE GREATEST(MIN(CAST("exposed_at" AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP))
    END AS "_xp_start",
    CAST(DATE_DIFF(
      'DAY',
      CAST('2026-03-02' AS DATE),
      CAST(CASE
        WHEN MIN(CAST("exposed_at" AS TIMESTAMP)) IS NULL
        OR CAST('2026-03-02 00:00:00' AS TIMESTAMP) IS NULL
        THEN NULL
        ELSE GREATEST(MIN(CAST("exposed_at" AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP))
      END AS DATE)
    ) AS INT) AS "_xp_first_day",
    MIN(CAST("platform" AS TEXT)) AS "platform"
  FROM "xp_assignments"
  WHERE
    "variant" IN ('control', 'one_page')
  GROUP BY
    "customer_id"
  HAVING
    MIN(CAST("variant" AS TEXT)) = MAX(CAST("variant" AS TEXT))
    AND MIN(CAST("exposed_at" AS TIMESTAMP)) < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
), "dims" AS (
  SELECT
    "customer_id" AS "user_id",
    MIN(CAST("country" AS TEXT)) AS "country"
  FROM "xp_customers"
  GROUP BY
    "customer_id"
)
SELECT
  "x"."_xp_unit" AS "user_id",
  "x"."_xp_cell" AS "cell",
  "d"."_xp_d_country" AS "country",
  "x"."_xp_d_platform" AS "platform",
  CAST("amount_usd" * 1.0 AS DOUBLE) AS "value"
FROM "xp_orders"
INNER JOIN (
  SELECT
    "user_id" AS "_xp_unit",
    "cell" AS "_xp_cell",
    "_xp_start",
    "platform" AS "_xp_d_platform"
  FROM "alloc"
) AS "x"
  ON "customer_id" = "x"."_xp_unit"
LEFT JOIN (
  SELECT
    "user_id" AS "_xp_unit",
    "country" AS "_xp_d_country"
  FROM "dims"
) AS "d"
  ON "x"."_xp_unit" = "d"."_xp_unit"
WHERE
  (
    "ordered_at" >= "x"."_xp_start"
    AND "ordered_at" < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
  )
  AND NOT (
    "amount_usd" * 1.0
  ) IS NULL
  AND (
    "status" = 'completed'
  )
