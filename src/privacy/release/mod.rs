//! One release, end to end: plan and analyse the queries, choose the noise, debit the
//! ledger, bound the rows in DataFusion's stream, draw OpenDP noise, store the result.
//!
//! Everything that can refuse a release (the spec, the SQL, the analyser, the output
//! columns, the scales, the budget) runs before the debit; the data is read only after it.
//! A failure after the debit is stored for the steward and the budget stays spent.
//!
//! **A failed release is itself a disclosure of one bit.** Whether a release fails after its
//! debit may depend on one person's rows (an error that the analyser's allow-list failed to
//! rule out), so even "it failed" can reveal something; the analyser's job is to make a
//! data-dependent failure impossible, and a failure that still happens is a defect to fix.
//! As defence in depth, nothing about *how* it failed reaches anyone but the steward: the
//! caller gets only [`PrivacyError::FailedAfterDebit`], a fixed message with the release
//! id; the error text (DataFusion's, OpenDP's, or a panic's) is stored in the ledger for
//! `releases show --steward`. A panic after the debit, in this thread or in any task of the
//! query, is caught and recorded the same way, and while a release is between its debit
//! and its outcome the process's panic hook prints nothing (a panic message can quote a
//! value; see [`panic_guard`]). The steward who retries does so knowing the bit was spent.
//!
//! **Identical requests.** The idempotency key binds the queries, the declarations, the
//! budget, the opaque dataset version *and* the manifest's content hash (steward-only, never
//! published), so a warehouse rebuilt next to the same ledger, with the same `vN` but other
//! data, never replays another warehouse's numbers. The key is claimed
//! ([`Ledger::claim_release`]) from before the debit until the outcome is written: a second
//! identical request started meanwhile waits for the first, then returns its numbers.
//!
//! The release's parts, in the order a release goes through them:
//! - `plan`: everything checked and fixed before any spend: the queries planned and
//!   analysed, the spec checked, the noise chosen, `d_in` and `d_out`, the idempotency key.
//! - `rows`: after the debit, the person-level rows of the queries and the bounding driver
//!   that streams them into the bounder.
//! - `result`: the published numbers (noisy values, ratios, partition selection) and the
//!   public view of a stored release.
//! - [`panic_guard`]: keeps panic messages off stderr between the debit and the outcome.
//! - This module: the request and its outcome, and the orchestration: prepare every spec,
//!   claim and debit, then run each release under the post-debit guard
//!   (`run_after_debit`), the one place where a failure or a panic becomes a stored
//!   failure for the steward and [`PrivacyError::FailedAfterDebit`] for the caller.

pub mod panic_guard;
mod plan;
mod result;
mod rows;

pub use plan::{
    AcceptedQuery, DeclaredInput, DeclaredOutput, PreparedRelease, bind_to_content,
    keep_filters_that_narrow, plan_query, prepare, prepare_with_programs, program_ids,
    query_options,
};
pub use result::{
    NoisyValue, PartitionSelection, PublicRelease, RatioResult, RatioValue, ReleaseResult,
    StatisticResult, build_result, build_selected_result, delta_ratio, distribution_name, ratio,
};
pub use rows::{bound, person_rows};

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use futures::FutureExt;
use serde::Serialize;

use super::bounding::{Bounded, BoundingRules, CellChoiceKey};
use super::spec::ReleaseSpec;
use super::{PrivacyError, Result, functions};
use crate::ledger::{Begin, Ledger, ReleaseStart};
use crate::warehouse::{Manifest, Warehouse, open_session_at};

/// A request to release.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub spec: ReleaseSpec,
    /// Who approved it: the steward's name, or `standard` for the standard metrics.
    pub approver: String,
}

/// What a release returned.
#[derive(Debug, Clone)]
pub struct ReleaseOutcome {
    pub id: i64,
    /// False when the idempotency key was already released: nothing was spent.
    pub fresh: bool,
    pub public: PublicRelease,
}

/// The public view of a release that was released.
fn public_view(ledger: &Ledger, id: i64) -> Result<PublicRelease> {
    PublicRelease::from_stored(&ledger.release(id)?)
        .ok_or_else(|| PrivacyError::Internal(format!("release {id} has no public view")))
}

/// How long an identical request waits for the one already running before it gives up as
/// busy (exit code 3). A release takes seconds to minutes.
pub const CLAIM_WAIT: Duration = Duration::from_secs(30 * 60);

/// Releases a spec over a warehouse: the whole path, debit first.
///
/// After the debit, any failure (an error or a panic, here or in a task of the query) is
/// stored for the steward and returned as [`PrivacyError::FailedAfterDebit`], which holds
/// nothing but the release id: a failed release discloses one bit (that it failed), never
/// the error's text (module docs).
pub async fn release(warehouse: &Path, req: &ReleaseRequest) -> Result<ReleaseOutcome> {
    let manifest = Warehouse::open(warehouse)?.manifest()?;
    let mut out = release_all(warehouse, &manifest, std::slice::from_ref(req)).await?;
    Ok(out.pop().expect("one outcome per request"))
}

/// Releases several specs as one unit, over one snapshot of the warehouse: `manifest`, which
/// the caller read once, so every release reads and records the same dataset version even if
/// a load commits meanwhile (the files a manifest names are never removed by a later load).
///
/// Every spec is prepared (checked, analysed, priced) before anything is spent, and the
/// fresh ones are debited together ([`Ledger::begin_releases`]): either all are paid or none
/// is. Specs already released with the same key return their stored numbers for free. Then
/// each fresh release reads the data and draws its noise in turn. If one fails after the
/// debit, the others still run (their debits are spent too, and their numbers stored, so a
/// retry replays them), and the first failure is returned as
/// [`PrivacyError::FailedAfterDebit`]. The outcomes come in the order of `reqs`.
pub async fn release_all(
    warehouse: &Path,
    manifest: &Manifest,
    reqs: &[ReleaseRequest],
) -> Result<Vec<ReleaseOutcome>> {
    let wh = Warehouse::open(warehouse)?;
    let version = manifest.version().to_string();
    let mut ledger = Ledger::open(warehouse)?;
    let config = ledger.config()?;
    let ctx = open_session_at(&wh, manifest)?;
    functions::register(&ctx);
    let quarters = manifest.quarters();
    let content = manifest.content_hash();
    let mut prepared: Vec<PreparedRelease> = Vec::with_capacity(reqs.len());
    for req in reqs {
        let mut p = prepare(&ctx, &req.spec, &version, &config).await?;
        keep_filters_that_narrow(&mut p.spec, &req.spec, &quarters);
        p.idempotency_key = bind_to_content(&p.idempotency_key, &content);
        if prepared
            .iter()
            .any(|q| q.idempotency_key == p.idempotency_key)
        {
            return Err(PrivacyError::Spec {
                message: format!("`{}` is asked twice in one group of releases", p.spec.name),
            });
        }
        prepared.push(p);
    }
    // Held until this function returns: an identical request waits here for this one.
    let mut claims = Vec::with_capacity(prepared.len());
    for p in &prepared {
        claims.push(ledger.claim_release(&p.idempotency_key, CLAIM_WAIT)?);
    }
    let starts: Vec<ReleaseStart> = prepared
        .iter()
        .zip(reqs)
        .map(|(p, req)| ReleaseStart {
            idempotency_key: p.idempotency_key.clone(),
            name: p.spec.name.clone(),
            allocation: p.spec.allocation.clone(),
            spec_json: to_json(&p.spec),
            query_hashes: p.spec.queries.iter().map(|q| q.sha256.clone()).collect(),
            dataset_version: version.clone(),
            measure: config.noise.measure().into(),
            d_in_json: to_json(&p.d_in),
            d_out_json: to_json(&p.d_out),
            spend: p.loss.spend,
            approver: req.approver.clone(),
        })
        .collect();
    let begun = ledger.begin_releases(&starts)?;
    let mut outcomes = Vec::with_capacity(prepared.len());
    let mut first_failure: Option<i64> = None;
    let mut ran = 0usize;
    for (p, begin) in prepared.iter().zip(begun) {
        let id = match begin {
            Begin::Existing(id) => {
                outcomes.push(ReleaseOutcome {
                    id,
                    fresh: false,
                    public: public_view(&ledger, id)?,
                });
                continue;
            }
            Begin::Fresh(id) => id,
        };
        if ran > 0 {
            crate::failpoint::hook("release-between", warehouse);
        }
        ran += 1;
        match run_after_debit(&ctx, p, &mut ledger, id).await? {
            Some(public) => outcomes.push(ReleaseOutcome {
                id,
                fresh: true,
                public,
            }),
            None if first_failure.is_none() => first_failure = Some(id),
            None => {}
        }
    }
    drop(claims);
    match first_failure {
        Some(id) => Err(PrivacyError::FailedAfterDebit { id }),
        None => Ok(outcomes),
    }
}

/// Reads the data, bounds it and draws the noise of release `id`, already debited, and
/// stores its outcome: its public view, or `None` when it failed (the error is stored for
/// the steward only; module docs).
async fn run_after_debit(
    ctx: &SessionContext,
    prepared: &PreparedRelease,
    ledger: &mut Ledger,
    id: i64,
) -> Result<Option<PublicRelease>> {
    // From here on the data is read: no panic message may reach stderr, and every failure
    // ends as a fixed message (module docs).
    let guard = panic_guard::Guard::new();
    let choice_key = ledger.cell_choice_key().map_err(|e| e.to_string());
    let outcome = AssertUnwindSafe(after_debit(ctx, prepared, choice_key))
        .catch_unwind()
        .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(payload) => Err(format!("panic: {}", panic_guard::payload_text(&*payload))),
    };
    let outcome = outcome.map_err(|message| {
        let panics = guard.take();
        if panics.is_empty() {
            message
        } else {
            format!("{message}\npanics: {}", panics.join("\n"))
        }
    });
    match outcome {
        Ok((result, bounded)) => {
            let result_json = serde_json::to_value(&result).expect("result serialises");
            let diagnostics =
                serde_json::to_value(&bounded.diagnostics).expect("diagnostics serialise");
            ledger.finish_released(id, &result_json, &diagnostics)?;
            Ok(Some(public_view(ledger, id)?))
        }
        Err(message) => {
            ledger.finish_failed(id, &message)?;
            Ok(None)
        }
    }
}

/// Everything after the debit: read the rows, bound them, draw the noise, build the result.
/// An error is a message for the steward only.
async fn after_debit(
    ctx: &SessionContext,
    prepared: &PreparedRelease,
    choice_key: std::result::Result<[u8; 16], String>,
) -> std::result::Result<(ReleaseResult, Bounded), String> {
    let rules = Arc::new(BoundingRules {
        k: prepared.spec.k as usize,
        cells: prepared.spec.cells.clone(),
        statistics: prepared.spec.statistics.clone(),
        exclusive: prepared.spec.exclusive.clone(),
        key: CellChoiceKey(choice_key?),
    });
    if crate::failpoint::armed("release-fail-after-debit") {
        return Err("fail point release-fail-after-debit: injected failure".to_string());
    }
    let rows = person_rows(ctx, &prepared.spec, &prepared.queries).map_err(|e| e.to_string())?;
    let bounded = bound(rows, rules.clone()).await?;
    let result = match &bounded.discovered {
        None => {
            let noisy = prepared
                .noise
                .draw(&bounded.values)
                .map_err(|e| e.to_string())?;
            build_result(prepared, &noisy).map_err(|e| e.to_string())?
        }
        Some(found) => {
            // One count per cell; only cells with a positive count enter selection.
            let counts: HashMap<u64, i64> = found
                .cells
                .iter()
                .zip(&bounded.values)
                .filter(|&(_, &v)| v > 0)
                .map(|(&c, &v)| (c, v))
                .collect();
            let noisy = prepared
                .noise
                .draw_thresholded(&counts)
                .map_err(|e| e.to_string())?;
            let labels = rules.with_private_values(found.values.clone());
            build_selected_result(prepared, &labels, &noisy).map_err(|e| e.to_string())?
        }
    };
    Ok((result, bounded))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("release records serialise")
}
