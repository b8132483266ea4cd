-- Persons seen: one row per survivor per (program, quarter) in which the program recorded an
-- overdose, an outreach attempt, a referral or a linkage for them. Person-level: the privacy
-- engine collapses, bounds to k cells per person and adds the noise.
SELECT person_key, program_id, quarter_of(event_date) AS quarter, true AS persons
FROM overdose_events
UNION ALL
SELECT person_key, program_id, quarter_of(attempt_date) AS quarter, true AS persons
FROM outreach_attempts
UNION ALL
SELECT person_key, program_id, quarter_of(referral_date) AS quarter, true AS persons
FROM referrals
UNION ALL
SELECT person_key, program_id, quarter_of(linkage_date) AS quarter, true AS persons
FROM service_linkages
