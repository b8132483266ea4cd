//! The standard evaluation metrics: person-level SQL files under `queries/standard/`, each
//! opening with a TOML block comment that declares what it measures.
//!
//! - [`Catalog`]: the metric files, parsed and checked; [`Catalog::standard`] is the set
//!   compiled into the binary, so `publish` and the demo never depend on the working folder.
//! - [`exact`]: the steward's exact mode, which validates the SQL on known data and never
//!   feeds a release.
//! - [`docs`]: `queries/README.md`, generated from the catalog for non-programmers.
//!
//! A metric file declares its name, title and description, the tables it reads, its
//! statistics (0/1 counts of persons, each with its window in days after the index overdose
//! and, where it differs, its own tables), the rates that are post-processing of those
//! counts (numerator ÷ denominator, in the file's statistic names), and rate differences.
//! The joint releases that combine the files are declared once, by the `publication`
//! stage that follows this one, in the engine's one spec format; nothing here publishes.

pub mod docs;
pub mod exact;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fault::Fault;

/// Errors of the metric catalog and the steward's exact mode.
#[derive(Debug, thiserror::Error)]
pub enum QueriesError {
    #[error("{file}: {message}")]
    Declaration { file: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Run { file: String, message: String },
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    #[error(transparent)]
    Warehouse(#[from] crate::warehouse::WarehouseError),
}

impl QueriesError {
    pub fn fault(&self) -> Fault {
        match self {
            QueriesError::Declaration { .. } => Fault::BadInput,
            QueriesError::Read { .. } | QueriesError::Run { .. } => Fault::Internal,
            QueriesError::Privacy(e) => e.fault(),
            QueriesError::Warehouse(e) => e.fault(),
        }
    }
}

pub type Result<T, E = QueriesError> = std::result::Result<T, E>;

/// The standard metric files, compiled in: (file name, text).
pub const STANDARD_FILES: &[(&str, &str)] = &[
    (
        "outreach.sql",
        include_str!("../../queries/standard/outreach.sql"),
    ),
    (
        "outcomes.sql",
        include_str!("../../queries/standard/outcomes.sql"),
    ),
    (
        "equity.sql",
        include_str!("../../queries/standard/equity.sql"),
    ),
];

/// One 0/1 statistic of a metric file: a count of persons in the cohort.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticDef {
    pub name: String,
    /// Plain words, completing "persons in the cohort who …".
    pub description: String,
    /// The days after the index overdose that the statistic looks at, both ends included.
    pub window: [i64; 2],
    /// The tables it reads, where they differ from the file's.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
}

/// A rate: post-processing of two noisy counts of the same file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateDef {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub description: String,
}

/// A difference of two rates of the same file, with its interval.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifferenceDef {
    pub name: String,
    pub minuend: String,
    pub subtrahend: String,
    pub description: String,
}

/// The declarations at the head of a metric file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    title: String,
    description: String,
    tables: Vec<String>,
    #[serde(default)]
    breakdowns: Vec<String>,
    statistics: Vec<StatisticDef>,
    #[serde(default)]
    rates: Vec<RateDef>,
    #[serde(default)]
    differences: Vec<DifferenceDef>,
}

/// A metric file: its declarations and its person-level SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFile {
    /// The file name, such as `outreach.sql`.
    pub file: String,
    pub name: String,
    pub title: String,
    pub description: String,
    /// The tables every statistic reads unless it names its own.
    pub tables: Vec<String>,
    /// Breakdown dimensions (dictionary columns of `overdose_events`) of an equity file: its
    /// rows carry `dimension` and `value` columns, one row per dimension.
    pub breakdowns: Vec<String>,
    pub statistics: Vec<StatisticDef>,
    pub rates: Vec<RateDef>,
    pub differences: Vec<DifferenceDef>,
    /// The whole file, header included (the header is a SQL comment).
    pub sql: String,
}

impl MetricFile {
    /// Parses a metric file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<MetricFile> {
        let err = |message: String| QueriesError::Declaration {
            file: file.to_string(),
            message,
        };
        let body = text.trim_start();
        let Some(rest) = body.strip_prefix("/*") else {
            return Err(err(
                "a metric file opens with a /* … */ comment that declares it in TOML".into(),
            ));
        };
        let Some(end) = rest.find("*/") else {
            return Err(err("the declaring comment is not closed with */".into()));
        };
        let header: Header =
            toml::from_str(&rest[..end]).map_err(|e| err(format!("declarations: {e}")))?;
        let metric = MetricFile {
            file: file.to_string(),
            name: header.name,
            title: header.title,
            description: header.description.trim().to_string(),
            tables: header.tables,
            breakdowns: header.breakdowns,
            statistics: header.statistics,
            rates: header.rates,
            differences: header.differences,
            sql: text.to_string(),
        };
        metric.check().map_err(err)?;
        Ok(metric)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let dictionary = crate::dictionary::Dictionary::builtin().map_err(|e| e.to_string())?;
        if self.statistics.is_empty() {
            return Err("declares no statistics".into());
        }
        let mut names = BTreeSet::new();
        for s in &self.statistics {
            if !names.insert(s.name.as_str()) {
                return Err(format!("statistic `{}` is declared twice", s.name));
            }
            if s.window[0] < 0 || s.window[1] < s.window[0] {
                return Err(format!(
                    "statistic `{}`: window {:?} must be [from, to] days with 0 ≤ from ≤ to",
                    s.name, s.window
                ));
            }
            for t in s.tables.as_ref().unwrap_or(&self.tables) {
                if dictionary.table(t).is_none() {
                    return Err(format!(
                        "statistic `{}` reads `{t}`, which is not a table of the dictionary",
                        s.name
                    ));
                }
            }
        }
        for t in &self.tables {
            if dictionary.table(t).is_none() {
                return Err(format!("`{t}` is not a table of the dictionary"));
            }
        }
        let mut rates = BTreeSet::new();
        for r in &self.rates {
            if !rates.insert(r.name.as_str()) {
                return Err(format!("rate `{}` is declared twice", r.name));
            }
            for side in [&r.numerator, &r.denominator] {
                if !names.contains(side.as_str()) {
                    return Err(format!(
                        "rate `{}` uses `{side}`, which is not a statistic of this file",
                        r.name
                    ));
                }
            }
        }
        for d in &self.differences {
            for side in [&d.minuend, &d.subtrahend] {
                if !rates.contains(side.as_str()) {
                    return Err(format!(
                        "difference `{}` uses `{side}`, which is not a rate of this file",
                        d.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The tables statistic `s` reads.
    pub fn tables_of<'a>(&'a self, s: &'a StatisticDef) -> &'a [String] {
        s.tables.as_deref().unwrap_or(&self.tables)
    }

    /// Whether this is a breakdown (equity) file.
    pub fn is_breakdown(&self) -> bool {
        !self.breakdowns.is_empty()
    }
}

/// The metric files, in a fixed order.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub files: Vec<MetricFile>,
}

impl Catalog {
    /// The standard metrics compiled into the binary.
    pub fn standard() -> Result<Catalog> {
        let files = STANDARD_FILES
            .iter()
            .map(|(name, text)| MetricFile::parse(name, text))
            .collect::<Result<Vec<_>>>()?;
        Catalog::new(files)
    }

    /// Every `*.sql` file of a folder, in name order.
    pub fn load(dir: &Path) -> Result<Catalog> {
        let read = |path: &Path| -> Result<String> {
            std::fs::read_to_string(path).map_err(|source| QueriesError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let entries = std::fs::read_dir(dir).map_err(|source| QueriesError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        let files = paths
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                MetricFile::parse(&name, &read(p)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Catalog::new(files)
    }

    fn new(files: Vec<MetricFile>) -> Result<Catalog> {
        let mut names = BTreeSet::new();
        for f in &files {
            if !names.insert(f.name.clone()) {
                return Err(QueriesError::Declaration {
                    file: f.file.clone(),
                    message: format!("metric name `{}` is used by another file", f.name),
                });
            }
        }
        Ok(Catalog { files })
    }

    /// The files without breakdowns: one row per person and (program, quarter).
    pub fn per_program(&self) -> impl Iterator<Item = &MetricFile> {
        self.files.iter().filter(|f| !f.is_breakdown())
    }

    /// The statistics of the per-program files, each once (a statistic such as `identified`
    /// that several files compute is taken from the first), with the file it comes from.
    pub fn per_program_statistics(&self) -> Vec<(&MetricFile, &StatisticDef)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for f in self.per_program() {
            for s in &f.statistics {
                if seen.insert(s.name.as_str()) {
                    out.push((f, s));
                }
            }
        }
        out
    }

    /// The per-program files with the statistics taken from each ([`Self::per_program_statistics`]
    /// grouped by file, each statistic once): what an exact count runs, one query per file.
    pub fn per_program_files(&self) -> Vec<(&MetricFile, Vec<String>)> {
        let mut out: Vec<(&MetricFile, Vec<String>)> = Vec::new();
        for (f, s) in self.per_program_statistics() {
            match out.iter_mut().find(|(g, _)| g.file == f.file) {
                Some((_, names)) => names.push(s.name.clone()),
                None => out.push((f, vec![s.name.clone()])),
            }
        }
        out
    }
}
