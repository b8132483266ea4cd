//! The release store: each release recorded with its debit before any noise is drawn, in one
//! IMMEDIATE transaction, its outcome (released with its public result, or failed), and the
//! stored releases as the steward reads them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::budget::{check_budget, current_period};
use super::{Ledger, LedgerError, Result, Spend, chain, now, sql_err};
use crate::sqlite;

/// What a release records with its debit.
#[derive(Debug, Clone)]
pub struct ReleaseStart {
    pub idempotency_key: String,
    pub name: String,
    pub allocation: String,
    pub spec_json: String,
    pub query_hashes: Vec<String>,
    pub dataset_version: String,
    pub measure: String,
    pub d_in_json: String,
    pub d_out_json: String,
    /// What it debits: the loss the privacy engine measured.
    pub spend: Spend,
    pub approver: String,
}

/// The outcome of `begin_release`.
#[derive(Debug)]
pub enum Begin {
    /// Debited: draw noise for release `id`.
    Fresh(i64),
    /// Already released with this idempotency key: nothing spent.
    Existing(i64),
}

/// A stored release, for the steward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRelease {
    pub id: i64,
    pub name: String,
    pub allocation: String,
    pub spec: serde_json::Value,
    pub query_hashes: Vec<String>,
    pub dataset_version: String,
    pub measure: String,
    pub d_in: serde_json::Value,
    pub d_out: serde_json::Value,
    pub approver: String,
    pub created_at: String,
    pub debit_rho: f64,
    pub debit_delta: f64,
    /// `released`, `failed`, or `interrupted` (no outcome: the process died after the debit).
    pub status: String,
    pub result: Option<serde_json::Value>,
    pub diagnostics: Option<serde_json::Value>,
    pub error: Option<String>,
    pub finished_at: Option<String>,
}

impl Ledger {
    /// Checks what remains and records the release with its debit, in one IMMEDIATE
    /// transaction, before any noise is drawn. Returns the stored release instead when the
    /// same idempotency key was already released. Callers that may run the same key at once
    /// hold its [`Ledger::claim_release`] around this and the outcome.
    pub fn begin_release(&mut self, r: &ReleaseStart) -> Result<Begin> {
        let mut begun = self.begin_releases(std::slice::from_ref(r))?;
        Ok(begun.pop().expect("one outcome per release"))
    }

    /// [`Ledger::begin_release`] for several releases that are paid together, such as the
    /// two releases of a quarter's publication: in one IMMEDIATE transaction, every release
    /// whose key was already released is returned as [`Begin::Existing`] (free), and the
    /// others are checked *together* against what their allocations and the budget have
    /// left, then recorded with their debits. Either every fresh one is debited or none is:
    /// a publication is never left half paid because its second release did not fit.
    pub fn begin_releases(&mut self, starts: &[ReleaseStart]) -> Result<Vec<Begin>> {
        for r in starts {
            if r.spend.rho() <= 0.0 {
                return Err(LedgerError::Invalid(format!(
                    "a release must debit a positive rho (got {}, delta {})",
                    r.spend.rho(),
                    r.spend.delta()
                )));
            }
        }
        let path = self.path.clone();
        let e = sql_err(&path);
        // Commits when something was debited; the fail points around the commit are passed
        // only then.
        let (begun, debited) = sqlite::immediate(&mut self.conn, &e, |tx| {
            let mut existing: Vec<Option<i64>> = Vec::with_capacity(starts.len());
            for r in starts {
                existing
                    .push(released_with_key(tx, &r.idempotency_key, &r.allocation).map_err(&e)?);
            }
            // What the fresh releases cost together, per allocation: each allocation (and the
            // budget with it) must have room for its whole sum, so the refusal names the sum.
            let mut per_allocation: Vec<(&str, Spend)> = Vec::new();
            for (r, _) in starts.iter().zip(&existing).filter(|(_, id)| id.is_none()) {
                match per_allocation
                    .iter_mut()
                    .find(|(a, _)| *a == r.allocation.as_str())
                {
                    Some((allocation, sum)) => {
                        *sum = sum.checked_add(r.spend).ok_or_else(|| {
                            LedgerError::Invalid(format!(
                                "the releases of allocation '{allocation}' together spend more than any budget holds"
                            ))
                        })?;
                    }
                    None => per_allocation.push((r.allocation.as_str(), r.spend)),
                }
            }
            for (allocation, sum) in &per_allocation {
                check_budget(tx, &path, allocation, *sum)?;
            }
            let period = current_period(tx).map_err(&e)?;
            let at = now();
            let mut begun = Vec::with_capacity(starts.len());
            for (r, id) in starts.iter().zip(existing) {
                if let Some(id) = id {
                    begun.push(Begin::Existing(id));
                    continue;
                }
                // Checked again one by one, after the debits before it in this transaction:
                // across several allocations, the budget's total must hold their sum too.
                check_budget(tx, &path, &r.allocation, r.spend)?;
                tx.execute(
                    "INSERT INTO releases (idempotency_key, name, budget_id, allocation, spec, query_hashes,
                   dataset_version, measure, d_in, d_out, approver, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        r.idempotency_key,
                        r.name,
                        period.id,
                        r.allocation,
                        r.spec_json,
                        serde_json::to_string(&r.query_hashes).expect("strings serialise"),
                        r.dataset_version,
                        r.measure,
                        r.d_in_json,
                        r.d_out_json,
                        r.approver,
                        at
                    ],
                )
                .map_err(&e)?;
                let id = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO debits (budget_id, allocation, release_id, rho, delta, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        period.id,
                        r.allocation,
                        id,
                        r.spend.rho(),
                        r.spend.delta(),
                        at
                    ],
                )
                .map_err(&e)?;
                begun.push(Begin::Fresh(id));
            }
            if per_allocation.is_empty() {
                // Every one was already released: nothing was written.
                return Ok((begun, false));
            }
            // The debits' entries on the public chain, in the same transaction.
            chain::extend(tx, &path)?;
            crate::failpoint::hit("ledger-before-commit");
            Ok((begun, true))
        })?;
        if debited {
            crate::failpoint::hit("ledger-after-debit");
            self.after_commit()?;
        }
        Ok(begun)
    }

    /// Records that release `id` was published with `result` (public) and `diagnostics`
    /// (steward only); a public release's numbers go on the public chain in the same
    /// transaction.
    pub fn finish_released(
        &mut self,
        id: i64,
        result: &serde_json::Value,
        diagnostics: &serde_json::Value,
    ) -> Result<()> {
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            tx.execute(
                "INSERT INTO release_outcomes (release_id, status, result, diagnostics, finished_at)
                 VALUES (?1, 'released', ?2, ?3, ?4)",
                params![id, result.to_string(), diagnostics.to_string(), now()],
            )
            .map_err(&e)?;
            chain::extend(tx, &path)
        })?;
        self.after_commit()
    }

    /// Records that release `id` failed after its debit; the debit stays spent, and so does
    /// its entry on the public chain. The error text is for the steward only.
    pub fn finish_failed(&mut self, id: i64, error: &str) -> Result<()> {
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            tx.execute(
                "INSERT INTO release_outcomes (release_id, status, error, finished_at)
                 VALUES (?1, 'failed', ?2, ?3)",
                params![id, error, now()],
            )
            .map_err(&e)?;
            chain::extend(tx, &path)
        })?;
        self.after_commit()
    }

    /// Every release, newest last.
    pub fn releases(&self) -> Result<Vec<StoredRelease>> {
        self.query_releases("", params![])
    }

    /// One release.
    pub fn release(&self, id: i64) -> Result<StoredRelease> {
        self.query_releases("WHERE r.id = ?1", params![id])?
            .pop()
            .ok_or(LedgerError::NoSuchRelease(id))
    }

    fn query_releases<P: rusqlite::Params>(
        &self,
        filter: &str,
        p: P,
    ) -> Result<Vec<StoredRelease>> {
        let sql = format!(
            "SELECT r.id, r.name, r.allocation, r.spec, r.query_hashes, r.dataset_version, r.measure,
                    r.d_in, r.d_out, r.approver, r.created_at, d.rho, d.delta,
                    o.status, o.result, o.diagnostics, o.error, o.finished_at
             FROM releases r JOIN debits d ON d.release_id = r.id
             LEFT JOIN release_outcomes o ON o.release_id = r.id {filter} ORDER BY r.id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.e())?;
        let rows = stmt
            .query_map(p, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, f64>(11)?,
                    r.get::<_, f64>(12)?,
                    (
                        r.get::<_, Option<String>>(13)?,
                        r.get::<_, Option<String>>(14)?,
                        r.get::<_, Option<String>>(15)?,
                        r.get::<_, Option<String>>(16)?,
                        r.get::<_, Option<String>>(17)?,
                    ),
                ))
            })
            .map_err(self.e())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.e())?;
        let json = |s: &str| -> Result<serde_json::Value> {
            serde_json::from_str(s).map_err(|err| LedgerError::Corrupt {
                path: self.path.clone(),
                message: err.to_string(),
            })
        };
        rows.into_iter()
            .map(
                |(
                    id,
                    name,
                    allocation,
                    spec,
                    hashes,
                    version,
                    measure,
                    d_in,
                    d_out,
                    approver,
                    created_at,
                    rho,
                    delta,
                    (status, result, diagnostics, error, finished_at),
                )| {
                    Ok(StoredRelease {
                        id,
                        name,
                        allocation,
                        spec: json(&spec)?,
                        query_hashes: serde_json::from_str(&hashes).map_err(|err| {
                            LedgerError::Corrupt {
                                path: self.path.clone(),
                                message: err.to_string(),
                            }
                        })?,
                        dataset_version: version,
                        measure,
                        d_in: json(&d_in)?,
                        d_out: json(&d_out)?,
                        approver,
                        created_at,
                        debit_rho: rho,
                        debit_delta: delta,
                        status: status.unwrap_or_else(|| "interrupted".into()),
                        result: result.as_deref().map(json).transpose()?,
                        diagnostics: diagnostics.as_deref().map(json).transpose()?,
                        error,
                        finished_at,
                    })
                },
            )
            .collect()
    }
}

/// The release already released with this idempotency key from `allocation`, if any: asking
/// for it again spends nothing. The allocation is not in the key (keys of existing releases
/// stay valid), so it is matched here: an identical spec from another allocation (another
/// researcher) is a release of its own, never this one handed over.
fn released_with_key(
    conn: &Connection,
    idempotency_key: &str,
    allocation: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT r.id FROM releases r JOIN release_outcomes o ON o.release_id = r.id
         WHERE r.idempotency_key = ?1 AND r.allocation = ?2 AND o.status = 'released'
         ORDER BY r.id LIMIT 1",
        params![idempotency_key, allocation],
        |row| row.get(0),
    )
    .optional()
}
