//! `outreach verify --since HEAD_FILE`: whether today's public chain extends a signed head
//! that a reader saved earlier (`v1/ledger/head.json`, or any of `v1/ledger/heads/{size}.json`),
//! so that a rolled-back or restarted ledger cannot pass for the one the reader saw.
//!
//! ## What "extends" means
//!
//! The saved head covers `n` entries ending in hash `h`, and its signature must verify with
//! the public key it names. Today's record must first verify as a whole ([`super::verify`]).
//! Then it **extends the saved head** in one of two ways:
//!
//! 1. **Directly**: today's chain has at least `n` entries and entry `n - 1` hashes to `h`.
//!    Each entry's hash covers the one before it, so today's first `n` entries are the saved
//!    ones, in order, and whatever follows was added after.
//! 2. **Across a recorded recovery**: today's chain is a new ledger's (`budget recover`):
//!    entry 0 is a genesis with `recovered: true` and entry 1 a `recovery` whose
//!    `lost_entries` is `n` and whose `lost_chain_head` is `h`. The restart then cites the
//!    very head the reader holds, with the spend it carried over and the reason, signed with
//!    the new key as part of the new chain. A recovery that cites another head (an older one,
//!    a newer one, another ledger's) does not extend the saved head: the entries between the
//!    two were lost without a record, or the reader's head belongs to another chain.
//!
//! Anything else fails, naming the entry where the two part: with the saved mirror beside the
//! head file (`SITE/v1/ledger/pages/*.json`), the first entry whose hash differs or that
//! today's chain lacks; without it, the first entry today's chain lacks (a chain shorter than
//! the head: rolled back or restarted), or entry `n - 1` (the chains part at or before it).

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

use super::check::{Walked, fetch_json, hash32, verify_walked};
use super::{PublicRecord, VerifyError, VerifyReport};
use crate::ledger::chain::{self, from_hex, head_message, to_hex};
use crate::present::views::{LedgerHead, LedgerPage, LedgerSummary};

/// How today's chain extends the saved head.
#[derive(Debug, Clone, PartialEq)]
pub enum Extends {
    /// Today's first `saved_size` entries are the saved ones; `today_size` in all.
    Directly { today_size: i64 },
    /// Today's chain starts after a recorded recovery that cites the saved head.
    AcrossRecovery {
        lost_ledger_id: String,
        why: String,
        day: String,
        today_size: i64,
    },
}

/// What `--since` found, for a reader: its `Display` says it in plain words.
#[derive(Debug, Clone, PartialEq)]
pub struct SinceReport {
    pub saved_size: i64,
    pub saved_hash: String,
    pub extends: Extends,
}

impl std::fmt::Display for SinceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.extends {
            Extends::Directly { today_size } => write!(
                f,
                "Today's chain extends the head you saved: its first {} entries are the ones your head covers (ending in {}), and {} were added since.",
                self.saved_size,
                self.saved_hash,
                today_size - self.saved_size
            ),
            Extends::AcrossRecovery {
                lost_ledger_id,
                why,
                day,
                today_size,
            } => write!(
                f,
                "Today's chain is a new ledger started on {day} after ledger {lost_ledger_id} was lost; its recovery entry (entry 1) cites the head you saved ({} entries ending in {}) and carries its spend over. The reason given: {why}. The new chain has {today_size} entries.",
                self.saved_size, self.saved_hash
            ),
        }
    }
}

/// The saved head's own checks: whole hex, a size, and a signature that verifies with the
/// public key it names.
fn check_saved(saved: &LedgerHead) -> Result<[u8; 32], VerifyError> {
    let bad = |why: &str| VerifyError::SavedHead(why.to_string());
    if saved.size <= 0 {
        return Err(bad("it covers no entry"));
    }
    let hash = hash32(&saved.hash).ok_or_else(|| bad("its hash is not 64 hex digits"))?;
    let signature: [u8; 64] = from_hex(&saved.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("its signature is not 128 hex digits"))?;
    let key: [u8; 32] = from_hex(&saved.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("its public key is not 64 hex digits"))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| bad("its public key is not an Ed25519 public key"))?;
    key.verify_strict(
        &head_message(saved.size as u64, &hash),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| {
        bad("its signature does not verify with the public key it names: it is no head the warehouse signed")
    })?;
    Ok(hash)
}

/// The entries of a saved mirror, in order, up to `size` of them (its pages may hold more,
/// when the head file is an older head of a later mirror).
fn saved_entries(
    record: &dyn PublicRecord,
    size: i64,
) -> Result<Vec<(String, String)>, VerifyError> {
    let summary: LedgerSummary = fetch_json(record, "v1/ledger.json")?;
    let mut out = Vec::new();
    for page in 1..=summary.pages {
        let served: LedgerPage = fetch_json(record, &format!("v1/ledger/pages/{page}.json"))?;
        for e in served.entries {
            if out.len() as i64 >= size {
                return Ok(out);
            }
            out.push((e.kind, e.hash.to_ascii_lowercase()));
        }
    }
    Ok(out)
}

fn parted(saved: &LedgerHead, seq: i64, problem: String) -> VerifyError {
    VerifyError::Parted {
        size: saved.size,
        hash: saved.hash.clone(),
        seq,
        problem,
    }
}

/// Whether today's chain, walked and verified, extends `saved` (see the module docs).
/// `saved_record` is the saved mirror the head file sits in, when there is one.
pub(super) fn extends(
    today: &[Walked],
    saved: &LedgerHead,
    saved_record: Option<&dyn PublicRecord>,
) -> Result<SinceReport, VerifyError> {
    let hash = to_hex(&check_saved(saved)?);
    let n = saved.size;
    let report = |extends| SinceReport {
        saved_size: n,
        saved_hash: hash.clone(),
        extends,
    };
    let len = today.len() as i64;
    if len >= n && today[(n - 1) as usize].hash.eq_ignore_ascii_case(&hash) {
        return Ok(report(Extends::Directly { today_size: len }));
    }
    // A new ledger's chain: genesis (recovered), then the recovery entry.
    let recovered = today
        .first()
        .is_some_and(|g| g.body.get("recovered").and_then(Value::as_bool) == Some(true));
    if let Some(r) = today
        .get(1)
        .filter(|r| recovered && r.kind == chain::RECOVERY)
    {
        let text = |field: &str| {
            r.body
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let cited_size = r.body.get("lost_entries").and_then(Value::as_i64);
        let cited_hash = text("lost_chain_head");
        if cited_size == Some(n) && cited_hash.eq_ignore_ascii_case(&hash) {
            return Ok(report(Extends::AcrossRecovery {
                lost_ledger_id: text("lost_ledger_id"),
                why: text("why"),
                day: text("day"),
                today_size: len,
            }));
        }
        return Err(parted(
            saved,
            1,
            format!(
                "today's chain is a new ledger whose recovery entry cites the lost chain's head of {} entries ending in {cited_hash}, not yours: {}",
                cited_size.map_or("an unknown number of".to_string(), |s| s.to_string()),
                match cited_size {
                    Some(c) if c > n => "your head is older than the one the recovery cites, so this record cannot show that the lost chain extended yours; check the lost chain's head against yours".to_string(),
                    Some(c) if c < n => format!(
                        "entries {c} to {} of the chain you saw were lost without a record",
                        n - 1
                    ),
                    _ => "the recovery follows another chain than the one you saw".to_string(),
                }
            ),
        ));
    }
    // The chains part: name the first entry where they differ.
    if let Some(record) = saved_record {
        let old = saved_entries(record, n)?;
        if old.len() as i64 == n
            && old
                .last()
                .is_some_and(|(_, h)| h.eq_ignore_ascii_case(&hash))
        {
            for (seq, (kind, old_hash)) in old.iter().enumerate() {
                match today.get(seq) {
                    None => {
                        return Err(parted(
                            saved,
                            seq as i64,
                            format!(
                                "today's chain ends with {len} entries, before your {kind} entry {seq}: the entries from {seq} on were rolled back"
                            ),
                        ));
                    }
                    Some(e) if !e.hash.eq_ignore_ascii_case(old_hash) => {
                        return Err(parted(
                            saved,
                            seq as i64,
                            format!(
                                "your record has a {kind} entry with hash {old_hash} there, today's chain a {} entry with hash {}{}",
                                e.kind,
                                e.hash,
                                if seq == 0 {
                                    ": the chain was started over, with no recovery entry"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if len < n {
        let restart = if len > 0 && today[0].body.get("recovered").is_none() {
            " Today's chain may be a restart: the chain cannot say, as a recovery would."
        } else {
            ""
        };
        return Err(parted(
            saved,
            len,
            format!(
                "today's chain has {len} entries, fewer than the {n} your head covers: entries {len} to {} are gone (rolled back or restarted).{restart}",
                n - 1
            ),
        ));
    }
    Err(parted(
        saved,
        n - 1,
        format!(
            "today's entry {} hashes to {}, not to your head's {hash}: the chains part at or before it (give the head file of a saved mirror to name the first entry that differs)",
            n - 1,
            today[(n - 1) as usize].hash
        ),
    ))
}

/// Verifies the public record as [`super::verify`] does, then that today's chain extends the
/// head the reader saved (see the module docs). `saved_record` is the saved mirror the head
/// file sits in, when there is one; it is read only to name the first entry that differs.
pub fn verify_since(
    record: &dyn PublicRecord,
    key: &VerifyingKey,
    saved: &LedgerHead,
    saved_record: Option<&dyn PublicRecord>,
) -> Result<(VerifyReport, SinceReport), VerifyError> {
    let (report, today) = verify_walked(record, key)?;
    let since = extends(&today, saved, saved_record)?;
    Ok((report, since))
}
