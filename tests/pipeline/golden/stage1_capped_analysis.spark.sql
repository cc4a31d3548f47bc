WITH `alloc` AS (
  SELECT
    `customer_id` AS `user_id`,
    MIN(CAST(`variant` AS STRING)) AS `cell`,
    GREATEST(MIN(CAST(`exposed_at` AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP)) AS `_xp_start`,
    CAST(DATEDIFF(
      DAY,
      CAST('2026-03-02' AS DATE),
      CAST(GREATEST(MIN(CAST(`exposed_at` AS TIMESTAMP)), CAST('2026-03-02 00:00:00' AS TIMESTAMP)) AS DATE)
    ) AS INT) AS `_xp_first_day`
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
), `src_orders` AS (
  SELECT
    `customer_id` AS `user_id`,
    SUM(
      CASE
        WHEN (
          `ordered_at` >= CAST(`x`.`_xp_start` AS DATE)
          AND `ordered_at` <= CAST('2026-03-15' AS DATE)
        )
        AND `status` = 'completed'
        THEN `amount_usd`
      END
    ) AS `c0`,
    COUNT(
      CASE
        WHEN (
          `ordered_at` >= CAST(`x`.`_xp_start` AS DATE)
          AND `ordered_at` <= CAST('2026-03-15' AS DATE)
        )
        AND `status` = 'completed'
        THEN 1
      END
    ) AS `c2`,
    CAST(SUM(
      CASE
        WHEN (
          `ordered_at` >= CAST(`x`.`_xp_start` AS DATE)
          AND `ordered_at` <= CAST('2026-03-15' AS DATE)
        )
        AND `status` = 'completed'
        THEN `amount_usd`
      END
    ) AS DOUBLE) / NULLIF(
      COUNT(
        CASE
          WHEN (
            `ordered_at` >= CAST(`x`.`_xp_start` AS DATE)
            AND `ordered_at` <= CAST('2026-03-15' AS DATE)
          )
          AND `status` = 'completed'
          THEN `amount_usd`
        END
      ),
      0
    ) AS `c4`,
    SUM(
      CASE
        WHEN (
          `ordered_at` >= CAST(CAST(`x`.`_xp_start` AS DATE) - INTERVAL '14' DAY AS DATE)
          AND `ordered_at` < CAST(`x`.`_xp_start` AS DATE)
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
    `ordered_at` >= CAST(CAST(`x`.`_xp_start` AS DATE) - INTERVAL '14' DAY AS DATE)
    AND `ordered_at` <= CAST('2026-03-15' AS DATE)
  GROUP BY
    `customer_id`
), `uncapped` AS (
  SELECT
    `a`.`user_id`,
    `a`.`cell`,
    `u`.`country`,
    CAST(COALESCE(`p0`.`c0`, 0) AS DOUBLE) AS `revenue`,
    CAST(COALESCE(`p0`.`c0`, 0) AS DOUBLE) AS `revenue_raw`,
    CAST(CASE
      WHEN CAST(COALESCE(`p0`.`c2`, 0) AS BIGINT) > CAST(3.00000000000000000e+00 AS DOUBLE)
      THEN CAST(3.00000000000000000e+00 AS DOUBLE)
      ELSE CAST(COALESCE(`p0`.`c2`, 0) AS BIGINT)
    END AS DOUBLE) AS `orders`,
    CAST(COALESCE(`p0`.`c2`, 0) AS BIGINT) AS `orders_raw`,
    CAST(`p0`.`c4` AS DOUBLE) AS `basket`,
    CAST(`p0`.`c4` AS DOUBLE) AS `basket_raw`,
    CAST(COALESCE(`p0`.`c6`, 0) AS DOUBLE) AS `pre_revenue`
  FROM `alloc` AS `a`
  LEFT JOIN `dims` AS `u`
    ON `u`.`user_id` = `a`.`user_id`
  LEFT JOIN `src_orders` AS `p0`
    ON `p0`.`user_id` = `a`.`user_id`
), `cap_0` AS (
  SELECT
    CAST(CASE
      WHEN `lower_t` >= 0.5
      THEN `lower_b` - (
        `lower_b` - `lower_a`
      ) * (
        1.0 - `lower_t`
      )
      ELSE `lower_a` + (
        `lower_b` - `lower_a`
      ) * `lower_t`
    END AS DOUBLE) AS `lower`,
    CAST(CASE
      WHEN `upper_t` >= 0.5
      THEN `upper_b` - (
        `upper_b` - `upper_a`
      ) * (
        1.0 - `upper_t`
      )
      ELSE `upper_a` + (
        `upper_b` - `upper_a`
      ) * `upper_t`
    END AS DOUBLE) AS `upper`
  FROM (
    SELECT
      MAX(
        CASE
          WHEN `r` = CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(5.00000000000000028e-02 AS DOUBLE)) AS BIGINT)
          THEN `v`
        END
      ) AS `lower_a`,
      MAX(
        CASE
          WHEN `r` = LEAST(
            CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(5.00000000000000028e-02 AS DOUBLE)) AS BIGINT) + 1,
            `n` - 1
          )
          THEN `v`
        END
      ) AS `lower_b`,
      MAX(
        CAST(`n` - 1 AS DOUBLE) * CAST(5.00000000000000028e-02 AS DOUBLE) - FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(5.00000000000000028e-02 AS DOUBLE))
      ) AS `lower_t`,
      MAX(
        CASE
          WHEN `r` = CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.89999999999999991e-01 AS DOUBLE)) AS BIGINT)
          THEN `v`
        END
      ) AS `upper_a`,
      MAX(
        CASE
          WHEN `r` = LEAST(
            CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.89999999999999991e-01 AS DOUBLE)) AS BIGINT) + 1,
            `n` - 1
          )
          THEN `v`
        END
      ) AS `upper_b`,
      MAX(
        CAST(`n` - 1 AS DOUBLE) * CAST(9.89999999999999991e-01 AS DOUBLE) - FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.89999999999999991e-01 AS DOUBLE))
      ) AS `upper_t`
    FROM (
      SELECT
        `v`,
        ROW_NUMBER() OVER (ORDER BY `v` NULLS LAST) - 1 AS `r`,
        COUNT(*) OVER () AS `n`
      FROM (
        SELECT
          CAST(`revenue` AS DOUBLE) AS `v`
        FROM `uncapped`
      ) AS `s`
      WHERE
        NOT `v` IS NULL
    ) AS `ranked`
  ) AS `order_stats`
), `cap_1` AS (
  SELECT
    CAST(NULL AS DOUBLE) AS `lower`,
    CAST(CASE
      WHEN `upper_t` >= 0.5
      THEN `upper_b` - (
        `upper_b` - `upper_a`
      ) * (
        1.0 - `upper_t`
      )
      ELSE `upper_a` + (
        `upper_b` - `upper_a`
      ) * `upper_t`
    END AS DOUBLE) AS `upper`
  FROM (
    SELECT
      MAX(
        CASE
          WHEN `r` = CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.00000000000000022e-01 AS DOUBLE)) AS BIGINT)
          THEN `v`
        END
      ) AS `upper_a`,
      MAX(
        CASE
          WHEN `r` = LEAST(
            CAST(FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.00000000000000022e-01 AS DOUBLE)) AS BIGINT) + 1,
            `n` - 1
          )
          THEN `v`
        END
      ) AS `upper_b`,
      MAX(
        CAST(`n` - 1 AS DOUBLE) * CAST(9.00000000000000022e-01 AS DOUBLE) - FLOOR(CAST(`n` - 1 AS DOUBLE) * CAST(9.00000000000000022e-01 AS DOUBLE))
      ) AS `upper_t`
    FROM (
      SELECT
        `v`,
        ROW_NUMBER() OVER (ORDER BY `v` NULLS LAST) - 1 AS `r`,
        COUNT(*) OVER () AS `n`
      FROM (
        SELECT
          CAST(`basket` AS DOUBLE) AS `v`
        FROM `uncapped`
      ) AS `s`
      WHERE
        NOT `v` IS NULL
    ) AS `ranked`
  ) AS `order_stats`
)
SELECT
  `t`.`user_id` AS `user_id`,
  `t`.`cell` AS `cell`,
  `t`.`country` AS `country`,
  CAST(CASE
    WHEN `t`.`revenue` > `k0`.`upper`
    THEN CAST(`k0`.`upper` AS DOUBLE)
    WHEN `t`.`revenue` < `k0`.`lower`
    THEN CAST(`k0`.`lower` AS DOUBLE)
    ELSE `t`.`revenue`
  END AS DOUBLE) AS `revenue`,
  `t`.`revenue_raw` AS `revenue_raw`,
  `t`.`orders` AS `orders`,
  `t`.`orders_raw` AS `orders_raw`,
  CAST(CASE
    WHEN `t`.`basket` > `k1`.`upper`
    THEN CAST(`k1`.`upper` AS DOUBLE)
    WHEN `t`.`basket` < `k1`.`lower`
    THEN CAST(`k1`.`lower` AS DOUBLE)
    ELSE `t`.`basket`
  END AS DOUBLE) AS `basket`,
  `t`.`basket_raw` AS `basket_raw`,
  `t`.`pre_revenue` AS `pre_revenue`
FROM `uncapped` AS `t`
CROSS JOIN `cap_0` AS `k0`
CROSS JOIN `cap_1` AS `k1`
