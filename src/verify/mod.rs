//! Anyone can verify the public record: a client of what the warehouse publishes (the API, or
//! a static copy of it), which reads the public routes alone, never the ledger's file, and
//! checks them against the warehouse's public key.
//!
//! [`verify`] checks, in order:
//!
//! 1. the signed head (`v1/ledger/head.json`): its Ed25519 signature over the documented
//!    message (`crate::ledger::chain::head_message`) verifies with the key given;
//! 2. the chain (`v1/ledger.json` and every page): each entry's hash is the hash of its
//!    contents, each names the one before, their numbers run from 0 without a gap, each has
//!    a day and no time of day, and the last is the head the signature covers;
//! 3. the totals, recomputed from the entries: no budget period, and no allocation of a
//!    period the chain lists whole, ever spent more ρ or δ than its budget, and the lifetime
//!    spend never exceeds the sum of the periods' budgets;
//! 4. the served budget (`v1/budget.json`) against those totals;
//! 5. every served release (`v1/releases.json`, `v1/releases/{id}.json`) is on the chain
//!    with the same numbers, spend and entry hash, and every release the chain holds is
//!    served: none was run and hidden;
//! 6. every served publication (`v1/quarters.json`) is on the chain with the same quarter,
//!    releases, predecessor and entry hash.
//!
//! It returns a [`VerifyReport`] of what it checked, in plain words, or the first
//! [`VerifyError`], which names the entry (its seq and kind) or the route and what is wrong.
//!
//! [`verify_since`] (`outreach verify --since HEAD_FILE`) then checks that today's chain
//! extends a head the reader saved earlier, directly or across a recorded recovery, and
//! otherwise names the entry where the two part (see `since.rs`).
//!
//! ## Files
//!
//! - `mod.rs`: [`PublicRecord`], [`VerifyError`], [`VerifyReport`], [`parse_public_key`].
//! - `check.rs`: the checks.
//! - `since.rs`: whether today's chain extends a saved head ([`verify_since`]).

mod check;
mod since;

use ed25519_dalek::VerifyingKey;

use crate::fault::Fault;
use crate::ledger::chain::{PUBLIC_KEY_LABEL, from_hex};

pub use check::verify;
pub use since::{Extends, SinceReport, verify_since};

/// Where the public record is read from. `route` is the static form of a public route,
/// relative, with its format as a suffix: `v1/ledger.json`, `v1/ledger/pages/1.json`,
/// `v1/ledger/head.json`, `v1/budget.json`, `v1/releases.json`, `v1/releases/12.json`,
/// `v1/quarters.json`. A folder written by `export-site`, an http(s) URL and the API itself
/// are all records.
pub trait PublicRecord {
    /// The body served at `route`.
    fn fetch(&self, route: &str) -> Result<Vec<u8>, VerifyError>;
}

/// Why the public record does not verify, or could not be read. Each names the entry or the
/// route, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// The record could not be read at a route (missing, unreachable).
    #[error("cannot read {route} of the public record: {message}")]
    Fetch { route: String, message: String },
    /// A route's body is not what the public record serves there.
    #[error("{route} of the public record cannot be read as its route's answer: {message}")]
    Malformed { route: String, message: String },
    /// The public key given is not a key.
    #[error("the public key given cannot be read: {0}")]
    PublicKey(String),
    /// The signed head does not hold.
    #[error("the signed head of the ledger chain (v1/ledger/head.json): {0}")]
    Head(String),
    /// An entry of the chain does not hold.
    #[error("ledger entry {seq} ({kind}): {problem}")]
    Entry {
        seq: i64,
        kind: String,
        problem: String,
    },
    /// A served route disagrees with the chain.
    #[error("{route}: {problem}")]
    Served { route: String, problem: String },
    /// The head given to `--since` is not a signed head.
    #[error("the saved head given to --since: {0}")]
    SavedHead(String),
    /// Today's chain does not extend the saved head.
    #[error(
        "today's chain does not extend the head you saved ({size} entries ending in {hash}): they part at entry {seq}: {problem}"
    )]
    Parted {
        size: i64,
        hash: String,
        seq: i64,
        problem: String,
    },
}

impl VerifyError {
    /// Who acts: a record that cannot be read or a key that is no key is the input's fault
    /// (exit 2), and so is a record that does not verify, which the reader must not trust.
    pub fn fault(&self) -> Fault {
        match self {
            VerifyError::Fetch { .. }
            | VerifyError::Malformed { .. }
            | VerifyError::PublicKey(_)
            | VerifyError::Head(_)
            | VerifyError::Entry { .. }
            | VerifyError::Served { .. }
            | VerifyError::SavedHead(_)
            | VerifyError::Parted { .. } => Fault::BadInput,
        }
    }
}

/// The spend of one budget period as the chain adds it up.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodTotal {
    pub period: i64,
    pub budget_rho: f64,
    pub budget_delta: f64,
    pub spent_rho: f64,
    pub spent_delta: f64,
    /// Whether the period started before the chain (its start summarised by `genesis`).
    pub summarised: bool,
}

/// What [`verify`] checked, for a reader: its `Display` says it in plain words.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// The public key the head was checked with, hex.
    pub public_key: String,
    /// Entries on the chain, and the last one's hash (hex).
    pub entries: i64,
    pub head_hash: String,
    pub pages: i64,
    /// Whether the chain starts from a ledger that existed before it.
    pub migrated: bool,
    pub periods: Vec<PeriodTotal>,
    pub lifetime_spent_rho: f64,
    pub lifetime_spent_delta: f64,
    pub lifetime_budget_rho: f64,
    pub lifetime_budget_delta: f64,
    /// Debit entries, and how many of them are researchers' private releases.
    pub debits: usize,
    pub private_debits: usize,
    /// Served releases checked against their entries, and those made before the chain.
    pub releases_checked: usize,
    pub releases_before_chain: usize,
    /// Served publications checked against their entries, and those made before the chain.
    pub publications_checked: usize,
    pub publications_before_chain: usize,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "The signed head covers {} entries, ending in {}; its signature verifies with the public key {}.",
            self.entries, self.head_hash, self.public_key
        )?;
        writeln!(
            f,
            "Walked the {} entries on {} page(s): each entry's hash is the hash of its contents, each names the hash of the one before, their numbers run from 0 without a gap, and each is dated to the day only.",
            self.entries, self.pages
        )?;
        if self.migrated {
            writeln!(
                f,
                "The chain starts from a ledger that existed before it: its first entry summarises the earlier history, which is not listed."
            )?;
        } else {
            writeln!(
                f,
                "The chain starts with its ledger: every public event is listed."
            )?;
        }
        for p in &self.periods {
            writeln!(
                f,
                "Budget period {}: spent rho = {} of {}, delta = {} of {}{}.",
                p.period,
                p.spent_rho,
                p.budget_rho,
                p.spent_delta,
                p.budget_delta,
                if p.summarised {
                    " (its spending before the chain as the first entry summarises it)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "Lifetime: spent rho = {} of the periods' {}, delta = {} of {}; no period, and no allocation of a period the chain lists whole, ever spent more than its budget.",
            self.lifetime_spent_rho,
            self.lifetime_budget_rho,
            self.lifetime_spent_delta,
            self.lifetime_budget_delta
        )?;
        writeln!(
            f,
            "Debits: {}, {} of them researchers' private releases, public as their day and spend only.",
            self.debits, self.private_debits
        )?;
        writeln!(
            f,
            "The served budget (v1/budget.json) matches the chain's totals."
        )?;
        writeln!(
            f,
            "Releases served: {} checked, each on the chain with the same numbers, spend and entry hash, and every release on the chain is served{}.",
            self.releases_checked,
            if self.releases_before_chain > 0 {
                format!(
                    "; {} made before the chain began, not on it",
                    self.releases_before_chain
                )
            } else {
                String::new()
            }
        )?;
        write!(
            f,
            "Publications served: {} checked, each on the chain with the same quarter, releases and entry hash{}.",
            self.publications_checked,
            if self.publications_before_chain > 0 {
                format!(
                    "; {} made before the chain began, not on it",
                    self.publications_before_chain
                )
            } else {
                String::new()
            }
        )
    }
}

/// Reads a public key as `outreach key show` prints it: the line
/// `outreach-ledger-ed25519 <64 hex digits>` (anywhere in the text, so the whole output of
/// `key show` or a file holding that line will do), or the 64 hex digits alone.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, VerifyError> {
    let labelled = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(PUBLIC_KEY_LABEL)
            .map(|rest| rest.trim().to_string())
    });
    let digits = labelled.unwrap_or_else(|| text.trim().to_string());
    let bytes: [u8; 32] = from_hex(&digits)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            VerifyError::PublicKey(format!(
                "expected 64 hex digits (32 bytes), or the line `{PUBLIC_KEY_LABEL} <hex>` that `outreach key show` prints"
            ))
        })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| {
        VerifyError::PublicKey("the 32 bytes are not an Ed25519 public key".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_public_key_is_read_from_its_line_or_its_hex_alone() {
        let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
        let hex = crate::ledger::chain::to_hex(key.as_bytes());
        let printed =
            format!("public key (Ed25519, hex): {hex}\nfile form:\n{PUBLIC_KEY_LABEL} {hex}\n");
        assert_eq!(parse_public_key(&printed).unwrap(), key);
        assert_eq!(parse_public_key(&format!(" {hex}\n")).unwrap(), key);
        assert_eq!(
            parse_public_key(&hex.to_uppercase()).unwrap(),
            key,
            "hex in either case"
        );
        let long = format!("{hex}00");
        for bad in ["", "abc", &hex[..62], long.as_str(), "zz"] {
            let e = parse_public_key(bad).unwrap_err();
            assert!(matches!(e, VerifyError::PublicKey(_)), "{bad}: {e}");
            assert_eq!(e.fault().exit_code(), 2);
        }
    }
}
