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
)
SELECT
  `x`.`_xp_unit` AS `user_id`,
  `x`.`_xp_cell` AS `cell`,
  `d`.`_xp_d_tier` AS `tier`,
  CAST(`amount` AS DOUBLE) AS `value`,
  CAST(`x`.`_xp_c` AS SMALLINT) AS `_xp_cell`,
  CAST(`x`.`_xp_k` AS SMALLINT) AS `_xp_cluster`
FROM `xp_orders`
INNER JOIN (
  SELECT
    `_xp_unit`,
    `_xp_cell`,
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
    CASE WHEN `_xp_cell` = 'comparison' THEN 0 WHEN `_xp_cell` = 'treated' THEN 1 END AS `_xp_c`
  FROM (
    SELECT
      `user_id` AS `_xp_unit`,
      `cell` AS `_xp_cell`,
      MD5(CAST(`user_id` AS STRING)) AS `_xp_md5`
    FROM `alloc`
  ) AS `a`
) AS `x`
  ON `customer_id` = `x`.`_xp_unit`
LEFT JOIN (
  SELECT
    `user_id` AS `_xp_unit`,
    `tier` AS `_xp_d_tier`
  FROM `dims`
) AS `d`
  ON `x`.`_xp_unit` = `d`.`_xp_unit`
WHERE
  (
    `ordered_at` >= CAST('2026-02-23 00:00:00' AS TIMESTAMP)
    AND `ordered_at` < CAST('2026-03-23 00:00:00' AS TIMESTAMP)
  )
  AND NOT `amount` IS NULL
