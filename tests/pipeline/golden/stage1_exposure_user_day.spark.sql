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
), `day_index` AS (
  SELECT
    CAST(`day` AS INT) AS `day`
  FROM VALUES
    (0),
    (1),
    (2),
    (3),
    (4),
    (5),
    (6),
    (7),
    (8),
    (9),
    (10),
    (11),
    (12),
    (13) AS `days`(`day`)
), `distinct_5` AS (
  SELECT
    `user_id`,
    `day`,
    COUNT(*) AS `c5`
  FROM (
    SELECT DISTINCT
      `customer_id` AS `user_id`,
      CAST(DATEDIFF(DAY, CAST('2026-03-02' AS DATE), `visit_date`) AS INT) AS `day`,
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
    `user_id`,
    `day`
), `src_orders_pre` AS (
  SELECT
    `customer_id` AS `user_id`,
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
    AND `ordered_at` < `x`.`_xp_start`
  GROUP BY
    `customer_id`
), `src_orders_d` AS (
  SELECT
    `customer_id` AS `user_id`,
    `_xp_day` AS `day`,
    SUM(CASE WHEN `status` = 'completed' THEN `amount_usd` END) AS `c0`,
    COUNT(CASE WHEN `status` = 'completed' THEN 1 END) AS `c1`,
    MAX(CASE WHEN `status` = 'completed' THEN 1 ELSE 0 END) AS `c2`
  FROM (
    SELECT
      *,
      CAST(DATEDIFF(DAY, CAST('2026-03-02' AS DATE), CAST(`ordered_at` AS DATE)) AS INT) AS `_xp_day`
    FROM `xp_orders`
    INNER JOIN (
      SELECT
        `user_id` AS `_xp_unit`,
        `_xp_start`
      FROM `alloc`
    ) AS `x`
      ON `customer_id` = `x`.`_xp_unit`
    WHERE
      `ordered_at` >= `x`.`_xp_start`
      AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
  ) AS `e`
  GROUP BY
    `customer_id`,
    `_xp_day`
)
SELECT
  `a`.`user_id`,
  `a`.`cell`,
  `d`.`day`,
  `u`.`country`,
  `a`.`platform`,
  CAST(COALESCE(`p2`.`c0`, 0) AS DOUBLE) AS `revenue`,
  CAST(COALESCE(`p2`.`c1`, 0) AS BIGINT) AS `orders`,
  CAST(COALESCE(`p2`.`c2`, 0) AS BIGINT) AS `purchaser`,
  CAST(COALESCE(`p2`.`c0`, 0) AS DOUBLE) AS `aov`,
  CAST(COALESCE(`p2`.`c1`, 0) AS DOUBLE) AS `aov__den`,
  CAST(COALESCE(`p0`.`c5`, 0) AS BIGINT) AS `visit_days`,
  CAST(COALESCE(`p1`.`c6`, 0) AS DOUBLE) AS `pre_revenue`
FROM `alloc` AS `a`
INNER JOIN `day_index` AS `d`
  ON `d`.`day` >= `a`.`_xp_first_day`
LEFT JOIN `dims` AS `u`
  ON `u`.`user_id` = `a`.`user_id`
LEFT JOIN `distinct_5` AS `p0`
  ON `p0`.`user_id` = `a`.`user_id` AND `p0`.`day` = `d`.`day`
LEFT JOIN `src_orders_pre` AS `p1`
  ON `p1`.`user_id` = `a`.`user_id`
LEFT JOIN `src_orders_d` AS `p2`
  ON `p2`.`user_id` = `a`.`user_id` AND `p2`.`day` = `d`.`day`
