WITH `alloc` AS (
  SELECT
    `customer_id` AS `user_id`,
    MIN(CAST(`variant` AS STRING)) AS `cell`,
    GREATEST(MIN(CAST(`exposed_at` AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP)) AS `_xp_start`,
    CAST(DATEDIFF(
      DAY,
      CAST('2026-03-02' AS DATE),
      CAST(GREATEST(MIN(CAST(`exposed_at` AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP)) AS DATE)
    ) AS INT) AS `_xp_first_day`,
    MIN(CAST(`platform` AS STRING)) AS `platform`
  FROM `xp_assignments`
  WHERE
    `variant` IN ('control', 'one_page')
  GROUP BY
    `customer_id`
  HAVING
    MIN(CAST(`variant` AS STRING)) = MAX(CAST(`variant` AS STRING))
    AND MIN(CAST(`exposed_at` AS TIMESTAMP)) < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
), `dims` AS (
  SELECT
    `customer_id` AS `user_id`,
    MIN(CAST(`country` AS STRING)) AS `country`
  FROM `xp_customers`
  GROUP BY
    `customer_id`
), `distinct_5` AS (
  SELECT
    `user_id`,
    COUNT(*) AS `c5`
  FROM (
    SELECT DISTINCT
      `customer_id` AS `user_id`,
      `visit_date` AS `v`
    FROM `xp_visits`
    INNER JOIN (
      SELECT
        `user_id` AS `_xp_unit`,
        `_xp_start`
      FROM `alloc`
    ) AS `x`
      ON `customer_id` = `x`.`_xp_unit`
    WHERE
      (
        `visit_date` >= CAST(`x`.`_xp_start` AS DATE)
        AND `visit_date` <= CAST('2026-03-15' AS DATE)
      )
      AND NOT `visit_date` IS NULL
  ) AS `x`
  GROUP BY
    `user_id`
), `src_orders` AS (
  SELECT
    `customer_id` AS `user_id`,
    SUM(
      CASE
        WHEN (
          `ordered_at` >= `x`.`_xp_start`
          AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
        )
        AND `status` = 'completed'
        THEN `amount_usd`
      END
    ) AS `c0`,
    COUNT(
      CASE
        WHEN (
          `ordered_at` >= `x`.`_xp_start`
          AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
        )
        AND `status` = 'completed'
        THEN 1
      END
    ) AS `c1`,
    MAX(
      CASE
        WHEN (
          `ordered_at` >= `x`.`_xp_start`
          AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
        )
        AND `status` = 'completed'
        THEN 1
        ELSE 0
      END
    ) AS `c2`,
    SUM(
      CASE
        WHEN (
          `ordered_at` >= (
            `x`.`_xp_start` - INTERVAL '14' DAY
          )
          AND `ordered_at` < `x`.`_xp_start`
        )
        AND `status` = 'completed'
        THEN `amount_usd`
      END
    ) AS `c6`
  FROM `xp_orders`
  INNER JOIN (
    SELECT
      `user_id` AS `_xp_unit`,
      `_xp_start`
    FROM `alloc`
  ) AS `x`
    ON `customer_id` = `x`.`_xp_unit`
  WHERE
    `ordered_at` >= (
      `x`.`_xp_start` - INTERVAL '14' DAY
    )
    AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
  GROUP BY
    `customer_id`
), `ratio_constants` AS (
  SELECT
    CASE
      WHEN ABS(
        SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `y0` END) / NULLIF(
          SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `d0` END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) BETWEEN CAST(1.00000000000000008e-30 AS DOUBLE) AND CAST(1.00000000000000002e+30 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `y0` END)) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      AND MAX(ABS(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `d0` END)) * ABS(
        SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `y0` END) / NULLIF(
          SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `d0` END),
          CAST(0.00000000000000000e+00 AS DOUBLE)
        )
      ) <= CAST(1.00000000000000005e+300 AS DOUBLE)
      THEN CAST(CAST(SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `y0` END) / NULLIF(
        SUM(CASE WHEN NOT `y0` IS NULL AND NOT `d0` IS NULL THEN `d0` END),
        CAST(0.00000000000000000e+00 AS DOUBLE)
      ) AS FLOAT) AS DOUBLE)
      ELSE CAST(0.00000000000000000e+00 AS DOUBLE)
    END AS `c0`
  FROM (
    SELECT
      CAST(COALESCE(`p1`.`c0`, 0) AS DOUBLE) AS `y0`,
      CAST(COALESCE(`p1`.`c1`, 0) AS DOUBLE) AS `d0`
    FROM `alloc` AS `a`
    LEFT JOIN `src_orders` AS `p1`
      ON `p1`.`user_id` = `a`.`user_id`
  ) AS `v`
)
SELECT
  `a`.`user_id`,
  `a`.`cell`,
  `u`.`country`,
  `a`.`platform`,
  CAST(COALESCE(`p1`.`c0`, 0) AS DOUBLE) AS `revenue`,
  CAST(COALESCE(`p1`.`c1`, 0) AS BIGINT) AS `orders`,
  CAST(COALESCE(`p1`.`c2`, 0) AS BIGINT) AS `purchaser`,
  CAST(COALESCE(`p1`.`c0`, 0) AS DOUBLE) AS `aov`,
  CAST(COALESCE(`p1`.`c1`, 0) AS DOUBLE) AS `aov__den`,
  CAST(COALESCE(`p0`.`c5`, 0) AS BIGINT) AS `visit_days`,
  CAST(COALESCE(`p1`.`c6`, 0) AS DOUBLE) AS `pre_revenue`,
  (
    CAST(COALESCE(`p1`.`c0`, 0) AS DOUBLE)
  ) - `rc`.`c0` * (
    CAST(COALESCE(`p1`.`c1`, 0) AS DOUBLE)
  ) AS `aov__res`
FROM `alloc` AS `a`
LEFT JOIN `dims` AS `u`
  ON `u`.`user_id` = `a`.`user_id`
LEFT JOIN `distinct_5` AS `p0`
  ON `p0`.`user_id` = `a`.`user_id`
LEFT JOIN `src_orders` AS `p1`
  ON `p1`.`user_id` = `a`.`user_id`
CROSS JOIN `ratio_constants` AS `rc`
