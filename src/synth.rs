//! Synthetic program exports that behave like real post-overdose outreach programs.
//!
//! `outreach synth` writes one CSV per dictionary table, in exactly the format programs send.
//! Every effect that the later metrics measure is a parameter of [`SynthParams`] with a
//! documented default, so tests can check that the warehouse recovers it:
//! a mix of team models and visit policies; survivors mostly in one program and some in two;
//! repeat and fatal overdoses; first contact within 24–72 hours for most survivors; engagement
//! near the Massachusetts figure of about half of those attempted; referrals and linkage to
//! care with MOUD among them; and arrests that are more frequent after attempts with police
//! present and in programs that arrest on warrants.
//!
//! Each person is drawn from their own random stream, derived from the seed and the person's
//! number, so the output is byte-identical for the same configuration whatever the thread
//! count. The generator here is for synthetic data only, never for privacy noise.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use chrono::{Days, NaiveDate};
use indicatif::{ProgressBar, ProgressStyle};

use crate::dictionary::{Dictionary, DictionaryError};
use crate::fault::Fault;
use crate::quarter::Quarter;

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth setting: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the data dictionary built into outreach is invalid, a defect of this build: {0}")]
    Dictionary(&'static DictionaryError),
}

impl SynthError {
    pub fn fault(&self) -> Fault {
        match self {
            SynthError::Invalid(_) => Fault::BadInput,
            SynthError::Io { .. } | SynthError::Dictionary(_) => Fault::Internal,
        }
    }
}

/// The behaviour of the synthetic programs. Shares are probabilities from 0 to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthParams {
    /// Survivors who also appear in a second program. Default 0.12.
    pub second_program_share: f64,
    /// Chance of another overdose after each one, within the period. Default 0.30.
    pub repeat_overdose_rate: f64,
    /// Share of repeat overdoses that are fatal. Default 0.06.
    pub fatal_repeat_share: f64,
    /// Share of persons whose first known overdose is already fatal. Default 0.02.
    pub fatal_index_share: f64,
    /// Share of non-fatal overdoses that the program tries to follow up. Default 0.85.
    pub attempt_share: f64,
    /// Share of followed-up survivors whose first attempt is 1 to 3 days after the overdose
    /// (within 24–72 hours). The rest wait 4 days or more. Default 0.70.
    pub contact_within_72h: f64,
    /// Chance that an episode without police at the first attempt ends in engagement.
    /// Default 0.56.
    pub engagement_rate: f64,
    /// How much police at the first attempt lowers that chance (absolute). Default 0.14.
    pub police_engagement_penalty: f64,
    /// Chance that an engaged survivor is referred to a service. Default 0.60.
    pub referral_given_engaged: f64,
    /// Share of referrals that are to MOUD. Default 0.35.
    pub moud_share_of_referrals: f64,
    /// Chance that a referral leads to a confirmed linkage. Default 0.45.
    pub linkage_given_referral: f64,
    /// Chance of an arrest in any 90 days for a survivor, without outreach. Default 0.04.
    pub baseline_arrest_rate_90d: f64,
    /// How many times likelier an arrest is in the 90 days after an episode whose first
    /// attempt had police present. Default 2.0.
    pub police_arrest_multiplier: f64,
    /// A further multiplier for such episodes in programs that arrest on warrants. Default 1.8.
    pub warrant_arrest_multiplier: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            second_program_share: 0.12,
            repeat_overdose_rate: 0.30,
            fatal_repeat_share: 0.06,
            fatal_index_share: 0.02,
            attempt_share: 0.85,
            contact_within_72h: 0.70,
            engagement_rate: 0.56,
            police_engagement_penalty: 0.14,
            referral_given_engaged: 0.60,
            moud_share_of_referrals: 0.35,
            linkage_given_referral: 0.45,
            baseline_arrest_rate_90d: 0.04,
            police_arrest_multiplier: 2.0,
            warrant_arrest_multiplier: 1.8,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub programs: usize,
    pub persons: usize,
    pub start: Quarter,
    pub quarters: u32,
    pub seed: u64,
    /// The export date: nothing after it is generated. Defaults to the end of the period.
    pub as_of: Option<NaiveDate>,
    pub params: SynthParams,
}

impl Default for SynthConfig {
    /// The demo's data set: 20 programs over 8 quarters from 2024Q3, 40,000 persons.
    fn default() -> Self {
        Self {
            programs: 20,
            persons: 40_000,
            start: Quarter::new(2024, 3).expect("valid quarter"),
            quarters: 8,
            seed: 20_240_701,
            as_of: None,
            params: SynthParams::default(),
        }
    }
}

impl SynthConfig {
    /// First day of the period.
    pub fn first_day(&self) -> NaiveDate {
        self.start.first_day()
    }

    /// Last day anything is generated for: the period's end, or the export date if earlier.
    pub fn last_day(&self) -> NaiveDate {
        let end = self
            .start
            .range(self.quarters)
            .last()
            .copied()
            .unwrap_or(self.start)
            .last_day();
        self.as_of.map_or(end, |a| a.min(end))
    }

    fn check(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::Invalid(m.to_string()));
        if self.programs == 0 || self.programs > 999 {
            return bad("--programs must be 1 to 999");
        }
        if self.persons == 0 || self.persons > 9_999_999 {
            return bad("--persons must be 1 to 9,999,999");
        }
        if self.quarters == 0 || self.quarters > 80 {
            return bad("--quarters must be 1 to 80");
        }
        if !(2001..=2100).contains(&self.start.year()) {
            return bad("--start must be a quarter from 2001 to 2100");
        }
        if self.last_day() < self.first_day() {
            return bad("--as-of is before the period starts");
        }
        let p = &self.params;
        for (name, v) in [
            ("second_program_share", p.second_program_share),
            ("repeat_overdose_rate", p.repeat_overdose_rate),
            ("fatal_repeat_share", p.fatal_repeat_share),
            ("fatal_index_share", p.fatal_index_share),
            ("attempt_share", p.attempt_share),
            ("contact_within_72h", p.contact_within_72h),
            ("engagement_rate", p.engagement_rate),
            ("referral_given_engaged", p.referral_given_engaged),
            ("moud_share_of_referrals", p.moud_share_of_referrals),
            ("linkage_given_referral", p.linkage_given_referral),
            ("baseline_arrest_rate_90d", p.baseline_arrest_rate_90d),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(SynthError::Invalid(format!(
                    "{name} must be between 0 and 1, not {v}"
                )));
            }
        }
        if p.repeat_overdose_rate > 0.95 {
            return bad("repeat_overdose_rate must be at most 0.95");
        }
        if !(0.0..=p.engagement_rate).contains(&p.police_engagement_penalty) {
            return bad("police_engagement_penalty must be between 0 and engagement_rate");
        }
        let arrest_max =
            p.baseline_arrest_rate_90d * p.police_arrest_multiplier * p.warrant_arrest_multiplier;
        if p.police_arrest_multiplier < 1.0 || p.warrant_arrest_multiplier < 1.0 || arrest_max > 1.0
        {
            return bad(
                "arrest multipliers must be at least 1, and their product with the baseline at most 1",
            );
        }
        Ok(())
    }
}

/// Rows written per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub files: Vec<(String, PathBuf, u64)>,
}

impl SynthSummary {
    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|(_, _, n)| n).sum()
    }
}

/// A small, fast, deterministic generator (xoshiro256**, seeded by SplitMix64). For synthetic
/// data only: privacy noise always comes from OpenDP.
#[derive(Debug, Clone)]
pub struct SynthRng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SynthRng {
    /// The stream `stream` of seed `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD134_2543_DE82_EF95);
        Self {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

const TEAM_MODELS: [&str; 4] = [
    "police_led",
    "co_responder",
    "public_health_led",
    "peer_led",
];
const REGIONS: [&str; 6] = [
    "Western",
    "Central",
    "Northeast",
    "Metro Boston",
    "Southeast",
    "Cape and Islands",
];
const TOWNS: [&str; 24] = [
    "Ashford",
    "Brookvale",
    "Cedar Falls",
    "Dunmore",
    "Eastbridge",
    "Fairhaven Bay",
    "Glenwood",
    "Harborview",
    "Ironton",
    "Juniper Hill",
    "Kingsport",
    "Lakemont",
    "Millbrook",
    "Northfield",
    "Oakridge",
    "Pinecrest",
    "Quarry Point",
    "Riverton",
    "Stonefield",
    "Tidewater",
    "Upton Mills",
    "Valley Forge",
    "Westmere",
    "Yardley",
];

/// One synthetic program.
#[derive(Debug, Clone)]
struct Program {
    id: String,
    region: usize,
    team_model: usize,
    police_on_visits: &'static str,
    warrant_check: &'static str,
    start: NaiveDate,
    end: Option<NaiveDate>,
    weight: f64,
    peer_share: f64,
    clinician_share: f64,
}

impl Program {
    fn active(&self, d: NaiveDate) -> bool {
        d >= self.start && self.end.is_none_or(|e| d <= e)
    }
}

fn make_programs(cfg: &SynthConfig) -> Vec<Program> {
    let mut rng = SynthRng::new(cfg.seed, u64::MAX);
    let first = cfg.first_day();
    let span = (cfg.last_day() - first).num_days().max(1) as u64;
    (0..cfg.programs)
        .map(|i| {
            let team_model = rng.weighted(&[0.30, 0.35, 0.20, 0.15]);
            let (police_on_visits, warrant_check) = match team_model {
                0 => (
                    "always",
                    ["arrest_on_warrant", "situational", "checked_no_action"]
                        [rng.weighted(&[0.5, 0.3, 0.2])],
                ),
                1 => (
                    if rng.chance(0.6) {
                        "sometimes"
                    } else {
                        "always"
                    },
                    [
                        "checked_no_action",
                        "delay_until_cleared",
                        "situational",
                        "arrest_on_warrant",
                    ][rng.weighted(&[0.35, 0.3, 0.25, 0.1])],
                ),
                2 => (
                    if rng.chance(0.7) {
                        "never"
                    } else {
                        "sometimes"
                    },
                    if rng.chance(0.8) {
                        "none"
                    } else {
                        "checked_no_action"
                    },
                ),
                _ => ("never", "none"),
            };
            // Most programs predate the period; about one in seven starts during its first half.
            let start = if rng.chance(0.15) && i > 0 {
                first + Days::new(rng.below(span / 2 + 1))
            } else {
                first - Days::new(180 + rng.below(4 * 365))
            };
            // One program in twenty stops two quarters before the period ends.
            let end = (i % 20 == 19)
                .then(|| cfg.last_day() - Days::new(182))
                .filter(|e| *e > start + Days::new(90));
            let u = rng.unit();
            Program {
                id: format!("P{:03}", i + 1),
                region: i % REGIONS.len(),
                team_model,
                police_on_visits,
                warrant_check,
                start,
                end,
                weight: 0.4 + 2.6 * u * u,
                peer_share: [0.15, 0.25, 0.5, 1.0][team_model],
                clinician_share: [0.15, 0.5, 0.6, 0.2][team_model],
            }
        })
        .collect()
}

fn program_name(i: usize, p: &Program) -> String {
    let town = TOWNS[i % TOWNS.len()];
    let suffix = [
        "Police Outreach Team",
        "Co-Response Team",
        "Public Health Outreach",
        "Peer Outreach",
    ][p.team_model];
    if i < TOWNS.len() {
        format!("{town} {suffix}")
    } else {
        format!("{town} {suffix} {}", i / TOWNS.len() + 1)
    }
}

/// CSV text of one block of persons, per person table.
#[derive(Default)]
struct Block {
    events: String,
    attempts: String,
    referrals: String,
    linkages: String,
    arrests: String,
    rows: [u64; 5],
}

struct Generator<'a> {
    cfg: &'a SynthConfig,
    programs: &'a [Program],
    first: NaiveDate,
    last: NaiveDate,
    /// `YYYY-MM-DD` of each day from `first`, and 120 days beyond `last`.
    dates: Vec<String>,
}

const AGE_BANDS: [&str; 8] = [
    "under_18", "18_24", "25_34", "35_44", "45_54", "55_64", "65_plus", "unknown",
];
const AGE_W: [f64; 8] = [0.01, 0.08, 0.30, 0.28, 0.17, 0.11, 0.03, 0.02];
const SEXES: [&str; 4] = ["female", "male", "other", "unknown"];
const SEX_W: [f64; 4] = [0.28, 0.70, 0.005, 0.015];
const RACES: [&str; 8] = [
    "hispanic",
    "nh_white",
    "nh_black",
    "nh_asian",
    "nh_aian",
    "nh_nhpi",
    "nh_multi_other",
    "unknown",
];
const RACE_W: [f64; 8] = [0.15, 0.65, 0.12, 0.015, 0.005, 0.002, 0.02, 0.038];
const SOURCES: [&str; 5] = ["ems", "police", "fire", "hospital_ed", "other"];
const SOURCE_W: [f64; 5] = [0.55, 0.20, 0.10, 0.12, 0.03];
const METHODS: [&str; 6] = [
    "home_visit",
    "phone",
    "text",
    "mail_dropoff",
    "neutral_location",
    "other",
];
const METHOD_W: [f64; 6] = [0.60, 0.20, 0.08, 0.05, 0.05, 0.02];
const FAIL_OUTCOMES: [&str; 4] = ["no_answer", "not_found", "declined", "other"];
const FAIL_W: [f64; 4] = [0.45, 0.35, 0.15, 0.05];
const SERVICES: [&str; 9] = [
    "moud",
    "detox",
    "residential",
    "outpatient",
    "harm_reduction",
    "mental_health",
    "recovery_support",
    "housing",
    "other",
];
/// Weights of the services other than MOUD, which gets `moud_share_of_referrals`.
const OTHER_SERVICE_W: [f64; 8] = [0.18, 0.09, 0.15, 0.23, 0.12, 0.09, 0.08, 0.06];
const AGENCIES: [&str; 4] = ["municipal_police", "state_police", "sheriff", "other"];
const AGENCY_W: [f64; 4] = [0.70, 0.15, 0.10, 0.05];
const CHARGES: [&str; 7] = [
    "drug_possession",
    "drug_sale",
    "outstanding_warrant",
    "property",
    "violent",
    "public_order",
    "other",
];
const CHARGE_W: [f64; 7] = [0.30, 0.08, 0.15, 0.20, 0.07, 0.15, 0.05];

fn b(x: bool) -> &'static str {
    if x { "true" } else { "false" }
}

impl<'a> Generator<'a> {
    fn new(cfg: &'a SynthConfig, programs: &'a [Program]) -> Self {
        let first = cfg.first_day();
        let last = cfg.last_day();
        let n = (last - first).num_days() + 121;
        let dates = (0..n)
            .map(|i| (first + Days::new(i as u64)).format("%Y-%m-%d").to_string())
            .collect();
        Self {
            cfg,
            programs,
            first,
            last,
            dates,
        }
    }

    fn date(&self, d: NaiveDate) -> &str {
        &self.dates[(d - self.first).num_days() as usize]
    }

    fn pick_program(
        &self,
        rng: &mut SynthRng,
        d: NaiveDate,
        region: Option<usize>,
    ) -> Option<usize> {
        let w: Vec<f64> = self
            .programs
            .iter()
            .map(|p| {
                if !p.active(d) {
                    0.0
                } else if region.is_some_and(|r| r != p.region) {
                    p.weight * 0.1
                } else {
                    p.weight
                }
            })
            .collect();
        (w.iter().sum::<f64>() > 0.0).then(|| rng.weighted(&w))
    }

    fn person(&self, idx: u64, out: &mut Block) {
        let cfg = self.cfg;
        let p = &cfg.params;
        let mut rng = SynthRng::new(cfg.seed, idx);
        let key = {
            let mut x = cfg.seed ^ 0x5EED_0000_0000_0000 ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            splitmix(&mut x)
        };
        let span = (self.last - self.first).num_days() as u64 + 1;
        let age = AGE_BANDS[rng.weighted(&AGE_W)];
        let sex = SEXES[rng.weighted(&SEX_W)];
        let race = RACES[rng.weighted(&RACE_W)];
        let mut date = self.first + Days::new(rng.below(span));
        let Some(home) = self.pick_program(&mut rng, date, None) else {
            return;
        };
        let second = rng
            .chance(p.second_program_share)
            .then(|| self.pick_program(&mut rng, date, Some(self.programs[home].region)))
            .flatten()
            .filter(|s| *s != home);
        let pk = format!("pk{key:016x}");
        let mut fatal = rng.chance(p.fatal_index_share);
        let mut program = home;
        let mut seq = 0u32;
        let mut attempt_seq = 0u32;
        let mut referral_seq = 0u32;
        let mut arrest_seq = 0u32;
        loop {
            seq += 1;
            let event_id = format!("OD{idx:07}{seq:02}");
            let prog = &self.programs[program];
            let naloxone = !fatal && rng.chance(0.8) || fatal && rng.chance(0.3);
            let transported = !fatal && rng.chance(0.6);
            let _ = writeln!(
                out.events,
                "{event_id},{pk},{},{},{},{},{},{},{age},{sex},{race}",
                prog.id,
                self.date(date),
                SOURCES[rng.weighted(&SOURCE_W)],
                b(fatal),
                b(naloxone),
                b(transported),
            );
            out.rows[0] += 1;
            if !fatal && rng.chance(p.attempt_share) {
                self.episode(
                    &mut rng,
                    idx,
                    &pk,
                    &event_id,
                    program,
                    date,
                    &mut attempt_seq,
                    &mut referral_seq,
                    &mut arrest_seq,
                    out,
                );
            }
            if fatal || seq >= 20 || !rng.chance(p.repeat_overdose_rate) {
                break;
            }
            date = date + Days::new(14 + rng.exponential(150.0) as u64);
            if date > self.last {
                break;
            }
            fatal = rng.chance(p.fatal_repeat_share);
            let wanted = match second {
                Some(s) if rng.chance(0.5) => s,
                _ => home,
            };
            program = if self.programs[wanted].active(date) {
                wanted
            } else {
                match self.pick_program(&mut rng, date, Some(self.programs[home].region)) {
                    Some(x) => x,
                    None => break,
                }
            };
        }
        // Arrests that have nothing to do with outreach, at the baseline rate.
        let mut t = rng.exponential(90.0 / p.baseline_arrest_rate_90d.max(1e-9));
        while (t as u64) < span {
            let d = self.first + Days::new(t as u64);
            arrest_seq += 1;
            let _ = writeln!(
                out.arrests,
                "AR{idx:07}{arrest_seq:02},{pk},{},{},{}",
                self.date(d),
                AGENCIES[rng.weighted(&AGENCY_W)],
                CHARGES[rng.weighted(&CHARGE_W)],
            );
            out.rows[4] += 1;
            t += rng.exponential(90.0 / p.baseline_arrest_rate_90d.max(1e-9));
        }
    }

    /// One outreach episode after a non-fatal overdose: attempts, maybe engagement, referrals,
    /// linkages, and the extra arrests that police presence brings.
    #[allow(clippy::too_many_arguments)]
    fn episode(
        &self,
        rng: &mut SynthRng,
        idx: u64,
        pk: &str,
        event_id: &str,
        program: usize,
        event_date: NaiveDate,
        attempt_seq: &mut u32,
        referral_seq: &mut u32,
        arrest_seq: &mut u32,
        out: &mut Block,
    ) {
        let p = &self.cfg.params;
        let prog = &self.programs[program];
        let police = match prog.police_on_visits {
            "always" => true,
            "sometimes" => rng.chance(0.5),
            _ => false,
        };
        let delay = if rng.chance(p.contact_within_72h) {
            1 + rng.below(3)
        } else {
            4 + rng.exponential(6.0) as u64
        };
        let engage_p = p.engagement_rate
            - if police {
                p.police_engagement_penalty
            } else {
                0.0
            };
        let engaged = rng.chance(engage_p);
        let attempts = 1 + rng.below(3);
        let mut d = event_date + Days::new(delay);
        let first_attempt = d;
        let mut engaged_on: Option<(NaiveDate, String)> = None;
        for a in 0..attempts {
            if d > self.last {
                break;
            }
            *attempt_seq += 1;
            let attempt_id = format!("OA{idx:07}{:02}", *attempt_seq);
            let success = engaged && a + 1 == attempts;
            let outcome = if success {
                if rng.chance(0.85) {
                    "engaged_survivor"
                } else {
                    "engaged_network"
                }
            } else {
                FAIL_OUTCOMES[rng.weighted(&FAIL_W)]
            };
            let method = METHODS[rng.weighted(&METHOD_W)];
            let leave_behind = matches!(method, "home_visit" | "mail_dropoff");
            let naloxone = if success {
                rng.chance(0.75)
            } else {
                leave_behind && rng.chance(0.25)
            };
            let strips = if success {
                rng.chance(0.35)
            } else {
                rng.chance(0.03)
            };
            let _ = writeln!(
                out.attempts,
                "{attempt_id},{pk},{},{},{},{method},{outcome},{},{},{},{},{}",
                prog.id,
                if rng.chance(0.9) { event_id } else { "" },
                self.date(d),
                b(police && (a == 0 || rng.chance(0.8))),
                b(rng.chance(prog.peer_share)),
                b(rng.chance(prog.clinician_share)),
                b(naloxone),
                b(strips),
            );
            out.rows[1] += 1;
            if success {
                engaged_on = Some((d, attempt_id));
            }
            d = d + Days::new(1 + rng.below(7));
        }
        if let Some((when, attempt_id)) = engaged_on
            && rng.chance(p.referral_given_engaged)
        {
            let n = if rng.chance(0.3) { 2 } else { 1 };
            let mut service_w = [0.0; 9];
            service_w[0] = p.moud_share_of_referrals;
            for (w, o) in service_w[1..].iter_mut().zip(OTHER_SERVICE_W) {
                *w = o * (1.0 - p.moud_share_of_referrals);
            }
            for _ in 0..n {
                let rd = when + Days::new(rng.below(3));
                if rd > self.last {
                    continue;
                }
                *referral_seq += 1;
                let referral_id = format!("RF{idx:07}{:02}", *referral_seq);
                let service = SERVICES[rng.weighted(&service_w)];
                let _ = writeln!(
                    out.referrals,
                    "{referral_id},{pk},{},{},{},{service}",
                    prog.id,
                    if rng.chance(0.85) {
                        attempt_id.as_str()
                    } else {
                        ""
                    },
                    self.date(rd),
                );
                out.rows[2] += 1;
                if rng.chance(p.linkage_given_referral) {
                    let ld = rd + Days::new(1 + rng.exponential(7.0) as u64);
                    if ld <= self.last {
                        let _ = writeln!(
                            out.linkages,
                            "LK{idx:07}{:02},{pk},{},{},{service},{}",
                            *referral_seq,
                            prog.id,
                            if rng.chance(0.9) {
                                referral_id.as_str()
                            } else {
                                ""
                            },
                            self.date(ld),
                        );
                        out.rows[3] += 1;
                    }
                }
            }
        }
        // Police at the first attempt raises the arrest hazard for 90 days, more so in
        // programs that arrest on warrants.
        if police {
            let warrant = prog.warrant_check == "arrest_on_warrant";
            let factor = p.police_arrest_multiplier
                * if warrant {
                    p.warrant_arrest_multiplier
                } else {
                    1.0
                };
            if rng.chance(p.baseline_arrest_rate_90d * (factor - 1.0)) {
                let ad = first_attempt + Days::new(rng.below(90));
                if ad <= self.last {
                    *arrest_seq += 1;
                    let charge = if warrant && rng.chance(0.6) {
                        "outstanding_warrant"
                    } else {
                        CHARGES[rng.weighted(&CHARGE_W)]
                    };
                    let _ = writeln!(
                        out.arrests,
                        "AR{idx:07}{:02},{pk},{},{},{charge}",
                        *arrest_seq,
                        self.date(ad),
                        AGENCIES[rng.weighted(&AGENCY_W)],
                    );
                    out.rows[4] += 1;
                }
            }
        }
    }
}

/// Persons per block handed to a worker.
const BLOCK: u64 = 5_000;

/// Writes the synthetic exports into `out`, one `<table>.csv` per table.
pub fn synth(out: &Path, cfg: &SynthConfig, progress: bool) -> Result<SynthSummary, SynthError> {
    cfg.check()?;
    let dict = Dictionary::builtin().map_err(SynthError::Dictionary)?;
    std::fs::create_dir_all(out).map_err(|source| SynthError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let programs = make_programs(cfg);
    let header = |t: &str| -> String {
        let table = dict.table(t).expect("dictionary table");
        let mut h = table.column_names().collect::<Vec<_>>().join(",");
        h.push('\n');
        h
    };

    // programs.csv
    let mut text = header("programs");
    for (i, p) in programs.iter().enumerate() {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{},{}",
            p.id,
            crate::csv_out::field(&program_name(i, p)),
            REGIONS[p.region],
            TEAM_MODELS[p.team_model],
            p.police_on_visits,
            p.warrant_check,
            p.start.format("%Y-%m-%d"),
            p.end
                .map(|e| e.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        );
    }
    let programs_path = out.join("programs.csv");
    write_file(&programs_path, text.as_bytes())?;

    let names = [
        "overdose_events",
        "outreach_attempts",
        "referrals",
        "service_linkages",
        "arrests",
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| out.join(format!("{n}.csv"))).collect();
    let mut writers = Vec::new();
    for (n, path) in names.iter().zip(&paths) {
        let f = File::create(path).map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(header(n).as_bytes())
            .map_err(|source| SynthError::Io {
                path: path.clone(),
                source,
            })?;
        writers.push(w);
    }

    let generator = Generator::new(cfg, &programs);
    let blocks = (cfg.persons as u64).div_ceil(BLOCK);
    let pb = if progress {
        let pb = ProgressBar::new(cfg.persons as u64);
        pb.set_style(
            ProgressStyle::with_template("synthesising [{bar:30}] {pos}/{len} persons, eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8) as u64;
    let mut rows = [0u64; 5];
    let result: Result<(), SynthError> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(u64, Block)>(workers as usize * 2);
        for w in 0..workers {
            let tx = tx.clone();
            let generator = &generator;
            scope.spawn(move || {
                let mut blk = w;
                while blk < blocks {
                    let mut block = Block::default();
                    let end = ((blk + 1) * BLOCK).min(cfg.persons as u64);
                    for idx in blk * BLOCK..end {
                        generator.person(idx, &mut block);
                    }
                    if tx.send((blk, block)).is_err() {
                        return;
                    }
                    blk += workers;
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0u64;
        for (i, block) in rx {
            pending.insert(i, block);
            while let Some(block) = pending.remove(&next) {
                let texts = [
                    &block.events,
                    &block.attempts,
                    &block.referrals,
                    &block.linkages,
                    &block.arrests,
                ];
                for ((w, t), path) in writers.iter_mut().zip(texts).zip(&paths) {
                    w.write_all(t.as_bytes()).map_err(|source| SynthError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
                for (r, n) in rows.iter_mut().zip(block.rows) {
                    *r += n;
                }
                pb.inc(((next + 1) * BLOCK).min(cfg.persons as u64) - next * BLOCK);
                next += 1;
            }
        }
        Ok(())
    });
    result?;
    pb.finish_and_clear();
    for (w, path) in writers.into_iter().zip(&paths) {
        let f = w.into_inner().map_err(|e| SynthError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let mut files = vec![("programs".to_string(), programs_path, programs.len() as u64)];
    for ((n, path), r) in names.iter().zip(paths).zip(rows) {
        files.push((n.to_string(), path, r));
    }
    Ok(SynthSummary { files })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    std::fs::write(path, bytes).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let mut a = SynthRng::new(7, 3);
        let mut b = SynthRng::new(7, 3);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SynthRng::new(7, 4).next_u64(), xs[0]);
        let mut r = SynthRng::new(1, 1);
        let n = 100_000;
        let hits = (0..n).filter(|_| r.chance(0.3)).count() as f64 / n as f64;
        // sd = sqrt(.3*.7/1e5) = 0.00145; 6 sd.
        assert!((hits - 0.3).abs() < 0.009, "{hits}");
        let mean = (0..n).map(|_| r.exponential(5.0)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.1, "{mean}");
        assert!((0..1000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn rejects_bad_settings() {
        let mut c = SynthConfig::default();
        c.params.engagement_rate = 1.5;
        assert!(
            matches!(synth(Path::new("/nonexistent/x"), &c, false), Err(SynthError::Invalid(m)) if m.contains("engagement_rate"))
        );
        let c = SynthConfig {
            persons: 0,
            ..SynthConfig::default()
        };
        assert!(matches!(c.check(), Err(SynthError::Invalid(m)) if m.contains("--persons")));
    }
}
