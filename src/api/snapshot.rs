//! The server's in-memory copy of everything it serves, rendered once.
//!
//! Releases never change once stored, so the server reads the ledger, the publications and
//! the public program table once, renders every response body (JSON and CSV) with its ETag,
//! and answers from memory. A watcher reloads the snapshot when the ledger or the requests
//! file changes ([`Snapshot::changed`]), so a new publication appears without a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use axum::body::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::csv;
use super::views::{self, Figure, Program, ProgramQuarter, Release, ReleaseSummary};
use crate::ledger::Ledger;
use crate::ledger::publications::StoredPublication;
use crate::privacy::PublicRelease;
use crate::queries::Catalog;
use crate::queries::publish::{Publication, QuarterLoss, quarter_loss};
use crate::requests::researcher_of;
use crate::warehouse::{Warehouse, hex};

/// How long clients and proxies may keep a response before revalidating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A release by id: its numbers never change, but `superseded_by` is filled in when a
    /// republication replaces it, so caches revalidate (a cheap 304) after a minute.
    Release,
    /// A quarter's current publication: a republication replaces it.
    Published,
    /// The budget and the lists: they change with every release.
    Live,
}

impl Freshness {
    pub fn cache_control(self) -> &'static str {
        match self {
            Freshness::Release => "public, max-age=60, must-revalidate",
            Freshness::Published => "public, max-age=300",
            Freshness::Live => "public, max-age=0, must-revalidate",
        }
    }
}

/// A response body rendered once, in both formats, each with its strong ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: Bytes,
    pub csv: Bytes,
    /// Quoted ETags of the two bodies.
    pub etag_json: String,
    pub etag_csv: String,
    pub freshness: Freshness,
}

fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &hex(&Sha256::digest(body))[..32])
}

impl Rendered {
    /// An HTML page, kept in the `json` slot (the one body a page has).
    pub fn page(html: String, freshness: Freshness) -> Rendered {
        Rendered {
            etag_json: etag(html.as_bytes()),
            etag_csv: String::new(),
            json: Bytes::from(html),
            csv: Bytes::new(),
            freshness,
        }
    }

    pub fn new<T: Serialize>(value: &T, csv: String, freshness: Freshness) -> Rendered {
        let json = serde_json::to_vec(value).expect("responses serialise");
        Rendered {
            etag_json: etag(&json),
            etag_csv: etag(csv.as_bytes()),
            json: Bytes::from(json),
            csv: Bytes::from(csv),
            freshness,
        }
    }
}

/// A quarter's current publication, parsed, with the quarter's privacy loss.
#[derive(Debug, Clone)]
pub struct QuarterPublication {
    pub stored: StoredPublication,
    pub doc: Publication,
    /// Every release that has published the quarter, current and superseded.
    pub loss: QuarterLoss,
}

/// Everything the server serves.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub programs: Vec<Program>,
    /// Current publication per quarter, in quarter order.
    pub quarters: BTreeMap<String, QuarterPublication>,
    /// Public releases by id.
    pub releases: BTreeMap<i64, Release>,
    /// Researchers' own releases, visible to that researcher only: id → researcher.
    pub private_releases: HashMap<i64, String>,
    /// Pre-rendered bodies by route path (without the query string).
    pub rendered: HashMap<String, Rendered>,
    /// The dataset version of the warehouse now (what a request would be planned against).
    pub dataset_version: String,
    /// `program_id`s of the public programs table: the `programs` domain of a request.
    pub program_ids: Vec<String>,
    /// Dashboard pages rendered so far, by their choices: a page is drawn once per
    /// snapshot (the releases it shows never change).
    pub pages: std::sync::Mutex<HashMap<String, Rendered>>,
}

impl Snapshot {
    /// Reads everything the server serves from the warehouse and the ledger, opened
    /// read-only. `made_public` are the researchers' releases that the steward made public.
    pub async fn load(warehouse: &Path, made_public: &[i64]) -> crate::Result<Snapshot> {
        let wh = Warehouse::open(warehouse)?;
        let manifest = wh.manifest()?;
        let ctx = crate::warehouse::open_session_at(&wh, &manifest)?;
        let programs_table = crate::queries::publish::programs(&ctx).await?;
        // Opened after the last await: a SQLite connection is not `Sync`.
        let ledger = Ledger::open_read_only(warehouse)?;
        let catalog = Catalog::standard()?;
        let mut snap = Snapshot {
            programs: programs_table.iter().map(Program::from).collect(),
            dataset_version: manifest.version().to_string(),
            program_ids: programs_table
                .iter()
                .map(|p| p.program_id.clone())
                .collect(),
            ..Snapshot::default()
        };

        // What each release spent, for the quarters' losses.
        let stored_releases = ledger.releases()?;
        let debits: HashMap<i64, (f64, f64)> = stored_releases
            .iter()
            .map(|r| (r.id, (r.debit_rho, r.debit_delta)))
            .collect();
        let display_delta = ledger.config()?.display_delta;

        // Publications: the current one per quarter; which release superseded which.
        let mut quarter_of: HashMap<i64, String> = HashMap::new();
        let mut superseded_by: HashMap<i64, i64> = HashMap::new();
        let all = ledger.publications(None)?;
        let by_id: HashMap<i64, &StoredPublication> = all.iter().map(|p| (p.id, p)).collect();
        for p in &all {
            let Ok(doc) = serde_json::from_value::<Publication>(p.document.clone()) else {
                continue;
            };
            quarter_of.insert(p.release_id, p.quarter.clone());
            if let Some(e) = doc.equity_release_id {
                quarter_of.insert(e, p.quarter.clone());
            }
            // A publication that supersedes one with the same releases (later declarations
            // changed which figures are complete) replaces no release.
            if let Some(next) = p.superseded_by.and_then(|n| by_id.get(&n))
                && let Ok(next_doc) = serde_json::from_value::<Publication>(next.document.clone())
            {
                if next.release_id != p.release_id {
                    superseded_by.insert(p.release_id, next.release_id);
                }
                if let (Some(old), Some(new)) = (doc.equity_release_id, next_doc.equity_release_id)
                    && old != new
                {
                    superseded_by.insert(old, new);
                }
            }
            if p.superseded_by.is_none() {
                let of_quarter: Vec<StoredPublication> = all
                    .iter()
                    .filter(|o| o.quarter == p.quarter && o.id <= p.id)
                    .cloned()
                    .collect();
                let loss = quarter_loss(&of_quarter, |id| debits.get(&id).copied(), display_delta)?;
                snap.quarters.insert(
                    p.quarter.clone(),
                    QuarterPublication {
                        stored: p.clone(),
                        doc,
                        loss,
                    },
                );
            }
        }

        // Releases: public unless a researcher's and not made public.
        for stored in stored_releases {
            let Some(public) = PublicRelease::from_stored(&stored) else {
                continue;
            };
            if let Some(researcher) = researcher_of(&stored.allocation)
                && !made_public.contains(&stored.id)
            {
                snap.private_releases
                    .insert(stored.id, researcher.to_string());
                continue;
            }
            let release = Release::new(
                &stored,
                public,
                quarter_of.get(&stored.id).cloned(),
                superseded_by.get(&stored.id).copied(),
            );
            snap.releases.insert(stored.id, release);
        }

        snap.render(&catalog, &views::budget(&ledger.show()?)?);
        Ok(snap)
    }

    fn put(&mut self, path: String, r: Rendered) {
        self.rendered.insert(path, r);
    }

    fn render(&mut self, catalog: &Catalog, budget: &views::Budget) {
        use Freshness::*;
        let metrics = views::metrics(catalog);
        self.put(
            "/v1/metrics".into(),
            Rendered::new(&metrics, csv::rows(&metrics), Live),
        );
        let programs = self.programs.clone();
        self.put(
            "/v1/programs".into(),
            Rendered::new(&programs, csv::rows(&programs), Live),
        );
        let quarters: Vec<views::Quarter> = self.quarters.values().map(views::quarter).collect();
        self.put(
            "/v1/quarters".into(),
            Rendered::new(&quarters, csv::rows(&quarters), Live),
        );
        let mut pages: Vec<(String, ProgramQuarter)> = Vec::new();
        for (q, publ) in &self.quarters {
            for p in &publ.doc.programs {
                let id = &p.program.program_id;
                if let Some(view) = views::program_quarter(&publ.stored, &publ.doc, id) {
                    pages.push((format!("/v1/quarters/{q}/programs/{id}"), view));
                }
            }
        }
        for (path, view) in pages {
            let csv = csv::rows(&view.figures);
            self.put(path, Rendered::new(&view, csv, Published));
        }
        let releases: Vec<(i64, Rendered)> = self
            .releases
            .values()
            .map(|r| {
                (
                    r.release.id,
                    Rendered::new(r, crate::report::release_csv(&r.release), Release),
                )
            })
            .collect();
        for (id, r) in releases {
            self.put(format!("/v1/releases/{id}"), r);
        }
        self.put(
            "/v1/budget".into(),
            Rendered::new(budget, csv::rows(&budget.allocations), Live),
        );
    }

    /// The summaries of public releases that pass the filters.
    pub fn release_summaries(&self, filter: &ReleaseFilter) -> Vec<ReleaseSummary> {
        self.releases
            .values()
            .filter(|r| {
                filter
                    .quarter
                    .as_ref()
                    .is_none_or(|q| r.quarter.as_ref() == Some(q))
            })
            .filter(|r| {
                filter
                    .name
                    .as_ref()
                    .is_none_or(|n| r.release.name.to_lowercase().contains(&n.to_lowercase()))
            })
            .filter(|r| {
                filter
                    .since
                    .as_ref()
                    .is_none_or(|s| r.release.published_at.as_str() >= s.as_str())
            })
            .filter(|r| !filter.current || r.superseded_by.is_none())
            .map(ReleaseSummary::from)
            .collect()
    }

    /// One quarter's comparison: `None` without a publication of that quarter.
    pub fn compare(
        &self,
        quarter: &str,
        metric: &str,
        kind: Option<&str>,
        by: &str,
    ) -> Option<Result<views::Comparison, String>> {
        let q = self.quarters.get(quarter)?;
        Some(views::compare(&q.doc, metric, kind, by))
    }
}

/// The filters of `GET /v1/releases`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReleaseFilter {
    /// Only releases that publish this quarter, such as `2025Q3`.
    pub quarter: Option<String>,
    /// Only releases whose name contains this (any case).
    pub name: Option<String>,
    /// Only releases published at or after this time (RFC 3339, or a date `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Only releases that nothing superseded.
    #[serde(default)]
    pub current: bool,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The figures of a comparison as CSV.
pub fn figures_csv(figures: &[Figure]) -> String {
    csv::rows(figures)
}
