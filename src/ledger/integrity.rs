//! The ledger's invariants, checked by the tests and by the steward after a crash: SQLite's
//! own integrity check, every release with its debit and every outcome with its release, no
//! budget period or allocation spent beyond its ρ or δ, and the public chain whole: each
//! entry's hash the hash of its contents and of the entry before, and each signed head a
//! head of the chain with a signature that the ledger's public key verifies.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::chain::{entry_hash, from_hex, head_message, to_hex};
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
        problems.extend(self.chain_problems()?);
        Ok(problems)
    }

    /// What is wrong with the public chain as stored: the check `outreach verify` makes of
    /// the served record, made here on the ledger itself, so that the steward learns of a
    /// damaged chain before a reader does.
    fn chain_problems(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let entries = self.chain()?;
        let mut prev = [0u8; 32];
        let mut hashes = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let at = format!("chain entry {} ({})", e.seq, e.kind);
            if e.seq != i as u64 {
                problems.push(format!(
                    "{at}: numbered out of order, where entry {i} should be"
                ));
                return Ok(problems);
            }
            if e.prev_hash != to_hex(&prev) {
                problems.push(format!(
                    "{at}: does not name the hash of the entry before it"
                ));
            }
            let hash = entry_hash(&prev, e.seq, &e.kind, &e.body);
            if to_hex(&hash) != e.hash {
                problems.push(format!(
                    "{at}: its stored hash is not the hash of its contents"
                ));
            }
            // The walk goes on from the stored hash, which the next entry names and the heads
            // sign: an edited entry is named once, not again at every entry and head after it.
            let stored = from_hex(&e.hash).and_then(|h| <[u8; 32]>::try_from(h).ok());
            prev = stored.unwrap_or(hash);
            hashes.push(prev);
        }
        let heads = self.signed_heads()?;
        let Some(first) = heads.first() else {
            return Ok(problems);
        };
        let key = from_hex(&first.public_key)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .and_then(|k| VerifyingKey::from_bytes(&k).ok());
        let Some(key) = key else {
            problems.push("the ledger's public key cannot be read".to_string());
            return Ok(problems);
        };
        for head in &heads {
            let at = format!("the signed head of size {}", head.size);
            let covered = usize::try_from(head.size)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|last| hashes.get(last));
            let Some(hash) = covered else {
                problems.push(format!("{at}: covers more entries than the chain holds"));
                continue;
            };
            if head.hash != to_hex(hash) {
                problems.push(format!(
                    "{at}: is not the hash of the chain's entries up to it"
                ));
            }
            let signature = from_hex(&head.signature)
                .and_then(|s| <[u8; 64]>::try_from(s).ok())
                .map(|s| Signature::from_bytes(&s));
            let signed =
                signature.is_some_and(|s| key.verify(&head_message(head.size, hash), &s).is_ok());
            if !signed {
                problems.push(format!(
                    "{at}: its signature does not verify with the ledger's public key"
                ));
            }
        }
        Ok(problems)
    }
}
