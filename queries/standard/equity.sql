/*
name = "equity"
title = "Reach and engagement by age band, sex, and race and ethnicity"
description = """
Who a program's outreach reaches: survivors identified, attempted within a week and engaged
within 30 days, broken down by the age band, sex, and race and ethnicity recorded at the index
overdose. Each breakdown is a separate margin, so a survivor counts once in each of the three."""
tables = ["overdose_events", "outreach_attempts"]
breakdowns = ["age_band", "sex", "race_ethnicity"]

[[statistics]]
name = "identified"
description = "had a non-fatal overdose attributed to the program in the quarter (the whole cohort)"
window = [0, 0]
tables = ["overdose_events"]

[[statistics]]
name = "attempted_7d"
description = "had an outreach attempt by the program 0 to 7 days after the index overdose"
window = [0, 7]

[[statistics]]
name = "engaged_30d"
description = "were engaged (the survivor or their network) at an attempt 0 to 30 days after the index overdose"
window = [0, 30]

[[rates]]
name = "reach_7d"
numerator = "attempted_7d"
denominator = "identified"
description = "Share of survivors the program tried to reach within 7 days"

[[rates]]
name = "engagement_30d"
numerator = "engaged_30d"
denominator = "identified"
description = "Share of survivors engaged, themselves or their network, within 30 days"
*/
-- The cohort of outreach.sql, with the survivor's age band, sex, and race and ethnicity at
-- the index overdose (the smallest value among index-day events, should there be several).
WITH cohort AS (
    SELECT person_key, program_id, quarter_of(event_date) AS quarter, MIN(event_date) AS index_date
    FROM overdose_events
    WHERE NOT fatal
    GROUP BY person_key, program_id, quarter_of(event_date)
),
at_index AS (
    SELECT c.person_key, c.program_id, c.quarter,
           MIN(CAST(o.age_band AS VARCHAR)) AS age_band,
           MIN(CAST(o.sex AS VARCHAR)) AS sex,
           MIN(CAST(o.race_ethnicity AS VARCHAR)) AS race_ethnicity
    FROM cohort c
    JOIN overdose_events o
      ON o.person_key = c.person_key AND o.program_id = c.program_id
     AND o.event_date = c.index_date AND NOT o.fatal
    GROUP BY c.person_key, c.program_id, c.quarter
),
attempt_flags AS (
    SELECT c.person_key, c.program_id, c.quarter,
           bool_or(a.attempt_date <= add_days(c.index_date, 7)) AS attempted_7d,
           bool_or(a.outcome IN ('engaged_survivor', 'engaged_network')) AS engaged_30d
    FROM cohort c
    JOIN outreach_attempts a
      ON a.person_key = c.person_key AND a.program_id = c.program_id
    WHERE a.attempt_date >= c.index_date AND a.attempt_date <= add_days(c.index_date, 30)
    GROUP BY c.person_key, c.program_id, c.quarter
),
flags AS (
    SELECT i.person_key, i.program_id, i.quarter, i.age_band, i.sex, i.race_ethnicity,
           true AS identified,
           coalesce(f.attempted_7d, false) AS attempted_7d,
           coalesce(f.engaged_30d, false) AS engaged_30d
    FROM at_index i
    LEFT JOIN attempt_flags f
      ON f.person_key = i.person_key AND f.program_id = i.program_id AND f.quarter = i.quarter
)
SELECT person_key, program_id, quarter, 'age_band' AS dimension, age_band AS value,
       identified, attempted_7d, engaged_30d
FROM flags
UNION ALL
SELECT person_key, program_id, quarter, 'sex' AS dimension, sex AS value,
       identified, attempted_7d, engaged_30d
FROM flags
UNION ALL
SELECT person_key, program_id, quarter, 'race_ethnicity' AS dimension, race_ethnicity AS value,
       identified, attempted_7d, engaged_30d
FROM flags
