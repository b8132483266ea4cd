//! The ledger's invariants, checked by the tests and by the steward after a crash: SQLite's
//! own integrity check, every release with its debit and every outcome with its release, and
//! no budget period or allocation spent beyond its ρ or δ.

use super::{Ledger, Result};

impl Ledger {
    /// Checks the ledger's invariants; returns what is wrong, if anything. Used by tests and
    /// by the steward after a crash.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let integrity: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(self.e())?;
        if integrity != "ok" {
            problems.push(format!("integrity_check: {integrity}"));
        }
        let queries = [
            (
                "a release without its debit",
                "SELECT count(*) FROM releases r WHERE NOT EXISTS (SELECT 1 FROM debits d WHERE d.release_id = r.id)",
            ),
            (
                "a debit without its release",
                "SELECT count(*) FROM debits d WHERE NOT EXISTS (SELECT 1 FROM releases r WHERE r.id = d.release_id)",
            ),
            (
                "an outcome without its release",
                "SELECT count(*) FROM release_outcomes o WHERE NOT EXISTS (SELECT 1 FROM releases r WHERE r.id = o.release_id)",
            ),
            (
                "a budget period overspent",
                "SELECT count(*) FROM budgets b WHERE (SELECT coalesce(sum(rho), 0) FROM debits d WHERE d.budget_id = b.id) > b.total_rho * (1 + 1e-12)",
            ),
            (
                "an allocation overspent",
                "SELECT count(*) FROM (SELECT a.budget_id, a.name, sum(a.rho) AS total FROM allocations a GROUP BY a.budget_id, a.name) a WHERE (SELECT coalesce(sum(rho), 0) FROM debits d WHERE d.budget_id = a.budget_id AND d.allocation = a.name) > a.total * (1 + 1e-12)",
            ),
            (
                "a budget period's delta overspent",
                "SELECT count(*) FROM budgets b WHERE (SELECT coalesce(sum(delta), 0) FROM debits d WHERE d.budget_id = b.id) > b.total_delta * (1 + 1e-12) + 1e-300",
            ),
            (
                "an allocation's delta overspent",
                "SELECT count(*) FROM (SELECT x.budget_id, x.name, sum(x.delta) AS total FROM allocation_deltas x GROUP BY x.budget_id, x.name) x WHERE (SELECT coalesce(sum(delta), 0) FROM debits d WHERE d.budget_id = x.budget_id AND d.allocation = x.name) > x.total * (1 + 1e-12)",
            ),
        ];
        for (what, sql) in queries {
            let n: i64 = self
                .conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(self.e())?;
            if n > 0 {
                problems.push(format!("{n} × {what}"));
            }
        }
        Ok(problems)
    }
}
