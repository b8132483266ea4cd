-- The statewide cohort of a quarter and its engagement by any program: one row per survivor
-- per quarter with a non-fatal overdose in any program, counted once however many programs
-- were handed them. The index overdose is the survivor's first in the quarter, in any
-- program; `engaged_any_program_30d` is an attempt by any program, 0 to 30 days after it
-- (both ends included), that engaged the survivor or their network. Unlike the standard
-- metrics, which follow each program's own cohort and attempts, an attempt by another
-- program counts. One human is one row only under shared keys (`outreach pseudonymize`).
WITH cohort AS (
    SELECT person_key, quarter_of(event_date) AS quarter, MIN(event_date) AS index_date
    FROM overdose_events
    WHERE NOT fatal
    GROUP BY person_key, quarter_of(event_date)
),
engaged AS (
    SELECT c.person_key, c.quarter, true AS engaged
    FROM cohort c
    JOIN outreach_attempts a ON a.person_key = c.person_key
    WHERE a.attempt_date >= c.index_date
      AND a.attempt_date <= add_days(c.index_date, 30)
      AND a.outcome IN ('engaged_survivor', 'engaged_network')
    GROUP BY c.person_key, c.quarter
)
SELECT c.person_key, c.quarter,
       true AS identified_statewide,
       coalesce(e.engaged, false) AS engaged_any_program_30d
FROM cohort c
LEFT JOIN engaged e ON e.person_key = c.person_key AND e.quarter = c.quarter
