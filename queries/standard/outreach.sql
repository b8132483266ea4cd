/*
name = "outreach"
title = "Reach, timeliness, engagement, naloxone, referral, and arrests after the first attempt"
description = """
What a program did for the survivors it was handed in a quarter: whether it tried to reach
them within a week, whether its first try came within three days, whether it engaged them or
their network, gave naloxone or made a referral within 30 days, whether police were at the
first try, and whether the survivor was arrested in the 90 days after that first try."""
tables = ["overdose_events", "outreach_attempts"]

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
name = "timely_72h"
description = "had their first attempt 0 to 3 days after the index overdose"
window = [0, 3]

[[statistics]]
name = "engaged_30d"
description = "were engaged (the survivor or their network) at an attempt 0 to 30 days after the index overdose"
window = [0, 30]

[[statistics]]
name = "naloxone_30d"
description = "were given naloxone at an attempt 0 to 30 days after the index overdose"
window = [0, 30]

[[statistics]]
name = "referred_30d"
description = "were referred to a service by the program 0 to 30 days after the index overdose"
window = [0, 30]
tables = ["overdose_events", "referrals"]

[[statistics]]
name = "first_attempt_police_present"
description = "had a first attempt at which police were present (any attempt on that first date)"
window = [0, 30]

[[statistics]]
name = "first_attempt_police_absent"
description = "had a first attempt at which no police were present"
window = [0, 30]

[[statistics]]
name = "arrested_90d_after_attempt_police_present"
tables = ["overdose_events", "outreach_attempts", "arrests"]
description = "had police at the first attempt and were arrested 1 to 90 days after it"
window = [0, 120]

[[statistics]]
name = "arrested_90d_after_attempt_police_absent"
tables = ["overdose_events", "outreach_attempts", "arrests"]
description = "had no police at the first attempt and were arrested 1 to 90 days after it"
window = [0, 120]

[[rates]]
name = "reach_7d"
numerator = "attempted_7d"
denominator = "identified"
description = "Share of survivors the program tried to reach within 7 days"

[[rates]]
name = "timely_contact_72h"
numerator = "timely_72h"
denominator = "identified"
description = "Share of survivors whose first attempt came within 3 days (72 hours)"

[[rates]]
name = "engagement_30d"
numerator = "engaged_30d"
denominator = "identified"
description = "Share of survivors engaged, themselves or their network, within 30 days"

[[rates]]
name = "naloxone_30d"
numerator = "naloxone_30d"
denominator = "identified"
description = "Share of survivors given naloxone within 30 days"

[[rates]]
name = "referral_30d"
numerator = "referred_30d"
denominator = "identified"
description = "Share of survivors referred to a service within 30 days"

[[rates]]
name = "arrest_after_attempt_police_present"
numerator = "arrested_90d_after_attempt_police_present"
denominator = "first_attempt_police_present"
description = "Of survivors with police at the first attempt, the share arrested in the 90 days after it"

[[rates]]
name = "arrest_after_attempt_police_absent"
numerator = "arrested_90d_after_attempt_police_absent"
denominator = "first_attempt_police_absent"
description = "Of survivors without police at the first attempt, the share arrested in the 90 days after it"

[[differences]]
name = "arrest_after_attempt_police_difference"
minuend = "arrest_after_attempt_police_present"
subtrahend = "arrest_after_attempt_police_absent"
description = "Arrest rate after a first attempt with police, minus the rate without police: the police paradox in one number"
*/
-- The cohort of program P and quarter Q: persons with a non-fatal overdose attributed to P
-- in Q. The first one is the index overdose. Every window counts whole days, both ends
-- included, and is written with add_days (NULL, never an error, outside the calendar).
WITH cohort AS (
    SELECT person_key, program_id, quarter_of(event_date) AS quarter, MIN(event_date) AS index_date
    FROM overdose_events
    WHERE NOT fatal
    GROUP BY person_key, program_id, quarter_of(event_date)
),
-- P's attempts 0-30 days after the index overdose.
attempts AS (
    SELECT c.person_key, c.program_id, c.quarter, c.index_date, a.attempt_date, a.outcome,
           a.police_present, a.naloxone_provided
    FROM cohort c
    JOIN outreach_attempts a
      ON a.person_key = c.person_key AND a.program_id = c.program_id
    WHERE a.attempt_date >= c.index_date AND a.attempt_date <= add_days(c.index_date, 30)
),
attempt_flags AS (
    SELECT person_key, program_id, quarter,
           MIN(attempt_date) AS first_date,
           bool_or(attempt_date <= add_days(index_date, 7)) AS attempted_7d,
           MIN(attempt_date) <= add_days(MIN(index_date), 3) AS timely_72h,
           bool_or(outcome IN ('engaged_survivor', 'engaged_network')) AS engaged_30d,
           bool_or(naloxone_provided) AS naloxone_30d
    FROM attempts
    GROUP BY person_key, program_id, quarter
),
-- Police at the first attempt: any attempt on the first date with police counts as present.
first_attempt AS (
    SELECT f.person_key, f.program_id, f.quarter, f.first_date,
           bool_or(a.police_present) AS police_present
    FROM attempt_flags f
    JOIN attempts a
      ON a.person_key = f.person_key AND a.program_id = f.program_id
     AND a.quarter = f.quarter AND a.attempt_date = f.first_date
    GROUP BY f.person_key, f.program_id, f.quarter, f.first_date
),
arrested_after_attempt AS (
    SELECT f.person_key, f.program_id, f.quarter, true AS arrested
    FROM first_attempt f
    JOIN arrests r ON r.person_key = f.person_key
    WHERE r.arrest_date >= add_days(f.first_date, 1)
      AND r.arrest_date <= add_days(f.first_date, 90)
    GROUP BY f.person_key, f.program_id, f.quarter
),
referred AS (
    SELECT c.person_key, c.program_id, c.quarter, true AS referred
    FROM cohort c
    JOIN referrals r ON r.person_key = c.person_key AND r.program_id = c.program_id
    WHERE r.referral_date >= c.index_date AND r.referral_date <= add_days(c.index_date, 30)
    GROUP BY c.person_key, c.program_id, c.quarter
)
SELECT c.person_key, c.program_id, c.quarter,
       true AS identified,
       coalesce(af.attempted_7d, false) AS attempted_7d,
       coalesce(af.timely_72h, false) AS timely_72h,
       coalesce(af.engaged_30d, false) AS engaged_30d,
       coalesce(af.naloxone_30d, false) AS naloxone_30d,
       coalesce(rf.referred, false) AS referred_30d,
       coalesce(fa.police_present, false) AS first_attempt_police_present,
       coalesce(NOT fa.police_present, false) AS first_attempt_police_absent,
       coalesce(fa.police_present AND aa.arrested, false) AS arrested_90d_after_attempt_police_present,
       coalesce(NOT fa.police_present AND aa.arrested, false) AS arrested_90d_after_attempt_police_absent
FROM cohort c
LEFT JOIN attempt_flags af
  ON af.person_key = c.person_key AND af.program_id = c.program_id AND af.quarter = c.quarter
LEFT JOIN first_attempt fa
  ON fa.person_key = c.person_key AND fa.program_id = c.program_id AND fa.quarter = c.quarter
LEFT JOIN arrested_after_attempt aa
  ON aa.person_key = c.person_key AND aa.program_id = c.program_id AND aa.quarter = c.quarter
LEFT JOIN referred rf
  ON rf.person_key = c.person_key AND rf.program_id = c.program_id AND rf.quarter = c.quarter
