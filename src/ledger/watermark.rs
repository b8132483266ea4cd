//! The warehouse vouches for its ledger: the ledger's id, recorded in the manifest, and a
//! watermark beside it (`WAREHOUSE/ledger-watermark.json`) that records how far the ledger
//! has got. Every command that opens the ledger ([`Ledger::open`], [`Ledger::open_read_only`])
//! compares the two before anything runs, so a lost ledger, another warehouse's ledger or an
//! older copy put back is refused instead of spending the same budget twice.
//!
//! - **The id.** `budget init` draws a random 128-bit id (hex) from the OS generator and
//!   stores it in the ledger (`config`, key `ledger_id`); a ledger from before ids gets one
//!   when a steward's command first opens it. The manifest records it (`Manifest.ledger_id`).
//! - **The watermark** is `{"ledger_id", "entries", "lifetime_rho", "lifetime_delta",
//!   "chain_head", "releases", "published_quarters"}`: the public chain's size and last hash,
//!   the lifetime spend (with what a recovery carried over), the highest release id and the
//!   quarters published. It is written with [`crate::warehouse::write_atomic`] after each
//!   committed write transaction of the ledger, so a crash between the two leaves the ledger
//!   ahead of the watermark, never behind; the next command that opens the ledger for
//!   writing accepts it and writes the watermark again.
//! - **The check.** A missing ledger where the manifest or the watermark names one, a ledger
//!   with another id, or one behind the watermark (fewer entries, or less spent) is refused
//!   with a message naming both.
//! - **Recovery.** A steward who has truly lost the ledger starts a new one with
//!   [`Ledger::recover`]: its lifetime spend starts at the watermark's, and the event is a
//!   `recovery` entry on the public chain that cites the lost ledger's id, size, head and
//!   spend, and the reason.
//!
//! What this cannot see: the same exports loaded into a new warehouse folder, with a new
//! ledger and no watermark. Only the public record shows that (a new chain where readers
//! hold an earlier head; see `outreach verify --since`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError, Result, sql_err};
use crate::warehouse::{MANIFEST_FILE, Warehouse, WarehouseError};

/// The watermark's file name inside the warehouse folder.
pub const WATERMARK_FILE: &str = "ledger-watermark.json";

/// The `config` key of the ledger's id.
const ID_KEY: &str = "ledger_id";

/// The `config` key of what a recovery carried over from a lost ledger.
const RECOVERY_KEY: &str = "recovered_from";

/// Sums of floating-point spends are compared with this relative slack: the same debits
/// summed again may differ in the last bits.
const SPEND_SLACK: f64 = 1e-9;

/// How far the ledger has got, as recorded beside the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// The ledger's id (32 hex digits).
    pub ledger_id: String,
    /// The number of entries of the public chain.
    pub entries: u64,
    /// Lifetime ρ spent, including what a recovery carried over.
    pub lifetime_rho: f64,
    /// Lifetime δ spent, including what a recovery carried over.
    pub lifetime_delta: f64,
    /// The last entry's hash (hex); empty before the first entry.
    pub chain_head: String,
    /// The highest release id of the ledger (0 before the first release).
    #[serde(default)]
    pub releases: u64,
    /// The quarters this ledger has published, sorted.
    #[serde(default)]
    pub published_quarters: Vec<String>,
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ledger {}, {} chain entries, lifetime rho = {}, delta = {}",
            self.ledger_id, self.entries, self.lifetime_rho, self.lifetime_delta
        )
    }
}

/// What a recovery carried over from the lost ledger: stored in the new ledger, shown by
/// `budget show` and `/v1/budget`, and recorded as the chain's `recovery` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecovery {
    /// The lost ledger's id.
    pub lost_ledger_id: String,
    /// The lost ledger's chain size and head, as its watermark recorded them.
    pub lost_entries: u64,
    pub lost_chain_head: String,
    /// The lost ledger's lifetime spend: the new ledger's lifetime spend starts here.
    pub lifetime_rho: f64,
    pub lifetime_delta: f64,
    /// Releases 1 to this id had their stored numbers in the lost ledger.
    pub releases_lost: u64,
    /// The quarters the lost ledger had published: each is published again only by a new
    /// debit.
    pub published_quarters: Vec<String>,
    /// The steward's reason.
    pub why: String,
    /// The day of the recovery (`YYYY-MM-DD`).
    pub day: String,
}

/// The watermark of the warehouse at `root`, or `None` where there is none.
pub fn read_watermark(root: &Path) -> Result<Option<Watermark>> {
    let path = root.join(WATERMARK_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LedgerError::WatermarkIo { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| LedgerError::BadWatermark {
            path,
            message: e.to_string(),
        })
}

/// The ledger id the manifest of `root` names, if it has a manifest that names one.
pub fn manifest_ledger_id(root: &Path) -> Result<Option<String>> {
    if !root.join(MANIFEST_FILE).is_file() {
        return Ok(None);
    }
    Ok(Warehouse::open(root)?.manifest()?.ledger_id)
}

/// Serialises the watermark writes of one process (its threads share a temporary name).
static WRITING: Mutex<()> = Mutex::new(());

/// Writes `w` as the watermark of `root`, atomically.
fn write_watermark(root: &Path, w: &Watermark) -> Result<()> {
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    // Nothing new (a replay wrote nothing), or another writer recorded a later state
    // meanwhile, which is never moved back.
    if let Some(old) = read_watermark(root)?
        && (old == *w || (old.ledger_id == w.ledger_id && old.entries > w.entries))
    {
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(w).expect("a watermark always serialises");
    crate::warehouse::write_atomic(&root.join(WATERMARK_FILE), &json)?;
    Ok(())
}

/// Records `id` as the ledger of the warehouse at `root` in its manifest, under the
/// warehouse's write lock. Where there is no manifest nothing is written. Where another
/// command holds the lock, `must` makes it an error; otherwise nothing is written now: the
/// watermark names the id meanwhile, and the next command that opens the ledger for writing
/// tries again.
pub(super) fn record_in_manifest(root: &Path, id: &str, must: bool) -> Result<()> {
    if !root.join(MANIFEST_FILE).is_file() {
        return Ok(());
    }
    let wh = Warehouse::open(root)?;
    let lock = match wh.lock() {
        Ok(lock) => lock,
        Err(WarehouseError::Busy(_)) if !must => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut m = wh.manifest()?;
    if m.ledger_id.as_deref() == Some(id) {
        return Ok(());
    }
    m.ledger_id = Some(id.to_string());
    wh.commit_manifest(&lock, &m)?;
    Ok(())
}

/// A new random ledger id: 128 bits from the OS generator, in hex.
pub(super) fn new_ledger_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|err| LedgerError::Invalid(format!("the OS random generator failed: {err}")))?;
    Ok(crate::warehouse::hex(&id))
}

/// Stores `id` as the ledger's id, inside a write transaction.
pub(super) fn store_id(tx: &Transaction<'_>, path: &Path, id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO config (key, value) VALUES (?1, ?2)",
        params![ID_KEY, id],
    )
    .map_err(sql_err(path))?;
    Ok(())
}

/// Stores what a recovery carried over, inside `budget recover`'s transaction.
pub(super) fn store_recovery(tx: &Transaction<'_>, path: &Path, r: &LedgerRecovery) -> Result<()> {
    let text = serde_json::to_string(r).expect("a recovery serialises");
    tx.execute(
        "INSERT INTO config (key, value) VALUES (?1, ?2)",
        params![RECOVERY_KEY, text],
    )
    .map_err(sql_err(path))?;
    Ok(())
}

/// What the warehouse at `root` names as its ledger, for the refusals: the id and where it
/// is named.
fn named_ledger(root: &Path) -> Result<Option<(String, String)>> {
    let watermark = read_watermark(root)?;
    let manifest = manifest_ledger_id(root)?;
    let wm_path = root.join(WATERMARK_FILE);
    Ok(match (manifest, watermark) {
        (_, Some(w)) => Some((
            w.ledger_id.clone(),
            format!("the watermark {} ({w})", wm_path.display()),
        )),
        (Some(id), None) => Some((
            id.clone(),
            format!(
                "the manifest {} (ledger {id}; no watermark)",
                root.join(MANIFEST_FILE).display()
            ),
        )),
        (None, None) => None,
    })
}

/// Refuses when the ledger file of `root` is missing but the warehouse names a ledger;
/// otherwise the ledger was never initialised.
pub(super) fn refuse_missing(root: &Path) -> LedgerError {
    match named_ledger(root) {
        Ok(Some((id, named_by))) => LedgerError::LedgerMissing {
            path: Ledger::path_in(root),
            id,
            named_by,
        },
        Ok(None) => LedgerError::NotInitialised(root.to_path_buf()),
        Err(e) => e,
    }
}

/// Refuses `budget init` where the warehouse already names a ledger.
pub(super) fn refuse_second_ledger(root: &Path) -> Result<()> {
    match named_ledger(root)? {
        Some((id, named_by)) => Err(LedgerError::LedgerNamed {
            path: Ledger::path_in(root),
            id,
            named_by,
        }),
        None => Ok(()),
    }
}

impl Ledger {
    /// The ledger's id, or `None` for a ledger from before ids that no steward's command has
    /// opened since.
    pub fn ledger_id(&self) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT value FROM config WHERE key = ?1",
                params![ID_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.e())
    }

    /// What a recovery carried over into this ledger, if it was started by one.
    pub fn recovered_from(&self) -> Result<Option<LedgerRecovery>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM config WHERE key = ?1",
                params![RECOVERY_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.e())?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| LedgerError::Corrupt {
                path: self.path.clone(),
                message: format!("its recovery record: {e}"),
            })
        })
        .transpose()
    }

    /// The ledger's state as a watermark records it (the id must be set).
    pub fn watermark_state(&self) -> Result<Watermark> {
        let id = self.ledger_id()?.unwrap_or_default();
        let e = self.e();
        let (entries, head): (i64, Option<Vec<u8>>) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM public_chain),
                        (SELECT hash FROM public_chain ORDER BY seq DESC LIMIT 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&e)?;
        let (rho, delta, releases): (f64, f64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT coalesce(sum(rho), 0) FROM debits),
                        (SELECT coalesce(sum(delta), 0) FROM debits),
                        (SELECT coalesce(max(id), 0) FROM releases)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        let has_publications: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'publications'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let published_quarters = if has_publications {
            let mut stmt = self
                .conn
                .prepare("SELECT DISTINCT quarter FROM publications ORDER BY quarter")
                .map_err(&e)?;
            stmt.query_map([], |r| r.get::<_, String>(0))
                .map_err(&e)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&e)?
        } else {
            Vec::new()
        };
        let (carried_rho, carried_delta) = match self.recovered_from()? {
            Some(r) => (r.lifetime_rho, r.lifetime_delta),
            None => (0.0, 0.0),
        };
        Ok(Watermark {
            ledger_id: id,
            entries: entries as u64,
            lifetime_rho: carried_rho + rho,
            lifetime_delta: carried_delta + delta,
            chain_head: head.map(|h| crate::warehouse::hex(&h)).unwrap_or_default(),
            releases: releases as u64,
            published_quarters,
        })
    }

    /// The warehouse folder the ledger lives in.
    fn warehouse_root(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Writes the watermark after a committed write transaction of the ledger. A crash
    /// before it leaves the ledger ahead of the watermark, which the next command accepts.
    pub(crate) fn after_commit(&self) -> Result<()> {
        crate::failpoint::hit("ledger-before-watermark");
        let state = self.watermark_state()?;
        if state.ledger_id.is_empty() {
            return Ok(());
        }
        write_watermark(&self.warehouse_root(), &state)
    }

    /// Compares the ledger with what the warehouse at `root` records of it, and refuses a
    /// ledger with another id or one behind the watermark. Opened for writing
    /// (`writable`), a ledger from before ids gets one, and the manifest and watermark are
    /// brought up to date with a ledger that is ahead (a crash after its last commit).
    pub fn check_against_watermark(&mut self, root: &Path, writable: bool) -> Result<()> {
        let watermark = read_watermark(root)?;
        let manifest = manifest_ledger_id(root)?;
        let found = self.ledger_id()?;
        // A recovery that crashed after naming its ledger in the manifest but before its
        // watermark: the watermark still describes the lost ledger that this one cites.
        let recovered = self.recovered_from()?;
        let watermark = match watermark {
            Some(w)
                if found.is_some()
                    && manifest == found
                    && recovered
                        .as_ref()
                        .is_some_and(|r| r.lost_ledger_id == w.ledger_id) =>
            {
                None
            }
            w => w,
        };
        let expected = watermark
            .as_ref()
            .map(|w| w.ledger_id.clone())
            .or(manifest.clone());
        if let Some(expected) = &expected {
            if found.as_deref() != Some(expected.as_str()) {
                return Err(LedgerError::OtherLedger {
                    path: self.path.clone(),
                    found: found.unwrap_or_else(|| "(none: a ledger from before ids)".into()),
                    named_by: named_ledger(root)?
                        .map(|(_, by)| by)
                        .unwrap_or_else(|| format!("ledger {expected}")),
                });
            }
            if let (Some(m), Some(w)) = (&manifest, &watermark)
                && m != &w.ledger_id
            {
                return Err(LedgerError::OtherLedger {
                    path: root.join(MANIFEST_FILE),
                    found: m.clone(),
                    named_by: format!(
                        "the watermark {} ({w})",
                        root.join(WATERMARK_FILE).display()
                    ),
                });
            }
        }
        let state = self.watermark_state()?;
        if let Some(w) = &watermark {
            let less = |ours: f64, theirs: f64| ours < theirs - SPEND_SLACK * theirs.abs().max(1.0);
            if state.entries < w.entries
                || less(state.lifetime_rho, w.lifetime_rho)
                || less(state.lifetime_delta, w.lifetime_delta)
            {
                return Err(LedgerError::LedgerBehind {
                    path: self.path.clone(),
                    state: state.to_string(),
                    watermark_path: root.join(WATERMARK_FILE),
                    watermark: w.to_string(),
                });
            }
        }
        if !writable {
            return Ok(());
        }
        let id = match found {
            Some(id) => id,
            None => {
                // A ledger from before ids, in a warehouse that names none: it gets one now.
                let id = new_ledger_id()?;
                let path = self.path.clone();
                let e = sql_err(&path);
                crate::sqlite::immediate(&mut self.conn, &e, |tx| {
                    let stored: Option<String> = tx
                        .query_row(
                            "SELECT value FROM config WHERE key = ?1",
                            params![ID_KEY],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(&e)?;
                    match stored {
                        Some(other) => Ok(other),
                        None => store_id(tx, &path, &id).map(|()| id.clone()),
                    }
                })?
            }
        };
        if manifest.as_deref() != Some(id.as_str()) {
            record_in_manifest(root, &id, false)?;
        }
        let ahead = match &watermark {
            None => true,
            Some(w) => w != &self.watermark_state()?,
        };
        if ahead {
            self.after_commit()?;
        }
        Ok(())
    }
}
