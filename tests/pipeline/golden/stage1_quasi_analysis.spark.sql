WITH `alloc` AS (
  SELECT
    `customer_id` AS `user_id`,
    MIN(
      CAST(CASE
        WHEN CAST(`region` AS STRING) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST(`region` AS STRING) IS NULL
        THEN 'comparison'
      END AS STRING)
    ) AS `cell`
  FROM `xp_customers`
  WHERE
    CASE
      WHEN CAST(`region` AS STRING) IN ('north', 'west')
      THEN 'treated'
      WHEN NOT CAST(`region` AS STRING) IS NULL
      THEN 'comparison'
    END IN ('comparison', 'treated')
  GROUP BY
    `customer_id`
  HAVING
    MIN(
      CAST(CASE
        WHEN CAST(`region` AS STRING) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST(`region` AS STRING) IS NULL
        THEN 'comparison'
      END AS STRING)
    ) = MAX(
      CAST(CASE
        WHEN CAST(`region` AS STRING) IN ('north', 'west')
        THEN 'treated'
        WHEN NOT CAST(`region` AS STRING) IS NULL
        THEN 'comparison'
      END AS STRING)
    )
), `dims` AS (
  SELECT
    `customer_id` AS `user_id`,
    MIN(CAST(`tier` AS STRING)) AS `tier`
  FROM `xp_customers`
  GROUP BY
    `customer_id`
), `src_orders` AS (
  SELECT
    `customer_id` AS `user_id`,
    SUM(
      CASE
        WHEN `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
        AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
        THEN `amount`
      END
    ) AS `c0`,
    COUNT(
      CASE
        WHEN `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
        AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
        THEN 1
      END
    ) AS `c1`,
    COUNT(
      CASE
        WHEN (
          `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
          AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
        )
        AND `items` >= 3
        THEN 1
      END
    ) AS `c2`,
    MAX(
      CASE
        WHEN `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
        AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
        THEN 1
        ELSE 0
      END
    ) AS `c3`,
    SUM(
      CASE
        WHEN (
          `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
          AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
        )
        AND 100 % NULLIF(`items`, 0) < 50
        THEN `amount` / NULLIF(`items`, 0)
      END
    ) AS `c4`
  FROM `xp_orders`
  WHERE
    `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
    AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
  GROUP BY
    `customer_id`
)
SELECT
  `a`.`user_id`,
  `a`.`cell`,
  `u`.`tier`,
  CAST(COALESCE(`p0`.`c0`, 0) AS DOUBLE) AS `revenue`,
  CAST(COALESCE(`p0`.`c1`, 0) AS BIGINT) AS `orders`,
  CAST(COALESCE(`p0`.`c2`, 0) AS BIGINT) AS `big_orders`,
  CAST(COALESCE(`p0`.`c3`, 0) AS BIGINT) AS `buyer`,
  CAST(COALESCE(`p0`.`c4`, 0) AS DOUBLE) AS `per_item`
FROM `alloc` AS `a`
LEFT JOIN `dims` AS `u`
  ON `u`.`user_id` = `a`.`user_id`
LEFT JOIN `src_orders` AS `p0`
  ON `p0`.`user_id` = `a`.`user_id`
