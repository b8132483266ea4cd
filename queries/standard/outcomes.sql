/*
name = "outcomes"
title = "Linkage to care, arrests after referral, repeat and fatal overdose"
description = """
What happened to the survivors a program was handed in a quarter, wherever it happened:
whether they were linked to a service (any, or medication for opioid use disorder) within 30
days in any program, whether they were arrested in the 90 days after the program was handed
their name, and whether they overdosed again, or died of an overdose, within 90 days."""
tables = ["overdose_events"]

[[statistics]]
name = "identified"
description = "had a non-fatal overdose attributed to the program in the quarter (the whole cohort)"
window = [0, 0]
tables = ["overdose_events"]

[[statistics]]
name = "linked_any_30d"
description = "were linked to any service, in any program, 0 to 30 days after the index overdose"
window = [0, 30]
tables = ["overdose_events", "service_linkages"]

[[statistics]]
name = "linked_moud_30d"
description = "were linked to medication for opioid use disorder (MOUD), in any program, 0 to 30 days after the index overdose"
window = [0, 30]
tables = ["overdose_events", "service_linkages"]

[[statistics]]
name = "arrested_90d_after_referral"
description = "were arrested 1 to 90 days after the index overdose, the day the program was handed their name"
window = [1, 90]
tables = ["overdose_events", "arrests"]

[[statistics]]
name = "repeat_od_90d"
description = "had another overdose, fatal or not, in any program, 1 to 90 days after the index overdose"
window = [1, 90]

[[statistics]]
name = "fatal_od_90d"
description = "died of an overdose 1 to 90 days after the index overdose"
window = [1, 90]

[[rates]]
name = "linkage_any_30d"
numerator = "linked_any_30d"
denominator = "identified"
description = "Share of survivors linked to any service within 30 days"

[[rates]]
name = "linkage_moud_30d"
numerator = "linked_moud_30d"
denominator = "identified"
description = "Share of survivors linked to MOUD within 30 days"

[[rates]]
name = "arrest_after_referral_90d"
numerator = "arrested_90d_after_referral"
denominator = "identified"
description = "Share of survivors arrested in the 90 days after the program was handed their name"

[[rates]]
name = "repeat_overdose_90d"
numerator = "repeat_od_90d"
denominator = "identified"
description = "Share of survivors who overdosed again within 90 days"

[[rates]]
name = "fatal_overdose_90d"
numerator = "fatal_od_90d"
denominator = "identified"
description = "Share of survivors who died of an overdose within 90 days"
*/
-- The same cohort as outreach.sql: persons with a non-fatal overdose attributed to program P
-- in quarter Q; the first one is the index overdose. Outcomes count in any program.
WITH cohort AS (
    SELECT person_key, program_id, quarter_of(event_date) AS quarter, MIN(event_date) AS index_date
    FROM overdose_events
    WHERE NOT fatal
    GROUP BY person_key, program_id, quarter_of(event_date)
),
linked AS (
    SELECT c.person_key, c.program_id, c.quarter,
           true AS linked_any,
           bool_or(l.service = 'moud') AS linked_moud
    FROM cohort c
    JOIN service_linkages l ON l.person_key = c.person_key
    WHERE l.linkage_date >= c.index_date AND l.linkage_date <= add_days(c.index_date, 30)
    GROUP BY c.person_key, c.program_id, c.quarter
),
arrested AS (
    SELECT c.person_key, c.program_id, c.quarter, true AS arrested
    FROM cohort c
    JOIN arrests r ON r.person_key = c.person_key
    WHERE r.arrest_date >= add_days(c.index_date, 1)
      AND r.arrest_date <= add_days(c.index_date, 90)
    GROUP BY c.person_key, c.program_id, c.quarter
),
later_overdoses AS (
    SELECT c.person_key, c.program_id, c.quarter,
           true AS repeat_od,
           bool_or(o.fatal) AS fatal_od
    FROM cohort c
    JOIN overdose_events o ON o.person_key = c.person_key
    WHERE o.event_date >= add_days(c.index_date, 1)
      AND o.event_date <= add_days(c.index_date, 90)
    GROUP BY c.person_key, c.program_id, c.quarter
)
SELECT c.person_key, c.program_id, c.quarter,
       true AS identified,
       coalesce(l.linked_any, false) AS linked_any_30d,
       coalesce(l.linked_moud, false) AS linked_moud_30d,
       coalesce(a.arrested, false) AS arrested_90d_after_referral,
       coalesce(o.repeat_od, false) AS repeat_od_90d,
       coalesce(o.fatal_od, false) AS fatal_od_90d
FROM cohort c
LEFT JOIN linked l
  ON l.person_key = c.person_key AND l.program_id = c.program_id AND l.quarter = c.quarter
LEFT JOIN arrested a
  ON a.person_key = c.person_key AND a.program_id = c.program_id AND a.quarter = c.quarter
LEFT JOIN later_overdoses o
  ON o.person_key = c.person_key AND o.program_id = c.program_id AND o.quarter = c.quarter
