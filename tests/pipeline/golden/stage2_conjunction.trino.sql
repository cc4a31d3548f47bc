WITH "src" AS (
  SELECT
    "cell",
    CASE
      WHEN NOT "streaming_hours" IS NULL AND NOT "pre_streaming_hours" IS NULL
      THEN CAST("streaming_hours" AS DOUBLE)
    END AS "_xp_0_0",
    CASE
      WHEN NOT "streaming_hours" IS NULL AND NOT "pre_streaming_hours" IS NULL
      THEN CAST("pre_streaming_hours" AS DOUBLE)
    END AS "_xp_0_1",
    CASE
      WHEN NOT "is_streamer" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("is_streamer" AS DOUBLE)
    END AS "_xp_1_0",
    CASE
      WHEN NOT "is_streamer" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("pre_active_days" AS DOUBLE)
    END AS "_xp_1_1",
    CASE
      WHEN NOT "sessions" IS NULL AND NOT "pre_sessions" IS NULL
      THEN CAST("sessions" AS DOUBLE)
    END AS "_xp_2_0",
    CASE
      WHEN NOT "sessions" IS NULL AND NOT "pre_sessions" IS NULL
      THEN CAST("pre_sessions" AS DOUBLE)
    END AS "_xp_2_1",
    CASE
      WHEN NOT "long_sessions" IS NULL AND NOT "pre_sessions" IS NULL
      THEN CAST("long_sessions" AS DOUBLE)
    END AS "_xp_3_0",
    CASE
      WHEN NOT "long_sessions" IS NULL AND NOT "pre_sessions" IS NULL
      THEN CAST("pre_sessions" AS DOUBLE)
    END AS "_xp_3_1",
    CASE
      WHEN NOT "active_days" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("active_days" AS DOUBLE)
    END AS "_xp_4_0",
    CASE
      WHEN NOT "active_days" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("pre_active_days" AS DOUBLE)
    END AS "_xp_4_1",
    CASE
      WHEN NOT "titles_started" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("titles_started" AS DOUBLE)
    END AS "_xp_5_0",
    CASE
      WHEN NOT "titles_started" IS NULL AND NOT "pre_active_days" IS NULL
      THEN CAST("pre_active_days" AS DOUBLE)
    END AS "_xp_5_1",
    CASE
      WHEN NOT "rebuffer_rate" IS NULL
      AND NOT "rebuffer_rate__den" IS NULL
      AND NOT "rebuffer_rate__res" IS NULL
      THEN CAST("rebuffer_rate" AS DOUBLE)
    END AS "_xp_6_0",
    CASE
      WHEN NOT "rebuffer_rate" IS NULL
      AND NOT "rebuffer_rate__den" IS NULL
      AND NOT "rebuffer_rate__res" IS NULL
      THEN CAST("rebuffer_rate__den" AS DOUBLE)
    END AS "_xp_6_1",
    CASE
      WHEN NOT "rebuffer_rate" IS NULL
      AND NOT "rebuffer_rate__den" IS NULL
      AND NOT "rebuffer_rate__res" IS NULL
      THEN CAST("rebuffer_rate__res" AS DOUBLE)
    END AS "_xp_6_2",
    CASE
      WHEN NOT "hours_per_session" IS NULL
      AND NOT "hours_per_session__den" IS NULL
      AND NOT "hours_per_session__res" IS NULL
      THEN CAST("hours_per_session" AS DOUBLE)
    END AS "_xp_7_0",
    CASE
      WHEN NOT "hours_per_session" IS NULL
      AND NOT "hours_per_session__den" IS NULL
      AND NOT "hours_per_session__res" IS NULL
      THEN CAST("hours_per_session__den" AS DOUBLE)
    END AS "_xp_7_1",
    CASE
      WHEN NOT "hours_per_session" IS NULL
      AND NOT "hours_per_session__den" IS NULL
      AND NOT "hours_per_session__res" IS NULL
      THEN CAST("hours_per_session__res" AS DOUBLE)
    END AS "_xp_7_2",
    CAST("playback_start_latency" AS DOUBLE) AS "_xp_8_0",
    CASE
      WHEN NOT "revenue" IS NULL AND NOT "pre_revenue" IS NULL
      THEN CAST("revenue" AS DOUBLE)
    END AS "_xp_9_0",
    CASE
      WHEN NOT "revenue" IS NULL AND NOT "pre_revenue" IS NULL
      THEN CAST("pre_revenue" AS DOUBLE)
    END AS "_xp_9_1",
    CAST("rentals" AS DOUBLE) AS "_xp_10_0",
    CAST("cancelled" AS DOUBLE) AS "_xp_11_0",
    CAST("retained" AS DOUBLE) AS "_xp_12_0",
    CASE
      WHEN NOT "rebuffered_session_rate" IS NULL
      AND NOT "rebuffered_session_rate__den" IS NULL
      AND NOT "rebuffered_session_rate__res" IS NULL
      THEN CAST("rebuffered_session_rate" AS DOUBLE)
    END AS "_xp_13_0",
    CASE
      WHEN NOT "rebuffered_session_rate" IS NULL
      AND NOT "rebuffered_session_rate__den" IS NULL
      AND NOT "rebuffered_session_rate__res" IS NULL
      THEN CAST("rebuffered_session_rate__den" AS DOUBLE)
    END AS "_xp_13_1",
    CASE
      WHEN NOT "rebuffered_session_rate" IS NULL
      AND NOT "rebuffered_session_rate__den" IS NULL
      AND NOT "rebuffered_session_rate__res" IS NULL
      THEN CAST("rebuffered_session_rate__res" AS DOUBLE)
    END AS "_xp_13_2",
    CASE
      WHEN NOT "slow_start_rate" IS NULL
      AND NOT "slow_start_rate__den" IS NULL
      AND NOT "slow_start_rate__res" IS NULL
      THEN CAST("slow_start_rate" AS DOUBLE)
    END AS "_xp_14_0",
    CASE
      WHEN NOT "slow_start_rate" IS NULL
      AND NOT "slow_start_rate__den" IS NULL
      AND NOT "slow_start_rate__res" IS NULL
      THEN CAST("slow_start_rate__den" AS DOUBLE)
    END AS "_xp_14_1",
    CASE
      WHEN NOT "slow_start_rate" IS NULL
      AND NOT "slow_start_rate__den" IS NULL
      AND NOT "slow_start_rate__res" IS NULL
      THEN CAST("slow_start_rate__res" AS DOUBLE)
    END AS "_xp_14_2",
    CAST("early_abandons" AS DOUBLE) AS "_xp_15_0",
    CASE
      WHEN NOT "longest_session_hours" IS NULL AND NOT "pre_streaming_hours" IS NULL
      THEN CAST("longest_session_hours" AS DOUBLE)
    END AS "_xp_16_0",
    CASE
      WHEN NOT "longest_session_hours" IS NULL AND NOT "pre_streaming_hours" IS NULL
      THEN CAST("pre_streaming_hours" AS DOUBLE)
    END AS "_xp_16_1",
    CAST("rental_revenue" AS DOUBLE) AS "_xp_17_0",
    CAST("is_renter" AS DOUBLE) AS "_xp_18_0",
    CAST("profile_edits" AS DOUBLE) AS "_xp_19_0"
  FROM "hive"."xp"."analysis"
  WHERE
    "country" = 'US' AND "device" = 'ios'
)
SELECT
  "cell",
  CAST(COUNT(*) AS DOUBLE) AS "_n",
  CAST(COUNT("_xp_0_0") AS DOUBLE) AS "streaming_hours__m_0_0",
  COALESCE(SUM("_xp_0_0"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_1_0",
  COALESCE(SUM("_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_0_1",
  COALESCE(SUM("_xp_0_0" * "_xp_0_0"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_2_0",
  COALESCE(SUM("_xp_0_0" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_1_1",
  COALESCE(SUM("_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_0_2",
  COALESCE(SUM("_xp_0_0" * "_xp_0_0" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_2_1",
  COALESCE(SUM("_xp_0_0" * "_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_1_2",
  COALESCE(SUM("_xp_0_1" * "_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_0_3",
  COALESCE(SUM("_xp_0_0" * "_xp_0_0" * "_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_2_2",
  COALESCE(SUM("_xp_0_0" * "_xp_0_1" * "_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_1_3",
  COALESCE(SUM("_xp_0_1" * "_xp_0_1" * "_xp_0_1" * "_xp_0_1"), CAST(0 AS DOUBLE)) AS "streaming_hours__m_0_4",
  CAST(COUNT("_xp_1_0") AS DOUBLE) AS "is_streamer__m_0_0",
  COALESCE(SUM("_xp_1_0"), CAST(0 AS DOUBLE)) AS "is_streamer__m_1_0",
  COALESCE(SUM("_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_0_1",
  COALESCE(SUM("_xp_1_0" * "_xp_1_0"), CAST(0 AS DOUBLE)) AS "is_streamer__m_2_0",
  COALESCE(SUM("_xp_1_0" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_1_1",
  COALESCE(SUM("_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_0_2",
  COALESCE(SUM("_xp_1_0" * "_xp_1_0" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_2_1",
  COALESCE(SUM("_xp_1_0" * "_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_1_2",
  COALESCE(SUM("_xp_1_1" * "_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_0_3",
  COALESCE(SUM("_xp_1_0" * "_xp_1_0" * "_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_2_2",
  COALESCE(SUM("_xp_1_0" * "_xp_1_1" * "_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_1_3",
  COALESCE(SUM("_xp_1_1" * "_xp_1_1" * "_xp_1_1" * "_xp_1_1"), CAST(0 AS DOUBLE)) AS "is_streamer__m_0_4",
  CAST(COUNT("_xp_2_0") AS DOUBLE) AS "sessions__m_0_0",
  COALESCE(SUM("_xp_2_0"), CAST(0 AS DOUBLE)) AS "sessions__m_1_0",
  COALESCE(SUM("_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_0_1",
  COALESCE(SUM("_xp_2_0" * "_xp_2_0"), CAST(0 AS DOUBLE)) AS "sessions__m_2_0",
  COALESCE(SUM("_xp_2_0" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_1_1",
  COALESCE(SUM("_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_0_2",
  COALESCE(SUM("_xp_2_0" * "_xp_2_0" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_2_1",
  COALESCE(SUM("_xp_2_0" * "_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_1_2",
  COALESCE(SUM("_xp_2_1" * "_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_0_3",
  COALESCE(SUM("_xp_2_0" * "_xp_2_0" * "_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_2_2",
  COALESCE(SUM("_xp_2_0" * "_xp_2_1" * "_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_1_3",
  COALESCE(SUM("_xp_2_1" * "_xp_2_1" * "_xp_2_1" * "_xp_2_1"), CAST(0 AS DOUBLE)) AS "sessions__m_0_4",
  CAST(COUNT("_xp_3_0") AS DOUBLE) AS "long_sessions__m_0_0",
  COALESCE(SUM("_xp_3_0"), CAST(0 AS DOUBLE)) AS "long_sessions__m_1_0",
  COALESCE(SUM("_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_0_1",
  COALESCE(SUM("_xp_3_0" * "_xp_3_0"), CAST(0 AS DOUBLE)) AS "long_sessions__m_2_0",
  COALESCE(SUM("_xp_3_0" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_1_1",
  COALESCE(SUM("_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_0_2",
  COALESCE(SUM("_xp_3_0" * "_xp_3_0" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_2_1",
  COALESCE(SUM("_xp_3_0" * "_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_1_2",
  COALESCE(SUM("_xp_3_1" * "_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_0_3",
  COALESCE(SUM("_xp_3_0" * "_xp_3_0" * "_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_2_2",
  COALESCE(SUM("_xp_3_0" * "_xp_3_1" * "_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_1_3",
  COALESCE(SUM("_xp_3_1" * "_xp_3_1" * "_xp_3_1" * "_xp_3_1"), CAST(0 AS DOUBLE)) AS "long_sessions__m_0_4",
  CAST(COUNT("_xp_4_0") AS DOUBLE) AS "active_days__m_0_0",
  COALESCE(SUM("_xp_4_0"), CAST(0 AS DOUBLE)) AS "active_days__m_1_0",
  COALESCE(SUM("_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_0_1",
  COALESCE(SUM("_xp_4_0" * "_xp_4_0"), CAST(0 AS DOUBLE)) AS "active_days__m_2_0",
  COALESCE(SUM("_xp_4_0" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_1_1",
  COALESCE(SUM("_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_0_2",
  COALESCE(SUM("_xp_4_0" * "_xp_4_0" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_2_1",
  COALESCE(SUM("_xp_4_0" * "_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_1_2",
  COALESCE(SUM("_xp_4_1" * "_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_0_3",
  COALESCE(SUM("_xp_4_0" * "_xp_4_0" * "_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_2_2",
  COALESCE(SUM("_xp_4_0" * "_xp_4_1" * "_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_1_3",
  COALESCE(SUM("_xp_4_1" * "_xp_4_1" * "_xp_4_1" * "_xp_4_1"), CAST(0 AS DOUBLE)) AS "active_days__m_0_4",
  CAST(COUNT("_xp_5_0") AS DOUBLE) AS "titles_started__m_0_0",
  COALESCE(SUM("_xp_5_0"), CAST(0 AS DOUBLE)) AS "titles_started__m_1_0",
  COALESCE(SUM("_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_0_1",
  COALESCE(SUM("_xp_5_0" * "_xp_5_0"), CAST(0 AS DOUBLE)) AS "titles_started__m_2_0",
  COALESCE(SUM("_xp_5_0" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_1_1",
  COALESCE(SUM("_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_0_2",
  COALESCE(SUM("_xp_5_0" * "_xp_5_0" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_2_1",
  COALESCE(SUM("_xp_5_0" * "_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_1_2",
  COALESCE(SUM("_xp_5_1" * "_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_0_3",
  COALESCE(SUM("_xp_5_0" * "_xp_5_0" * "_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_2_2",
  COALESCE(SUM("_xp_5_0" * "_xp_5_1" * "_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_1_3",
  COALESCE(SUM("_xp_5_1" * "_xp_5_1" * "_xp_5_1" * "_xp_5_1"), CAST(0 AS DOUBLE)) AS "titles_started__m_0_4",
  CAST(COUNT("_xp_6_0") AS DOUBLE) AS "rebuffer_rate__m_0_0_0",
  COALESCE(SUM("_xp_6_0"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_0_0",
  COALESCE(SUM("_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_1_0",
  COALESCE(SUM("_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_0_1",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_0_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_1_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_0_1",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_2_0",
  COALESCE(SUM("_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_1_1",
  COALESCE(SUM("_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_0_2",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_1_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_0_1",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_2_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_1_1",
  COALESCE(SUM("_xp_6_0" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_0_2",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_3_0",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_2_1",
  COALESCE(SUM("_xp_6_1" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_1_2",
  COALESCE(SUM("_xp_6_2" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_0_3",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0" * "_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_2_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0" * "_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_1_1",
  COALESCE(SUM("_xp_6_0" * "_xp_6_0" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_2_0_2",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1" * "_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_3_0",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1" * "_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_2_1",
  COALESCE(SUM("_xp_6_0" * "_xp_6_1" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_1_2",
  COALESCE(SUM("_xp_6_0" * "_xp_6_2" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_1_0_3",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1" * "_xp_6_1" * "_xp_6_1"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_4_0",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1" * "_xp_6_1" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_3_1",
  COALESCE(SUM("_xp_6_1" * "_xp_6_1" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_2_2",
  COALESCE(SUM("_xp_6_1" * "_xp_6_2" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_1_3",
  COALESCE(SUM("_xp_6_2" * "_xp_6_2" * "_xp_6_2" * "_xp_6_2"), CAST(0 AS DOUBLE)) AS "rebuffer_rate__m_0_0_4",
  CAST(COUNT("_xp_7_0") AS DOUBLE) AS "hours_per_session__m_0_0_0",
  COALESCE(SUM("_xp_7_0"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_0_0",
  COALESCE(SUM("_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_1_0",
  COALESCE(SUM("_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_0_1",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_0_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_1_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_0_1",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_2_0",
  COALESCE(SUM("_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_1_1",
  COALESCE(SUM("_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_0_2",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_1_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_0_1",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_2_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_1_1",
  COALESCE(SUM("_xp_7_0" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_0_2",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_3_0",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_2_1",
  COALESCE(SUM("_xp_7_1" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_1_2",
  COALESCE(SUM("_xp_7_2" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_0_3",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0" * "_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_2_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0" * "_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_1_1",
  COALESCE(SUM("_xp_7_0" * "_xp_7_0" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_2_0_2",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1" * "_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_3_0",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1" * "_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_2_1",
  COALESCE(SUM("_xp_7_0" * "_xp_7_1" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_1_2",
  COALESCE(SUM("_xp_7_0" * "_xp_7_2" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_1_0_3",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1" * "_xp_7_1" * "_xp_7_1"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_4_0",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1" * "_xp_7_1" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_3_1",
  COALESCE(SUM("_xp_7_1" * "_xp_7_1" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_2_2",
  COALESCE(SUM("_xp_7_1" * "_xp_7_2" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_1_3",
  COALESCE(SUM("_xp_7_2" * "_xp_7_2" * "_xp_7_2" * "_xp_7_2"), CAST(0 AS DOUBLE)) AS "hours_per_session__m_0_0_4",
  CAST(COUNT("_xp_8_0") AS DOUBLE) AS "playback_start_latency__m_0",
  COALESCE(SUM("_xp_8_0"), CAST(0 AS DOUBLE)) AS "playback_start_latency__m_1",
  COALESCE(SUM("_xp_8_0" * "_xp_8_0"), CAST(0 AS DOUBLE)) AS "playback_start_latency__m_2",
  CAST(COUNT("_xp_9_0") AS DOUBLE) AS "revenue__m_0_0",
  COALESCE(SUM("_xp_9_0"), CAST(0 AS DOUBLE)) AS "revenue__m_1_0",
  COALESCE(SUM("_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_0_1",
  COALESCE(SUM("_xp_9_0" * "_xp_9_0"), CAST(0 AS DOUBLE)) AS "revenue__m_2_0",
  COALESCE(SUM("_xp_9_0" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_1_1",
  COALESCE(SUM("_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_0_2",
  COALESCE(SUM("_xp_9_0" * "_xp_9_0" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_2_1",
  COALESCE(SUM("_xp_9_0" * "_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_1_2",
  COALESCE(SUM("_xp_9_1" * "_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_0_3",
  COALESCE(SUM("_xp_9_0" * "_xp_9_0" * "_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_2_2",
  COALESCE(SUM("_xp_9_0" * "_xp_9_1" * "_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_1_3",
  COALESCE(SUM("_xp_9_1" * "_xp_9_1" * "_xp_9_1" * "_xp_9_1"), CAST(0 AS DOUBLE)) AS "revenue__m_0_4",
  CAST(COUNT("_xp_10_0") AS DOUBLE) AS "rentals__m_0",
  COALESCE(SUM("_xp_10_0"), CAST(0 AS DOUBLE)) AS "rentals__m_1",
  COALESCE(SUM("_xp_10_0" * "_xp_10_0"), CAST(0 AS DOUBLE)) AS "rentals__m_2",
  CAST(COUNT("_xp_11_0") AS DOUBLE) AS "cancelled__m_0",
  COALESCE(SUM("_xp_11_0"), CAST(0 AS DOUBLE)) AS "cancelled__m_1",
  COALESCE(SUM("_xp_11_0" * "_xp_11_0"), CAST(0 AS DOUBLE)) AS "cancelled__m_2",
  CAST(COUNT("_xp_12_0") AS DOUBLE) AS "retained__m_0",
  COALESCE(SUM("_xp_12_0"), CAST(0 AS DOUBLE)) AS "retained__m_1",
  COALESCE(SUM("_xp_12_0" * "_xp_12_0"), CAST(0 AS DOUBLE)) AS "retained__m_2",
  CAST(COUNT("_xp_13_0") AS DOUBLE) AS "rebuffered_session_rate__m_0_0_0",
  COALESCE(SUM("_xp_13_0"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_0_0",
  COALESCE(SUM("_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_1_0",
  COALESCE(SUM("_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_0_1",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_0_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_1_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_0_1",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_2_0",
  COALESCE(SUM("_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_1_1",
  COALESCE(SUM("_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_0_2",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_1_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_0_1",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_2_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_1_1",
  COALESCE(SUM("_xp_13_0" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_0_2",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_3_0",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_2_1",
  COALESCE(SUM("_xp_13_1" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_1_2",
  COALESCE(SUM("_xp_13_2" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_0_3",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0" * "_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_2_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0" * "_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_1_1",
  COALESCE(SUM("_xp_13_0" * "_xp_13_0" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_2_0_2",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1" * "_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_3_0",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1" * "_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_2_1",
  COALESCE(SUM("_xp_13_0" * "_xp_13_1" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_1_2",
  COALESCE(SUM("_xp_13_0" * "_xp_13_2" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_1_0_3",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1" * "_xp_13_1" * "_xp_13_1"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_4_0",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1" * "_xp_13_1" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_3_1",
  COALESCE(SUM("_xp_13_1" * "_xp_13_1" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_2_2",
  COALESCE(SUM("_xp_13_1" * "_xp_13_2" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_1_3",
  COALESCE(SUM("_xp_13_2" * "_xp_13_2" * "_xp_13_2" * "_xp_13_2"), CAST(0 AS DOUBLE)) AS "rebuffered_session_rate__m_0_0_4",
  CAST(COUNT("_xp_14_0") AS DOUBLE) AS "slow_start_rate__m_0_0_0",
  COALESCE(SUM("_xp_14_0"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_0_0",
  COALESCE(SUM("_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_1_0",
  COALESCE(SUM("_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_0_1",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_0_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_1_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_0_1",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_2_0",
  COALESCE(SUM("_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_1_1",
  COALESCE(SUM("_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_0_2",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_1_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_0_1",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_2_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_1_1",
  COALESCE(SUM("_xp_14_0" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_0_2",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_3_0",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_2_1",
  COALESCE(SUM("_xp_14_1" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_1_2",
  COALESCE(SUM("_xp_14_2" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_0_3",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0" * "_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_2_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0" * "_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_1_1",
  COALESCE(SUM("_xp_14_0" * "_xp_14_0" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_2_0_2",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1" * "_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_3_0",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1" * "_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_2_1",
  COALESCE(SUM("_xp_14_0" * "_xp_14_1" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_1_2",
  COALESCE(SUM("_xp_14_0" * "_xp_14_2" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_1_0_3",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1" * "_xp_14_1" * "_xp_14_1"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_4_0",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1" * "_xp_14_1" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_3_1",
  COALESCE(SUM("_xp_14_1" * "_xp_14_1" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_2_2",
  COALESCE(SUM("_xp_14_1" * "_xp_14_2" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_1_3",
  COALESCE(SUM("_xp_14_2" * "_xp_14_2" * "_xp_14_2" * "_xp_14_2"), CAST(0 AS DOUBLE)) AS "slow_start_rate__m_0_0_4",
  CAST(COUNT("_xp_15_0") AS DOUBLE) AS "early_abandons__m_0",
  COALESCE(SUM("_xp_15_0"), CAST(0 AS DOUBLE)) AS "early_abandons__m_1",
  COALESCE(SUM("_xp_15_0" * "_xp_15_0"), CAST(0 AS DOUBLE)) AS "early_abandons__m_2",
  CAST(COUNT("_xp_16_0") AS DOUBLE) AS "longest_session_hours__m_0_0",
  COALESCE(SUM("_xp_16_0"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_1_0",
  COALESCE(SUM("_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_0_1",
  COALESCE(SUM("_xp_16_0" * "_xp_16_0"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_2_0",
  COALESCE(SUM("_xp_16_0" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_1_1",
  COALESCE(SUM("_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_0_2",
  COALESCE(SUM("_xp_16_0" * "_xp_16_0" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_2_1",
  COALESCE(SUM("_xp_16_0" * "_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_1_2",
  COALESCE(SUM("_xp_16_1" * "_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_0_3",
  COALESCE(SUM("_xp_16_0" * "_xp_16_0" * "_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_2_2",
  COALESCE(SUM("_xp_16_0" * "_xp_16_1" * "_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_1_3",
  COALESCE(SUM("_xp_16_1" * "_xp_16_1" * "_xp_16_1" * "_xp_16_1"), CAST(0 AS DOUBLE)) AS "longest_session_hours__m_0_4",
  CAST(COUNT("_xp_17_0") AS DOUBLE) AS "rental_revenue__m_0",
  COALESCE(SUM("_xp_17_0"), CAST(0 AS DOUBLE)) AS "rental_revenue__m_1",
  COALESCE(SUM("_xp_17_0" * "_xp_17_0"), CAST(0 AS DOUBLE)) AS "rental_revenue__m_2",
  CAST(COUNT("_xp_18_0") AS DOUBLE) AS "is_renter__m_0",
  COALESCE(SUM("_xp_18_0"), CAST(0 AS DOUBLE)) AS "is_renter__m_1",
  COALESCE(SUM("_xp_18_0" * "_xp_18_0"), CAST(0 AS DOUBLE)) AS "is_renter__m_2",
  CAST(COUNT("_xp_19_0") AS DOUBLE) AS "profile_edits__m_0",
  COALESCE(SUM("_xp_19_0"), CAST(0 AS DOUBLE)) AS "profile_edits__m_1",
  COALESCE(SUM("_xp_19_0" * "_xp_19_0"), CAST(0 AS DOUBLE)) AS "profile_edits__m_2"
FROM "src"
GROUP BY
  "cell"
ORDER BY
  "cell"
