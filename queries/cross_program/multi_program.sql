-- Survivors identified by more than one program in a quarter (statewide): one row per
-- survivor per quarter in which two or more programs recorded a non-fatal overdose of theirs.
-- It counts humans only when every program keys its exports with `outreach pseudonymize`
-- under the state's one key: otherwise a survivor has a key per program and never appears
-- here. A survivor gives one row per quarter, so with the quarter as the only cell k = 1
-- bounds them (see cross_program.toml).
SELECT person_key, quarter_of(event_date) AS quarter, true AS identified_by_several_programs
FROM overdose_events
WHERE NOT fatal
GROUP BY person_key, quarter_of(event_date)
HAVING COUNT(DISTINCT program_id) > 1
