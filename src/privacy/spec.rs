//! The release specification: one schema for the declarations beside the query files, the
//! CLI's flags and, later, researchers' requests.
//!
//! A spec describes one joint release: person-level queries, the cell keys with their public
//! domains, the statistics with their bounds, exclusive groups, `k`, and either the budget
//! ρ or per-statistic noise scales, and the allocation it is debited from. Written as TOML
//! (or JSON):
//!
//! ```toml
//! name = "persons seen per program and quarter"
//! k = 4
//! rho = 0.05
//! allocation = "standard-releases"
//!
//! [[queries]]
//! file = "reach.sql"
//!
//! [[cells]]
//! column = "program_id"
//! domain = "programs"
//!
//! [[cells]]
//! column = "quarter"
//! domain = { quarters = { from = "2024Q3", to = "2026Q2" } }
//!
//! [[statistics]]
//! name = "persons"
//! kind = "count"
//! ```
//!
//! A cell key without a public domain is declared `domain = "private"`: its values come from
//! the data, and a cell is published only when its noisy count clears a threshold that
//! OpenDP's threshold measurement sets for the spec's `delta` (private partition selection,
//! privacy model §1). Such a release has one private key and one count statistic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{PrivacyError, Result};
use crate::dictionary::{ColumnType, Dictionary};
use crate::quarter::Quarter;

/// One joint release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// What the release is, for people.
    pub name: String,
    /// Person-level queries; their rows are bounded together, as one release.
    pub queries: Vec<QuerySpec>,
    /// The cell keys, in order, each with its public domain.
    pub cells: Vec<CellSpec>,
    /// The statistics released for every cell.
    pub statistics: Vec<StatisticSpec>,
    /// Groups of 0/1 statistics of which a person is on at most one side, such as police
    /// present and absent. The engine makes them one-hot before noise: a person on several
    /// sides is put on the first one listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusive: Vec<Vec<String>>,
    /// The most cells one person may touch in the whole release.
    pub k: u32,
    /// The zCDP budget ρ for the release. Give this or `scales`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// Noise scale per statistic: σ for discrete Gaussian, b for discrete Laplace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scales: BTreeMap<String, f64>,
    /// The named allocation of the budget to debit.
    pub allocation: String,
    /// Ratios computed from the noisy statistics (post-processing, no extra cost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<RatioSpec>,
    /// The δ that private partition selection may spend: required with a `private` cell
    /// domain, refused without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

/// One person-level query: a file under `queries/` or inline SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// A cell key: an output column of every query, and its public domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    pub column: String,
    pub domain: DomainSpec,
}

/// Where a cell key's public domain comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainSpec {
    /// Every `program_id` of the public `programs` table.
    Programs,
    /// The values of a dictionary column, `table.column`: an enum's values, or `false` and
    /// `true` for a boolean.
    Dictionary(String),
    /// Every quarter from `from` to `to`, inclusive, written like `2025Q1`.
    Quarters { from: String, to: String },
    /// A list of values written in the spec: public because the spec declares it, never
    /// because it occurs in the data (a breakdown's dimension names, say).
    Values(Vec<String>),
    /// No public domain: the values come from the data and each cell is published only when
    /// its noisy count clears the threshold of private partition selection.
    Private,
}

/// The kind of a statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatisticKind {
    /// The number of persons whose 0/1 flag is 1 in the cell (B = 1).
    Count,
    /// The sum over persons of a value clamped to [lower, upper] (B = max(|lower|, |upper|)).
    Sum,
}

/// One statistic: an output column of every query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticSpec {
    pub name: String,
    /// The query column; defaults to `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub kind: StatisticKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<i64>,
}

/// A ratio of two statistics per cell, such as engaged / attempted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioSpec {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
}

/// Most cells a release may have; beyond this the noise would drown every cell anyway.
pub const MAX_CELLS: usize = 1_000_000;

/// The longest text of one query, in bytes: 64 KiB, the API's own body limit, eight times the
/// longest standard query (`outreach.sql`, 7.6 KB). Refused before the SQL is parsed. It also
/// bounds what the optimiser can fold: no function left on the allow-list makes its output
/// more than a small constant factor of its arguments
/// ([`super::functions::SIZE_GROWTH_FUNCTIONS`]), so no constant can outgrow the SQL.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// The most queries one release may join: 16. Each is parsed, planned and optimised before
/// the debit and read in one union after it; the standard releases have two (and one).
pub const MAX_QUERIES: usize = 16;

/// The most values a release may publish: cells × statistics, 500,000. The bounder's exact
/// vector is one `i64` per value on each thread that sums shards, every value gets its own
/// noise draw, and the result (four integers and an interval per value) is stored as JSON in
/// the ledger and served whole: at 500,000 values that is about 4 MB per vector and 35 MB of
/// JSON. The largest standard release, the equity breakdowns at the synthetic generator's
/// 999 programs, has 161,838. Checked before planning, so before any debit. A private key's
/// cells come from the data and are not counted here (there is one statistic, and only
/// cells some kept row touched are held).
pub const MAX_RELEASE_VALUES: usize = 500_000;

/// The largest `k` a release may declare. The bounder keeps up to `k` cells per person in a
/// fixed-size record of `5 + 2k + k·m` words, allocated after the debit for every person, so
/// its memory grows with `k` (and the noise grows with √k): at k = 1024 a million persons
/// needed about 25 GB, and running out of memory after the debit spends the budget for
/// nothing. Useful releases have k in the tens.
pub const MAX_K: u32 = 64;

/// The largest per-person record of the bounder, in bytes: with [`MAX_K`] this bounds the
/// bounder's memory at about 4 KiB per person (4 GB for a million persons). A spec whose
/// `k` and number of statistics `m` need more (`8 · (5 + 2k + k·m)` bytes) is refused.
pub const MAX_RECORD_BYTES: usize = 4096;

impl ReleaseSpec {
    /// Reads a spec from a `.toml` or `.json` file. Query files are relative to the spec.
    pub fn from_file(path: &Path) -> Result<ReleaseSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| PrivacyError::Spec {
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let mut spec: ReleaseSpec = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| PrivacyError::Spec {
                message: format!("{}: {e}", path.display()),
            })?
        } else {
            toml::from_str(&text).map_err(|e| PrivacyError::Spec {
                message: format!("{}: {e}", path.display()),
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for q in &mut spec.queries {
            if let Some(f) = &q.file
                && f.is_relative()
            {
                q.file = Some(base.join(f));
            }
        }
        Ok(spec)
    }
}

/// A statistic after checking: its column and bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistic {
    pub name: String,
    pub column: String,
    pub kind: StatisticKind,
    pub lower: i64,
    pub upper: i64,
}

impl Statistic {
    /// B_j: the most one person can change this statistic in one cell.
    pub fn bound(&self) -> i64 {
        self.lower.unsigned_abs().max(self.upper.unsigned_abs()) as i64
    }
}

/// A query after reading: its text and SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub source: String,
    pub sql: String,
    pub sha256: String,
}

/// A cell key with its domain values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    pub column: String,
    /// The public domain; empty for a private key until bounding discovers its values.
    pub values: Vec<String>,
    /// A key without a public domain (private partition selection).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// Whether the release path filters rows by the domain in the plan, where DataFusion can
    /// push the filter below joins and scans: set for a span of quarters (cleared again by
    /// the release when the span holds every quarter of the data) and for a list written in
    /// the spec. Every program, or every value of a dictionary column, is already every value
    /// a stored row can hold: a filter by it cost a look-up per row and removed nothing.
    ///
    /// Only a matter of speed: the bounder drops rows outside the domain either way. So it is
    /// no part of what identifies a release, and is not stored.
    #[serde(skip)]
    pub filter_in_plan: bool,
}

/// A spec checked against the dictionary and the public tables: everything the engine needs
/// except the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedSpec {
    pub name: String,
    pub queries: Vec<Query>,
    pub cells: Vec<CellKey>,
    pub statistics: Vec<Statistic>,
    /// Exclusive groups as indices into `statistics`.
    pub exclusive: Vec<Vec<usize>>,
    pub k: u32,
    pub rho: Option<f64>,
    /// Per-statistic scales, in the order of `statistics`, when the spec gives them.
    pub scales: Option<Vec<f64>>,
    pub allocation: String,
    pub ratios: Vec<(String, usize, usize)>,
    /// The δ target of private partition selection; set exactly when a cell is private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

impl CheckedSpec {
    /// The number of cells of the public domains: the product of their sizes. A private key
    /// multiplies this by the number of values that bounding discovers.
    pub fn n_cells(&self) -> usize {
        public_cells(&self.cells)
    }

    /// The index of the private cell key, if the release has one.
    pub fn private_cell(&self) -> Option<usize> {
        private_cell(&self.cells)
    }
}

/// The number of cells of the public keys among `cells`: the product of their domains.
pub fn public_cells(cells: &[CellKey]) -> usize {
    cells
        .iter()
        .filter(|c| !c.private)
        .map(|c| c.values.len())
        .product()
}

/// The index of the private key among `cells`, if any.
pub fn private_cell(cells: &[CellKey]) -> Option<usize> {
    cells.iter().position(|c| c.private)
}

/// The most a private partition selection may spend in δ.
pub const MAX_PARTITION_DELTA: f64 = 1e-2;

fn spec_err(message: impl Into<String>) -> PrivacyError {
    PrivacyError::Spec {
        message: message.into(),
    }
}

/// The refusal of a query longer than [`MAX_SQL_BYTES`].
fn sql_too_long(source: &str, bytes: u64) -> PrivacyError {
    spec_err(format!(
        "{source}: the SQL is {bytes} bytes, more than the {MAX_SQL_BYTES} bytes (64 KiB) a query may have"
    ))
}

/// A query file's text, refused unread when it is longer than [`MAX_SQL_BYTES`].
fn read_query_file(f: &Path) -> Result<String> {
    let unreadable = |e: std::io::Error| spec_err(format!("query file {}: {e}", f.display()));
    let bytes = std::fs::metadata(f).map_err(unreadable)?.len();
    if bytes > MAX_SQL_BYTES as u64 {
        return Err(sql_too_long(&f.display().to_string(), bytes));
    }
    std::fs::read_to_string(f).map_err(unreadable)
}

/// Checks a spec and resolves its domains. `program_ids` is the public `programs` table.
/// Everything here runs before any query is parsed: the limits on the number of queries
/// ([`MAX_QUERIES`]), their length ([`MAX_SQL_BYTES`]) and the values published
/// ([`MAX_RELEASE_VALUES`]) refuse a spec before it costs any planning.
pub fn check(spec: &ReleaseSpec, dict: &Dictionary, program_ids: &[String]) -> Result<CheckedSpec> {
    if spec.name.trim().is_empty() {
        return Err(spec_err("the spec needs a `name`"));
    }
    if spec.queries.is_empty() {
        return Err(spec_err("the spec needs at least one query"));
    }
    if spec.queries.len() > MAX_QUERIES {
        return Err(spec_err(format!(
            "the spec has {} queries, more than the {MAX_QUERIES} one release may join: split it into several releases",
            spec.queries.len()
        )));
    }
    let mut queries = Vec::new();
    for (i, q) in spec.queries.iter().enumerate() {
        let (source, sql) = match (&q.file, &q.sql) {
            (Some(f), None) => (f.display().to_string(), read_query_file(f)?),
            (None, Some(sql)) => (format!("query {}", i + 1), sql.clone()),
            _ => {
                return Err(spec_err(format!(
                    "query {} needs exactly one of `file` and `sql`",
                    i + 1
                )));
            }
        };
        if sql.len() > MAX_SQL_BYTES {
            return Err(sql_too_long(&source, sql.len() as u64));
        }
        let sha256 = crate::warehouse::hex(&sha2::Sha256::digest(sql.as_bytes()));
        queries.push(Query {
            source,
            sql,
            sha256,
        });
    }
    if spec.k == 0 {
        return Err(spec_err("`k` must be at least 1"));
    }
    if spec.k > MAX_K {
        return Err(spec_err(format!(
            "`k` = {} is above the most the engine supports, {MAX_K}: a person's cells beyond a few dozen only add noise; lower `k`",
            spec.k
        )));
    }
    if spec.cells.is_empty() {
        return Err(spec_err("the spec needs at least one cell key"));
    }
    let mut cells = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &spec.cells {
        if !seen.insert(c.column.as_str()) || c.column == "person_key" {
            return Err(spec_err(format!(
                "cell key `{}` is repeated or reserved",
                c.column
            )));
        }
        let values = match &c.domain {
            DomainSpec::Private => Vec::new(),
            DomainSpec::Programs => program_ids.to_vec(),
            DomainSpec::Dictionary(name) => {
                let (t, col) = name.split_once('.').ok_or_else(|| {
                    spec_err(format!(
                        "unknown cell domain `{name}` for `{}`: write it as table.column",
                        c.column
                    ))
                })?;
                let column = dict.table(t).and_then(|t| t.column(col)).ok_or_else(|| {
                    spec_err(format!(
                        "unknown cell domain `{name}`: no such dictionary column"
                    ))
                })?;
                match column.ty {
                    ColumnType::Enum => column.values.clone(),
                    ColumnType::Bool => vec!["false".into(), "true".into()],
                    _ => {
                        return Err(spec_err(format!(
                            "cell domain `{name}` is not public: only enum and boolean dictionary columns have public values; declare the key `domain = \"private\"` for private partition selection"
                        )));
                    }
                }
            }
            DomainSpec::Quarters { from, to } => {
                let from: Quarter = from
                    .parse()
                    .map_err(|e| spec_err(format!("cell `{}`: {e}", c.column)))?;
                let to: Quarter = to
                    .parse()
                    .map_err(|e| spec_err(format!("cell `{}`: {e}", c.column)))?;
                if to < from {
                    return Err(spec_err(format!(
                        "cell `{}`: quarters run backwards",
                        c.column
                    )));
                }
                let n = (to.year() - from.year()) * 4 + i32::from(to.number())
                    - i32::from(from.number())
                    + 1;
                if n > 400 {
                    return Err(spec_err(format!(
                        "cell `{}`: more than 400 quarters",
                        c.column
                    )));
                }
                from.range(n as u32).iter().map(|q| q.to_string()).collect()
            }
            DomainSpec::Values(list) => {
                let mut unique = BTreeSet::new();
                for v in list {
                    if v.is_empty() || v.len() > 256 || !unique.insert(v.as_str()) {
                        return Err(spec_err(format!(
                            "cell `{}`: value {v:?} is empty, longer than 256 bytes or repeated",
                            c.column
                        )));
                    }
                }
                list.clone()
            }
        };
        let private = c.domain == DomainSpec::Private;
        if values.is_empty() && !private {
            return Err(spec_err(format!(
                "cell key `{}` has an empty domain",
                c.column
            )));
        }
        cells.push(CellKey {
            column: c.column.clone(),
            values,
            private,
            filter_in_plan: matches!(
                c.domain,
                DomainSpec::Quarters { .. } | DomainSpec::Values(_)
            ),
        });
    }
    cells
        .iter()
        .filter(|c| !c.private)
        .try_fold(1usize, |n, c| n.checked_mul(c.values.len()))
        .filter(|n| *n <= MAX_CELLS)
        .ok_or_else(|| spec_err(format!("more than {MAX_CELLS} cells")))?;

    if spec.statistics.is_empty() {
        return Err(spec_err("the spec needs at least one statistic"));
    }
    let mut statistics = Vec::new();
    for s in &spec.statistics {
        let column = s.column.clone().unwrap_or_else(|| s.name.clone());
        if seen.contains(column.as_str()) || column == "person_key" {
            return Err(spec_err(format!(
                "statistic column `{column}` is also a cell key or person_key"
            )));
        }
        if statistics.iter().any(|x: &Statistic| x.name == s.name) {
            return Err(spec_err(format!("statistic `{}` is repeated", s.name)));
        }
        let (lower, upper) = match s.kind {
            StatisticKind::Count => {
                if s.lower.is_some() || s.upper.is_some() {
                    return Err(spec_err(format!(
                        "statistic `{}` is a count of 0/1 flags: it takes no bounds",
                        s.name
                    )));
                }
                (0, 1)
            }
            StatisticKind::Sum => match (s.lower, s.upper) {
                (Some(l), Some(u)) if l <= u => (l, u),
                (Some(_), Some(_)) => {
                    return Err(spec_err(format!("statistic `{}`: lower > upper", s.name)));
                }
                _ => {
                    return Err(spec_err(format!(
                        "missing bounds: the sum `{}` needs both `lower` and `upper`",
                        s.name
                    )));
                }
            },
        };
        if lower.unsigned_abs().max(upper.unsigned_abs()) > 1 << 40 {
            return Err(spec_err(format!(
                "statistic `{}`: bounds beyond ±2^40 are not supported",
                s.name
            )));
        }
        statistics.push(Statistic {
            name: s.name.clone(),
            column,
            kind: s.kind,
            lower,
            upper,
        });
    }
    let cells_n = public_cells(&cells);
    let values = cells_n.saturating_mul(statistics.len());
    if values > MAX_RELEASE_VALUES {
        return Err(spec_err(format!(
            "{cells_n} cells × {} statistics is {values} values, more than the {MAX_RELEASE_VALUES} one release may publish: narrow the domains, or split the statistics into several releases",
            statistics.len()
        )));
    }
    let record = 8 * super::bounding::record_words(spec.k as usize, statistics.len());
    if record > MAX_RECORD_BYTES {
        return Err(spec_err(format!(
            "`k` = {} with {} statistics needs {record} bytes per person in the bounder, over its limit of {MAX_RECORD_BYTES} bytes (8 · (5 + 2k + k·m)): lower `k`, or split the statistics into several releases",
            spec.k,
            statistics.len()
        )));
    }
    let index = |name: &str| {
        statistics
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| spec_err(format!("unknown statistic `{name}`")))
    };
    let mut exclusive = Vec::new();
    let mut grouped = BTreeSet::new();
    for group in &spec.exclusive {
        if group.len() < 2 {
            return Err(spec_err("an exclusive group needs at least two statistics"));
        }
        let mut g = Vec::new();
        for name in group {
            let i = index(name)?;
            if statistics[i].kind != StatisticKind::Count {
                return Err(spec_err(format!(
                    "exclusive group member `{name}` must be a count of 0/1 flags"
                )));
            }
            if !grouped.insert(i) {
                return Err(spec_err(format!(
                    "`{name}` is in more than one exclusive group"
                )));
            }
            g.push(i);
        }
        exclusive.push(g);
    }
    let scales = if spec.scales.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for s in &statistics {
            let scale = spec.scales.get(&s.name).ok_or_else(|| {
                spec_err(format!(
                    "`scales` gives no scale for statistic `{}`",
                    s.name
                ))
            })?;
            if !scale.is_finite() || *scale <= 0.0 {
                return Err(spec_err(format!("scale for `{}` must be positive", s.name)));
            }
            v.push(*scale);
        }
        if let Some(extra) = spec.scales.keys().find(|k| index(k).is_err()) {
            return Err(spec_err(format!(
                "`scales` names unknown statistic `{extra}`"
            )));
        }
        for g in &exclusive {
            if g.iter().any(|&i| v[i] != v[g[0]]) {
                return Err(spec_err(
                    "statistics of one exclusive group must share one noise scale",
                ));
            }
        }
        Some(v)
    };
    match spec.rho {
        None if scales.is_none() => {
            return Err(spec_err(
                "the spec needs the budget `rho` or per-statistic `scales`",
            ));
        }
        Some(r) if !(r.is_finite() && r > 0.0) => {
            return Err(spec_err("`rho` must be a positive number"));
        }
        _ => {}
    }
    if spec.allocation.trim().is_empty() {
        return Err(spec_err("the spec needs the `allocation` to debit"));
    }
    let mut ratios = Vec::new();
    for r in &spec.ratios {
        ratios.push((r.name.clone(), index(&r.numerator)?, index(&r.denominator)?));
    }
    let private: Vec<&str> = cells
        .iter()
        .filter(|c| c.private)
        .map(|c| c.column.as_str())
        .collect();
    let delta = match (private.as_slice(), spec.delta) {
        ([], None) => None,
        ([], Some(_)) => {
            return Err(spec_err(
                "`delta` is spent only by private partition selection: no cell key is private",
            ));
        }
        ([_], None) => {
            return Err(spec_err(format!(
                "cell key `{}` is private: give the `delta` its partition selection may spend (at most {MAX_PARTITION_DELTA:e})",
                private[0]
            )));
        }
        ([column], Some(d)) => {
            if !(d.is_finite() && d > 0.0 && d <= MAX_PARTITION_DELTA) {
                return Err(spec_err(format!(
                    "`delta` must be in (0, {MAX_PARTITION_DELTA:e}]"
                )));
            }
            if statistics.len() != 1 || statistics[0].kind != StatisticKind::Count {
                return Err(spec_err(format!(
                    "cell key `{column}` is private: the release must have exactly one statistic, a count, whose noisy value decides which cells are published"
                )));
            }
            if !ratios.is_empty() {
                return Err(spec_err(
                    "a release with a private cell key has one statistic, so no ratios",
                ));
            }
            Some(d)
        }
        (many, _) => {
            return Err(spec_err(format!(
                "at most one cell key may be private; {} are: {}",
                many.len(),
                many.join(", ")
            )));
        }
    };
    Ok(CheckedSpec {
        name: spec.name.clone(),
        queries,
        cells,
        statistics,
        exclusive,
        k: spec.k,
        rho: spec.rho,
        scales,
        allocation: spec.allocation.clone(),
        ratios,
        delta,
    })
}
