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
)
SELECT
  `x`.`_xp_unit` AS `user_id`,
  `x`.`_xp_cell` AS `cell`,
  `d`.`_xp_d_country` AS `country`,
  `x`.`_xp_d_platform` AS `platform`,
  CAST(`amount_usd` * 1.0 AS DOUBLE) AS `value`,
  CAST(`x`.`_xp_c` AS SMALLINT) AS `_xp_cell`,
  CAST(`x`.`_xp_k` AS SMALLINT) AS `_xp_cluster`
FROM `xp_orders`
INNER JOIN (
  SELECT
    `_xp_unit`,
    `_xp_cell`,
    `_xp_start`,
    `_xp_d_platform`,
    (
      (
        LOCATE(SUBSTRING(`_xp_md5`, 1, 1), '0123456789abcdef') - 1
      ) * 16777216 + (
        LOCATE(SUBSTRING(`_xp_md5`, 2, 1), '0123456789abcdef') - 1
      ) * 1048576 + (
        LOCATE(SUBSTRING(`_xp_md5`, 3, 1), '0123456789abcdef') - 1
      ) * 65536 + (
        LOCATE(SUBSTRING(`_xp_md5`, 4, 1), '0123456789abcdef') - 1
      ) * 4096 + (
        LOCATE(SUBSTRING(`_xp_md5`, 5, 1), '0123456789abcdef') - 1
      ) * 256 + (
        LOCATE(SUBSTRING(`_xp_md5`, 6, 1), '0123456789abcdef') - 1
      ) * 16 + (
        LOCATE(SUBSTRING(`_xp_md5`, 7, 1), '0123456789abcdef') - 1
      )
    ) % 1000 AS `_xp_k`,
    CASE WHEN `_xp_cell` = 'control' THEN 0 WHEN `_xp_cell` = 'one_page' THEN 1 END AS `_xp_c`
  FROM (
    SELECT
      `user_id` AS `_xp_unit`,
      `cell` AS `_xp_cell`,
      `_xp_start`,
      `platform` AS `_xp_d_platform`,
      MD5(CAST(`user_id` AS STRING)) AS `_xp_md5`
    FROM `alloc`
  ) AS `a`
) AS `x`
  ON `customer_id` = `x`.`_xp_unit`
LEFT JOIN (
  SELECT
    `user_id` AS `_xp_unit`,
    `country` AS `_xp_d_country`
  FROM `dims`
) AS `d`
  ON `x`.`_xp_unit` = `d`.`_xp_unit`
WHERE
  (
    `ordered_at` >= `x`.`_xp_start`
    AND `ordered_at` < CAST('2026-03-16 00:00:00' AS TIMESTAMP)
  )
  AND NOT (
    `amount_usd` * 1.0
  ) IS NULL
  AND (
    `status` = 'completed'
  )
