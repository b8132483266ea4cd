//! The snapshot of what is published: everything the public is shown, read from the ledger
//! and the release store alone, for the API, the dashboard and the quarterly report.
//!
//! It holds each quarter's current publication with the quarter's privacy loss, the public
//! releases, the public budget, the programs table stored with the latest publication, and
//! the public ledger chain with its signed head; each release and publication carries the
//! hash of its entry on the chain.
//! Nothing here reads the warehouse's data: the programs are the copy that `publish` stored
//! in the ledger, so what is shown changes only when something is published (or a
//! researcher's release is made public), never when data is loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::views::{self, Program, Release, ReleaseSummary};
use crate::ledger::{Ledger, chain};
use crate::privacy::PublicRelease;
use crate::publication::StoredPublication;
use crate::publication::{DocumentError, Publication, QuarterLoss, corrected_after, quarter_loss};
use crate::requests::researcher_of;
use crate::warehouse::Warehouse;

/// A quarter's current publication, parsed, with the quarter's privacy loss.
#[derive(Debug, Clone)]
pub struct QuarterPublication {
    /// As stored, but `published_at` is the day only (`YYYY-MM-DD`).
    pub stored: StoredPublication,
    pub doc: Publication,
    /// Every release that has published the quarter, current and superseded.
    pub loss: QuarterLoss,
    /// Whether a load after this publication's dataset version corrected or retracted rows
    /// of the quarter (read from the manifest when the snapshot loads): the figures stand as
    /// published until the quarter is published again.
    pub corrected_after_publication: bool,
    /// The hash of its entry on the public ledger chain; none for a publication stored
    /// before the ledger had its chain.
    pub ledger_entry: Option<String>,
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

/// Everything the public is shown.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The public programs table as the latest publication stored it; none before the first.
    pub programs: Vec<Program>,
    /// Current publication per quarter, in quarter order.
    pub quarters: BTreeMap<String, QuarterPublication>,
    /// Public releases by id.
    pub releases: BTreeMap<i64, Release>,
    /// Researchers' own releases, visible to that researcher only: id → researcher.
    pub private_releases: HashMap<i64, String>,
    /// The dataset version named by the warehouse's manifest when the snapshot was loaded. It
    /// labels the planning of a researcher's request, which reads no data: the quote does not
    /// depend on it.
    pub dataset_version: String,
    /// `program_id`s of [`Snapshot::programs`]: the `programs` domain of a request.
    pub program_ids: Vec<String>,
    /// The public budget, researchers as one row (rendered at `/v1/budget`).
    pub budget: views::Budget,
    /// Each researcher's own allocation by researcher name, for the holder of their token.
    pub researcher_allocations: HashMap<String, views::AllocationBudget>,
    /// Stored publications whose document cannot be read, oldest first.
    pub unreadable: Vec<UnreadablePublication>,
    /// The public ledger chain, paged, and its signed head (`/v1/ledger`).
    pub ledger: views::PublicLedger,
}

impl Snapshot {
    /// Reads what is published from the ledger and the release store, opened read-only, and
    /// the dataset version from the manifest; no data. `made_public` are the researchers'
    /// releases that the steward made public.
    pub fn load(warehouse: &Path, made_public: &[i64]) -> crate::Result<Snapshot> {
        let manifest = Warehouse::open(warehouse)?.manifest()?;
        let ledger = Ledger::open_read_only(warehouse)?;
        let mut snap = Snapshot {
            dataset_version: manifest.version().to_string(),
            ..Snapshot::default()
        };
        // The programs table stored with the latest publication; for a ledger whose
        // publications were all stored without it, the programs of the newest one's document.
        let stored_programs = ledger
            .published_programs()?
            .map(serde_json::from_value::<Vec<Program>>)
            .transpose()
            .map_err(|e| {
                crate::Error::Internal(format!(
                    "the programs table stored with the latest publication cannot be read: {e}"
                ))
            })?;
        let mut newest_document_programs: Vec<Program> = Vec::new();

        // What each release spent, for the quarters' losses.
        let stored_releases = ledger.releases()?;
        let debits: HashMap<i64, (f64, f64)> = stored_releases
            .iter()
            .map(|r| (r.id, (r.debit_rho, r.debit_delta)))
            .collect();
        let display_delta = ledger.config()?.display_delta;

        // The public chain, and the entry of each release's numbers and of each publication.
        let entries = ledger.chain()?;
        let mut release_entries: HashMap<i64, String> = HashMap::new();
        let mut publication_entries: HashMap<i64, String> = HashMap::new();
        for entry in &entries {
            let body = serde_json::from_str::<serde_json::Value>(&entry.body).ok();
            let field_id = |field: &str| body.as_ref()?.get(field)?.as_i64();
            match entry.kind.as_str() {
                chain::RELEASE => {
                    if let Some(id) = field_id("release_id") {
                        release_entries.insert(id, entry.hash.clone());
                    }
                }
                chain::PUBLICATION => {
                    if let Some(id) = field_id("publication_id") {
                        publication_entries.insert(id, entry.hash.clone());
                    }
                }
                _ => {}
            }
        }
        snap.ledger = views::ledger(&entries, ledger.chain_head()?.as_ref());
        snap.ledger.heads = ledger
            .signed_heads()?
            .iter()
            .map(views::LedgerHead::from)
            .collect();

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
            newest_document_programs = doc.programs.iter().map(|f| f.program.clone()).collect();
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
                stored.published_at = super::tables::day(&stored.published_at);
                let corrected_after_publication =
                    corrected_after(&manifest, &p.quarter, &p.dataset_version).is_some();
                let ledger_entry = publication_entries.get(&p.id).cloned();
                snap.quarters.insert(
                    p.quarter.clone(),
                    QuarterPublication {
                        stored,
                        doc,
                        loss,
                        corrected_after_publication,
                        ledger_entry,
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
            let mut release = Release::new(
                &stored,
                public,
                quarter_of.get(&stored.id).cloned(),
                superseded_by.get(&stored.id).copied(),
            );
            release.ledger_entry = release_entries.get(&stored.id).cloned();
            snap.releases.insert(stored.id, release);
        }

        let budget = ledger.show()?;
        snap.budget = views::budget(&budget)?;
        snap.researcher_allocations = views::researcher_allocations(&budget)?;
        snap.programs = stored_programs.unwrap_or(newest_document_programs);
        snap.program_ids = snap.programs.iter().map(|p| p.program_id.clone()).collect();
        Ok(snap)
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
                    .is_none_or(|s| r.release.published_at >= super::tables::day(s))
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
