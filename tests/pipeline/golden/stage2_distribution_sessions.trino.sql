WITH "src" AS (
  SELECT
    "cell",
    "device",
    CAST("sessions" AS DOUBLE) AS "_xp_v"
  FROM "hive"."xp"."analysis"
  WHERE
    "country" IN ('US', 'CA')
)
SELECT
  "cell",
  "device",
  "_xp_v" AS "sessions__value",
  CAST(COUNT(*) AS DOUBLE) AS "_n",
  CAST(COUNT("_xp_v") AS DOUBLE) AS "sessions__m_0",
  COALESCE(SUM("_xp_v"), CAST(0 AS DOUBLE)) AS "sessions__m_1",
  COALESCE(SUM("_xp_v" * "_xp_v"), CAST(0 AS DOUBLE)) AS "sessions__m_2"
FROM "src"
GROUP BY
  "cell",
  "device",
  "_xp_v"
ORDER BY
  "cell",
  "device",
  "_xp_v"
