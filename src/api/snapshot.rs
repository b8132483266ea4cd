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
use crate::metrics::Catalog;
use crate::privacy::PublicRelease;
use crate::publication::StoredPublication;
use crate::publication::{DocumentError, Publication, QuarterLoss, quarter_loss};
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
    /// As stored, but `published_at` is the day only (`YYYY-MM-DD`).
    pub stored: StoredPublication,
    pub doc: Publication,
    /// Every release that has published the quarter, current and superseded.
    pub loss: QuarterLoss,
}

/// A stored publication whose document this build cannot read (corrupt, or a version from
/// a newer build). It is logged when the snapshot loads and counted by `/healthz`, which then
/// answers 503; its quarter is not served from it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadablePublication {
    pub id: i64,
    pub quarter: String,
    /// Why, for the steward's log and the steward's commands; never served.
    pub error: DocumentError,
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
    /// The public budget, researchers as one row (rendered at `/v1/budget`).
    pub budget: views::Budget,
    /// Each researcher's own allocation by researcher name, for the holder of their token.
    pub researcher_allocations: HashMap<String, views::AllocationBudget>,
    /// Dashboard pages rendered so far, by their choices: a page is drawn once per
    /// snapshot (the releases it shows never change) while it stays in the cache.
    pub pages: std::sync::Mutex<PageCache>,
    /// Stored publications whose document cannot be read, oldest first.
    pub unreadable: Vec<UnreadablePublication>,
}

/// The most dashboard pages a snapshot keeps. The choices a page is drawn for are bounded
/// (published quarters × metrics × programs), but a few hundred cover what readers ask for.
pub const MAX_CACHED_PAGES: usize = 512;

/// The most bytes of dashboard HTML a snapshot keeps, whatever the page count: pages grow with
/// the programs and quarters they chart, and the cache must not grow with them unbounded.
pub const MAX_CACHED_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Dashboard pages by their choices, bounded by a page count and a byte count; when either is
/// passed the least recently used page goes first. Every look-up and insert marks its page
/// used with a new tick; `by_use` orders the keys by their last tick.
#[derive(Debug)]
pub struct PageCache {
    max_pages: usize,
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    /// Each page with the tick of its last use.
    pages: HashMap<String, (Rendered, u64)>,
    /// The keys by the tick of their last use: the first is the least recently used.
    by_use: BTreeMap<u64, String>,
}

impl Default for PageCache {
    fn default() -> PageCache {
        PageCache::new(MAX_CACHED_PAGES, MAX_CACHED_PAGE_BYTES)
    }
}

impl PageCache {
    /// An empty cache of at most `max_pages` pages and `max_bytes` bytes of bodies.
    pub fn new(max_pages: usize, max_bytes: usize) -> PageCache {
        PageCache {
            max_pages,
            max_bytes,
            bytes: 0,
            tick: 0,
            pages: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn size(page: &Rendered) -> usize {
        page.json.len() + page.csv.len()
    }

    /// The page kept under `key`, now marked as the most recently used.
    pub fn get(&mut self, key: &str) -> Option<Rendered> {
        let (page, used) = self.pages.get_mut(key)?;
        self.tick += 1;
        let last = *used;
        *used = self.tick;
        let k = self.by_use.remove(&last).expect("every page has its tick");
        self.by_use.insert(self.tick, k);
        Some(page.clone())
    }

    /// Whether a page is kept under `key`; does not mark it used.
    pub fn contains(&self, key: &str) -> bool {
        self.pages.contains_key(key)
    }

    /// Keeps `page` under `key` as the most recently used, then evicts the least recently
    /// used pages until both bounds hold. A page larger than the byte bound is not kept.
    pub fn insert(&mut self, key: String, page: Rendered) {
        if let Some((old, used)) = self.pages.remove(&key) {
            self.bytes -= Self::size(&old);
            self.by_use.remove(&used);
        }
        let size = Self::size(&page);
        if size > self.max_bytes || self.max_pages == 0 {
            return;
        }
        self.tick += 1;
        self.bytes += size;
        self.by_use.insert(self.tick, key.clone());
        self.pages.insert(key, (page, self.tick));
        while self.pages.len() > self.max_pages || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.pages.remove(&oldest) {
                self.bytes -= Self::size(&gone);
            }
        }
    }

    /// How many pages are kept.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The bytes of the bodies kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Snapshot {
    /// Reads everything the server serves from the warehouse and the ledger, opened
    /// read-only. `made_public` are the researchers' releases that the steward made public.
    pub async fn load(warehouse: &Path, made_public: &[i64]) -> crate::Result<Snapshot> {
        let wh = Warehouse::open(warehouse)?;
        let manifest = wh.manifest()?;
        let ctx = crate::warehouse::open_session_at(&wh, &manifest)?;
        let programs_table = crate::publication::programs(&ctx).await?;
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
            // What the stored row says holds whatever its document: the release's quarter
            // and its successor.
            quarter_of.insert(p.release_id, p.quarter.clone());
            let next = p.superseded_by.and_then(|n| by_id.get(&n));
            // A publication that supersedes one with the same releases (later declarations
            // changed which figures are complete) replaces no release.
            if let Some(next) = next
                && next.release_id != p.release_id
            {
                superseded_by.insert(p.release_id, next.release_id);
            }
            let doc = match Publication::from_document(&p.document) {
                Ok(doc) => doc,
                Err(e) => {
                    tracing::error!(
                        target: "outreach::api",
                        publication = p.id,
                        quarter = %p.quarter,
                        error = %e,
                        "a stored publication cannot be read; its quarter is not served from it and /healthz answers 503"
                    );
                    snap.unreadable.push(UnreadablePublication {
                        id: p.id,
                        quarter: p.quarter.clone(),
                        error: e,
                    });
                    continue;
                }
            };
            if let Some(e) = doc.equity_release_id {
                quarter_of.insert(e, p.quarter.clone());
            }
            // The equity release's successor is in the next document; an unreadable one is
            // logged when the loop reaches it.
            if let Some(next) = next
                && let Ok(next_doc) = Publication::from_document(&next.document)
                && let (Some(old), Some(new)) = (doc.equity_release_id, next_doc.equity_release_id)
                && old != new
            {
                superseded_by.insert(old, new);
            }
            if p.superseded_by.is_none() {
                let of_quarter: Vec<StoredPublication> = all
                    .iter()
                    .filter(|o| o.quarter == p.quarter && o.id <= p.id)
                    .cloned()
                    .collect();
                let loss = quarter_loss(&of_quarter, |id| debits.get(&id).copied(), display_delta)?;
                // Everything public reads a publication from here (the quarter routes, the
                // dashboard, the report): its time is the day only.
                let mut stored = p.clone();
                stored.published_at = crate::report::day(&stored.published_at);
                snap.quarters
                    .insert(p.quarter.clone(), QuarterPublication { stored, doc, loss });
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

        let budget = ledger.show()?;
        snap.budget = views::budget(&budget)?;
        snap.researcher_allocations = views::researcher_allocations(&budget)?;
        snap.render(&catalog);
        Ok(snap)
    }

    fn put(&mut self, path: String, r: Rendered) {
        self.rendered.insert(path, r);
    }

    fn render(&mut self, catalog: &Catalog) {
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
        let budget = self.budget.clone();
        self.put(
            "/v1/budget".into(),
            Rendered::new(&budget, csv::rows(&budget.allocations), Live),
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
                    .is_none_or(|s| r.release.published_at >= crate::report::day(s))
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
    /// Any text: only releases whose name contains it (any case).
    pub name: Option<String>,
    /// Only releases published on or after this day (`YYYY-MM-DD`; of an RFC 3339 time, its
    /// day counts: releases are published to the day). Anything else is a 400.
    pub since: Option<String>,
    /// Only releases that nothing superseded.
    #[serde(default)]
    pub current: bool,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The form of `/v1/releases?since=`, as the OpenAPI document states it: a day, `YYYY-MM-DD`,
/// or an RFC 3339 time (`2025-07-01T12:00:00Z`, a fraction and an offset allowed), whose day
/// counts. The digits are not checked as a calendar date: days compare as text.
pub const SINCE_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2}))?$";

/// Whether `since` is written as [`SINCE_PATTERN`] says.
pub fn is_since(since: &str) -> bool {
    // Every ASCII digit as `9`: the rest is a comparison with the shapes the pattern allows.
    let shape: String = since
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    let Some(time) = shape.strip_prefix("9999-99-99") else {
        return false;
    };
    if time.is_empty() {
        return true;
    }
    let Some(rest) = time.strip_prefix("T99:99:99") else {
        return false;
    };
    let zone = match rest.strip_prefix('.') {
        Some(fraction) => {
            let digits = fraction.len() - fraction.trim_start_matches('9').len();
            if !(1..=9).contains(&digits) {
                return false;
            }
            &fraction[digits..]
        }
        None => rest,
    };
    matches!(zone, "Z" | "+99:99" | "-99:99")
}

/// The figures of a comparison as CSV.
pub fn figures_csv(figures: &[Figure]) -> String {
    csv::rows(figures)
}
