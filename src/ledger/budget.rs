//! The privacy budget: `budget init` with the warehouse's privacy configuration, named
//! allocations of ρ and δ, renewals that start a new period, what each allocation has spent,
//! and the check that a release fits in what its allocation and the warehouse have left.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::spend::{Quantity, SLACK, Spend};
use super::{
    Ledger, LedgerError, LedgerRecovery, NoiseKind, Result, SCHEMA_VERSION, chain, create_schema,
    now, secret, sql_err, watermark,
};
use crate::sqlite;

/// How the warehouse adds noise, fixed at `budget init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyConfig {
    pub noise: NoiseKind,
    /// δ at which ρ is displayed as (ε, δ).
    pub display_delta: f64,
    /// The smallest noise scale a release may use.
    pub min_scale: f64,
}

impl Default for PrivacyConfig {
    /// zCDP with discrete Gaussian noise, ε shown at δ = 1e-7, no scale below 1.
    fn default() -> Self {
        PrivacyConfig {
            noise: NoiseKind::DiscreteGaussian,
            display_delta: 1e-7,
            min_scale: 1.0,
        }
    }
}

/// What `budget init` sets.
#[derive(Debug, Clone)]
pub struct BudgetInit {
    pub total_rho: f64,
    pub total_delta: f64,
    pub horizon_days: u32,
    pub config: PrivacyConfig,
}

/// One budget period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPeriod {
    pub id: i64,
    pub total_rho: f64,
    pub total_delta: f64,
    pub starts: String,
    pub ends: String,
    pub why: String,
}

/// An allocation and what it has spent in the current period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationView {
    pub name: String,
    pub rho: f64,
    pub spent_rho: f64,
    /// The δ it may spend (0: none; private partition selection needs some).
    #[serde(default)]
    pub delta: f64,
    #[serde(default)]
    pub spent_delta: f64,
}

/// The budget as the steward sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub config: PrivacyConfig,
    pub period: BudgetPeriod,
    pub periods: usize,
    pub spent_rho: f64,
    pub spent_delta: f64,
    pub allocations: Vec<AllocationView>,
    /// Lifetime ρ over every period, which grows with renewals.
    pub lifetime_rho: f64,
    /// Lifetime δ over every period, which grows with renewals too.
    #[serde(default)]
    pub lifetime_delta: f64,
    /// Where this ledger was started by `budget recover`: the lost ledger, the spend carried
    /// over from it (already in the lifetime totals) and the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_from: Option<LedgerRecovery>,
}

impl Ledger {
    /// Creates the ledger with its first budget period, config, secret and id, and records
    /// the id in the manifest and the watermark. Refused where the warehouse already names a
    /// ledger (a lost one is replaced only by [`Ledger::recover`]).
    pub fn init(warehouse: &Path, init: &BudgetInit) -> Result<Ledger> {
        Self::create(warehouse, init, None)
    }

    /// Starts a new ledger where the one the warehouse names is truly lost: `budget recover`.
    /// Its lifetime spend starts at the watermark's, never at zero, and the loss is a
    /// `recovery` entry on the public chain that cites the lost ledger and the reason. The
    /// lost ledger's file must be gone (moved aside by the steward: nothing here deletes
    /// one), and the watermark must be there to say what it spent.
    pub fn recover(warehouse: &Path, why: &str, init: &BudgetInit) -> Result<Ledger> {
        if why.trim().is_empty() {
            return Err(LedgerError::Invalid(
                "a recovery needs a reason (--why)".into(),
            ));
        }
        let path = Self::path_in(warehouse);
        if path.exists() {
            return Err(LedgerError::RecoverOverLedger { path });
        }
        let w = super::read_watermark(warehouse)?.ok_or_else(|| LedgerError::NoWatermark {
            path: warehouse.join(super::WATERMARK_FILE),
        })?;
        let recovery = super::LedgerRecovery {
            lost_ledger_id: w.ledger_id.clone(),
            lost_entries: w.entries,
            lost_chain_head: w.chain_head.clone(),
            lifetime_rho: w.lifetime_rho,
            lifetime_delta: w.lifetime_delta,
            releases_lost: w.releases,
            published_quarters: w.published_quarters.clone(),
            why: why.trim().to_string(),
            day: chain::day_of(&now()),
        };
        Self::create(warehouse, init, Some(&recovery))
    }

    fn create(
        warehouse: &Path,
        init: &BudgetInit,
        recovery: Option<&super::LedgerRecovery>,
    ) -> Result<Ledger> {
        validate_total(init.total_rho, init.total_delta, init.horizon_days)?;
        let c = &init.config;
        if !(c.display_delta > 0.0 && c.display_delta < 1.0) {
            return Err(LedgerError::Invalid(
                "the display delta must be in (0, 1)".into(),
            ));
        }
        if !(c.min_scale.is_finite() && c.min_scale > 0.0) {
            return Err(LedgerError::Invalid(
                "the minimum noise scale must be positive".into(),
            ));
        }
        let path = Self::path_in(warehouse);
        if recovery.is_none() {
            watermark::refuse_second_ledger(warehouse)?;
        }
        let id = watermark::new_ledger_id()?;
        let mut conn = Self::connect(&path)?;
        let e = sql_err(&path);
        sqlite::immediate(&mut conn, &e, |tx| {
            create_schema(tx).map_err(&e)?;
            let existing: i64 = tx
                .query_row("SELECT count(*) FROM budgets", [], |r| r.get(0))
                .map_err(&e)?;
            if existing > 0 {
                return Err(LedgerError::AlreadyInitialised(warehouse.to_path_buf()));
            }
            secret::create(tx, &path)?;
            let config = serde_json::to_string(&init.config).expect("config serialises");
            tx.execute(
                "INSERT INTO config (key, value) VALUES ('privacy', ?1)",
                params![config],
            )
            .map_err(&e)?;
            watermark::store_id(tx, &path, &id)?;
            let why = match recovery {
                Some(r) => {
                    watermark::store_recovery(tx, &path, r)?;
                    format!("recovery after lost ledger {}: {}", r.lost_ledger_id, r.why)
                }
                None => "initial budget".to_string(),
            };
            insert_period(
                tx,
                init.total_rho,
                init.total_delta,
                init.horizon_days,
                &why,
            )
            .map_err(&e)?;
            // The signing key and the public chain, which starts with this ledger (after a
            // recovery, with the entry that records it).
            match recovery {
                Some(r) => chain::start_recovered(tx, &path, r, &id)?,
                None => chain::start_new(tx, &path, &id)?,
            }
            sqlite::set_schema_version(tx, SCHEMA_VERSION).map_err(&e)
        })?;
        drop(e);
        let mut ledger = Ledger { path, conn };
        // The manifest first, then the watermark. A recovery must name its new ledger in the
        // manifest now; `budget init` leaves it to the next writable opening when another
        // command holds the warehouse's lock (the watermark names the id meanwhile).
        watermark::record_in_manifest(warehouse, &id, recovery.is_some())?;
        ledger.after_commit()?;
        ledger.check_against_watermark(warehouse, true)?;
        Ok(ledger)
    }

    /// The warehouse's privacy configuration.
    pub fn config(&self) -> Result<PrivacyConfig> {
        let text: String = self
            .conn
            .query_row("SELECT value FROM config WHERE key = 'privacy'", [], |r| {
                r.get(0)
            })
            .map_err(self.e())?;
        serde_json::from_str(&text).map_err(|err| LedgerError::Corrupt {
            path: self.path.clone(),
            message: err.to_string(),
        })
    }

    /// The latest budget period, or none in a file without a budget yet.
    pub(super) fn current_period_opt(&self) -> Result<Option<BudgetPeriod>> {
        let has_table: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'budgets'",
                [],
                |r| r.get(0),
            )
            .map_err(self.e())?;
        if has_table == 0 {
            return Ok(None);
        }
        current_period(&self.conn).optional().map_err(self.e())
    }

    /// Adds `rho` to allocation `name` in the current period (creating it), with no δ.
    pub fn allocate(&mut self, name: &str, rho: f64) -> Result<()> {
        self.allocate_with_delta(name, rho, 0.0)
    }

    /// Adds `rho` and `delta` to allocation `name` in the current period. A new allocation
    /// needs a positive ρ; an existing one may get δ alone (`rho` = 0). Neither the
    /// allocations' ρ nor their δ may exceed the period's totals.
    pub fn allocate_with_delta(&mut self, name: &str, rho: f64, delta: f64) -> Result<()> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(LedgerError::Invalid(
                "an allocation needs a name of 1 to 100 characters".into(),
            ));
        }
        if !(rho.is_finite() && rho >= 0.0) {
            return Err(LedgerError::Invalid(
                "an allocation's rho must be a number of at least 0".into(),
            ));
        }
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(LedgerError::Invalid(
                "an allocation's delta must be in [0, 1)".into(),
            ));
        }
        if rho == 0.0 && delta == 0.0 {
            return Err(LedgerError::Invalid(
                "an allocation needs a positive rho or delta".into(),
            ));
        }
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            let period = current_period(tx).map_err(&e)?;
            let exists: i64 = tx
                .query_row(
                    "SELECT count(*) FROM allocations WHERE budget_id = ?1 AND name = ?2",
                    params![period.id, name],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            if exists == 0 && rho == 0.0 {
                return Err(LedgerError::Invalid(format!(
                    "there is no allocation '{name}' yet: a new allocation needs a positive rho"
                )));
            }
            let at = now();
            if rho > 0.0 {
                let allocated: f64 = tx
                    .query_row(
                        "SELECT coalesce(sum(rho), 0) FROM allocations WHERE budget_id = ?1",
                        params![period.id],
                        |r| r.get(0),
                    )
                    .map_err(&e)?;
                if allocated + rho > period.total_rho * (1.0 + SLACK) {
                    return Err(LedgerError::OverBudget {
                        quantity: "rho",
                        scope: "the budget (unallocated part)".into(),
                        needed: rho,
                        remaining: period.total_rho - allocated,
                        total: period.total_rho,
                    });
                }
                tx.execute(
                    "INSERT INTO allocations (budget_id, name, rho, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![period.id, name, rho, at],
                )
                .map_err(&e)?;
            }
            if delta > 0.0 {
                let allocated: f64 = tx
                    .query_row(
                        "SELECT coalesce(sum(delta), 0) FROM allocation_deltas WHERE budget_id = ?1",
                        params![period.id],
                        |r| r.get(0),
                    )
                    .map_err(&e)?;
                if allocated + delta > period.total_delta * (1.0 + SLACK) {
                    return Err(LedgerError::OverBudget {
                        quantity: "delta",
                        scope: "the delta budget (unallocated part)".into(),
                        needed: delta,
                        remaining: (period.total_delta - allocated).max(0.0),
                        total: period.total_delta,
                    });
                }
                tx.execute(
                    "INSERT INTO allocation_deltas (budget_id, name, delta, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![period.id, name, delta, at],
                )
                .map_err(&e)?;
            }
            chain::extend(tx, &path)
        })?;
        self.after_commit()
    }

    /// Starts a new budget period: a recorded steward action, with a new total ρ, δ or
    /// horizon (each defaults to the current one). Allocations carry over with their ρ and
    /// δ, scaled down if a total shrinks. Lifetime loss grows with every renewal.
    pub fn renew(
        &mut self,
        why: &str,
        total_rho: Option<f64>,
        total_delta: Option<f64>,
        horizon_days: Option<u32>,
    ) -> Result<BudgetPeriod> {
        if why.trim().is_empty() {
            return Err(LedgerError::Invalid(
                "a renewal needs a reason (--why)".into(),
            ));
        }
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            let old = current_period(tx).map_err(&e)?;
            let total = total_rho.unwrap_or(old.total_rho);
            let delta = total_delta.unwrap_or(old.total_delta);
            let days = match horizon_days {
                Some(d) => d,
                None => horizon_of(&old),
            };
            validate_total(total, delta, days)?;
            let id = insert_period(tx, total, delta, days, why).map_err(&e)?;
            let factor = (total / old.total_rho).min(1.0);
            let delta_factor = if old.total_delta > 0.0 {
                (delta / old.total_delta).min(1.0)
            } else {
                0.0
            };
            let carried = |sql: &str| -> Result<Vec<(String, f64)>> {
                let mut stmt = tx.prepare(sql).map_err(&e)?;
                let rows: Vec<(String, f64)> = stmt
                    .query_map(params![old.id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?))
                    })
                    .map_err(&e)?
                    .collect::<Result<_, _>>()
                    .map_err(&e)?;
                Ok(rows)
            };
            let allocations = carried(
                "SELECT name, sum(rho) FROM allocations WHERE budget_id = ?1 GROUP BY name ORDER BY min(id)",
            )?;
            let deltas = carried(
                "SELECT name, sum(delta) FROM allocation_deltas WHERE budget_id = ?1 GROUP BY name ORDER BY min(id)",
            )?;
            let at = now();
            for (name, rho) in allocations {
                tx.execute(
                    "INSERT INTO allocations (budget_id, name, rho, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, rho * factor, at],
                )
                .map_err(&e)?;
            }
            for (name, d) in deltas {
                let d = d * delta_factor;
                if d > 0.0 && d < 1.0 {
                    tx.execute(
                        "INSERT INTO allocation_deltas (budget_id, name, delta, created_at) VALUES (?1, ?2, ?3, ?4)",
                        params![id, name, d, at],
                    )
                    .map_err(&e)?;
                }
            }
            let period = tx
                .query_row(
                    "SELECT id, total_rho, total_delta, starts, ends, why FROM budgets WHERE id = ?1",
                    params![id],
                    period_row,
                )
                .map_err(&e)?;
            chain::extend(tx, &path)?;
            Ok(period)
        })
        .and_then(|period| self.after_commit().map(|()| period))
    }

    /// The budget, its allocations and what they have spent.
    pub fn show(&self) -> Result<BudgetView> {
        let period = self
            .current_period_opt()?
            .ok_or_else(|| LedgerError::NotInitialised(self.path.clone()))?;
        let (spent_rho, spent_delta): (f64, f64) = self
            .conn
            .query_row(
                "SELECT coalesce(sum(rho), 0), coalesce(sum(delta), 0) FROM debits WHERE budget_id = ?1",
                params![period.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.e())?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.name, sum(a.rho),
                        (SELECT coalesce(sum(d.rho), 0) FROM debits d WHERE d.budget_id = a.budget_id AND d.allocation = a.name),
                        (SELECT coalesce(sum(x.delta), 0) FROM allocation_deltas x WHERE x.budget_id = a.budget_id AND x.name = a.name),
                        (SELECT coalesce(sum(d.delta), 0) FROM debits d WHERE d.budget_id = a.budget_id AND d.allocation = a.name)
                 FROM allocations a WHERE a.budget_id = ?1 GROUP BY a.name ORDER BY min(a.id)",
            )
            .map_err(self.e())?;
        let allocations = stmt
            .query_map(params![period.id], |r| {
                Ok(AllocationView {
                    name: r.get(0)?,
                    rho: r.get(1)?,
                    spent_rho: r.get(2)?,
                    delta: r.get(3)?,
                    spent_delta: r.get(4)?,
                })
            })
            .map_err(self.e())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.e())?;
        let (periods, lifetime_rho, lifetime_delta): (i64, f64, f64) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM budgets), (SELECT coalesce(sum(rho), 0) FROM debits),
                        (SELECT coalesce(sum(delta), 0) FROM debits)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.e())?;
        // A recovered ledger's lifetime starts at the lost ledger's spend, never at zero.
        let recovered_from = self.recovered_from()?;
        let (carried_rho, carried_delta) = recovered_from
            .as_ref()
            .map_or((0.0, 0.0), |r| (r.lifetime_rho, r.lifetime_delta));
        Ok(BudgetView {
            config: self.config()?,
            period,
            periods: periods as usize,
            spent_rho,
            spent_delta,
            allocations,
            lifetime_rho: carried_rho + lifetime_rho,
            lifetime_delta: carried_delta + lifetime_delta,
            recovered_from,
        })
    }

    /// Checks that a release debiting `spend` from `allocation` would be paid now, without
    /// debiting anything: the same checks as [`Ledger::begin_release`]. Works on a read-only
    /// ledger.
    pub fn check_affordable(&self, allocation: &str, spend: Spend) -> Result<()> {
        check_budget(&self.conn, &self.path, allocation, spend)
    }
}

/// Whether `allocation` and the warehouse budget can pay `asked` now: the checks of
/// [`Ledger::begin_release`], run inside its transaction, and by
/// [`Ledger::check_affordable`] for a plan that spends nothing. What each has spent plus
/// `asked` must fit within its cap ([`Spend::fits_within`]), in ρ and in δ.
pub(super) fn check_budget(
    conn: &Connection,
    path: &Path,
    allocation: &str,
    asked: Spend,
) -> Result<()> {
    let e = sql_err(path);
    let period = current_period(conn).map_err(&e)?;
    if now() > period.ends {
        return Err(LedgerError::HorizonEnded(period.ends));
    }
    let allocated: Option<f64> = conn
        .query_row(
            "SELECT sum(rho) FROM allocations WHERE budget_id = ?1 AND name = ?2",
            params![period.id, allocation],
            |row| row.get(0),
        )
        .map_err(&e)?;
    let Some(allocated) = allocated else {
        let mut stmt = conn
            .prepare("SELECT DISTINCT name FROM allocations WHERE budget_id = ?1 ORDER BY name")
            .map_err(&e)?;
        let known: Vec<String> = stmt
            .query_map(params![period.id], |row| row.get(0))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        return Err(LedgerError::UnknownAllocation {
            name: allocation.to_string(),
            known: if known.is_empty() {
                "(none: create one with `outreach budget allocate NAME RHO`)".into()
            } else {
                known.join(", ")
            },
        });
    };
    let (spent_total, spent_delta): (f64, f64) = conn
        .query_row(
            "SELECT coalesce(sum(rho), 0), coalesce(sum(delta), 0) FROM debits WHERE budget_id = ?1",
            params![period.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(&e)?;
    let (spent_alloc, spent_alloc_delta): (f64, f64) = conn
        .query_row(
            "SELECT coalesce(sum(rho), 0), coalesce(sum(delta), 0) FROM debits WHERE budget_id = ?1 AND allocation = ?2",
            params![period.id, allocation],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(&e)?;
    let allocated_delta: f64 = conn
        .query_row(
            "SELECT coalesce(sum(delta), 0) FROM allocation_deltas WHERE budget_id = ?1 AND name = ?2",
            params![period.id, allocation],
            |row| row.get(0),
        )
        .map_err(&e)?;
    let as_spend = |rho, delta| {
        Spend::new(rho, delta).map_err(|source| LedgerError::BadSpend {
            path: path.to_path_buf(),
            source,
        })
    };
    let allocation_spent = as_spend(spent_alloc, spent_alloc_delta)?;
    let allocation_cap = as_spend(allocated, allocated_delta)?;
    let warehouse_spent = as_spend(spent_total, spent_delta)?;
    let warehouse_cap = as_spend(period.total_rho, period.total_delta)?;
    // Each limit is one component of what a scope has spent and its cap, in the order they
    // are reported. An allocation's δ is checked only when δ is asked for: a release that
    // spends none is never refused for its allocation's δ.
    let limits = [
        (
            Quantity::Rho,
            format!("allocation '{}'", allocation),
            allocation_spent,
            allocation_cap,
            true,
        ),
        (
            Quantity::Rho,
            "the warehouse budget".to_string(),
            warehouse_spent,
            warehouse_cap,
            true,
        ),
        (
            Quantity::Delta,
            "the warehouse delta budget".to_string(),
            warehouse_spent,
            warehouse_cap,
            true,
        ),
        (
            Quantity::Delta,
            format!("the delta budget of allocation '{}'", allocation),
            allocation_spent,
            allocation_cap,
            asked.delta() > 0.0,
        ),
    ];
    for (quantity, scope, spent, cap, applies) in limits {
        let (spent, cap, needed) = (
            spent.only(quantity),
            cap.only(quantity),
            asked.only(quantity),
        );
        let fits = spent
            .checked_add(needed)
            .is_some_and(|after| after.fits_within(&cap));
        if applies && !fits {
            return Err(LedgerError::OverBudget {
                quantity: quantity.name(),
                scope,
                needed: needed.get(quantity),
                remaining: (cap.get(quantity) - spent.get(quantity)).max(0.0),
                total: cap.get(quantity),
            });
        }
    }
    Ok(())
}

/// The latest budget period: the one releases debit.
pub(super) fn current_period(conn: &Connection) -> rusqlite::Result<BudgetPeriod> {
    conn.query_row(
        "SELECT id, total_rho, total_delta, starts, ends, why FROM budgets ORDER BY id DESC LIMIT 1",
        [],
        period_row,
    )
}

fn period_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BudgetPeriod> {
    Ok(BudgetPeriod {
        id: r.get(0)?,
        total_rho: r.get(1)?,
        total_delta: r.get(2)?,
        starts: r.get(3)?,
        ends: r.get(4)?,
        why: r.get(5)?,
    })
}

fn horizon_of(p: &BudgetPeriod) -> u32 {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (parse(&p.starts), parse(&p.ends)) {
        (Some(a), Some(b)) => (b - a).num_days().clamp(1, 3650) as u32,
        _ => 365,
    }
}

fn validate_total(rho: f64, delta: f64, days: u32) -> Result<()> {
    if !(rho.is_finite() && rho > 0.0) {
        return Err(LedgerError::Invalid(
            "the total rho must be a positive number".into(),
        ));
    }
    if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
        return Err(LedgerError::Invalid(
            "the total delta must be in [0, 1)".into(),
        ));
    }
    if days == 0 || days > 3650 {
        return Err(LedgerError::Invalid(
            "the horizon must be 1 to 3650 days".into(),
        ));
    }
    Ok(())
}

fn insert_period(
    tx: &rusqlite::Transaction<'_>,
    rho: f64,
    delta: f64,
    days: u32,
    why: &str,
) -> rusqlite::Result<i64> {
    let starts = chrono::Utc::now();
    let ends = starts + chrono::Duration::days(i64::from(days));
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tx.execute(
        "INSERT INTO budgets (total_rho, total_delta, starts, ends, why, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![rho, delta, fmt(starts), fmt(ends), why, fmt(starts)],
    )?;
    Ok(tx.last_insert_rowid())
}
