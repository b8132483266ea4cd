//! The public chain: every ledger event the public may know, as an append-only, hash-chained
//! list of entries in `ledger.sqlite` (`public_chain`), whose head the warehouse signs with its
//! Ed25519 key (`chain_heads`, every signed head kept). Anyone holding the public key can check
//! from the public record alone that no entry was removed, changed or reordered, and can add
//! up every spend (the `verify` stage does).
//!
//! ## What is an entry
//!
//! Each entry has a sequence number (`seq`, from 0, without gaps), a kind, and a body: a JSON
//! object written canonically ([`canonical_json`]). Every body holds `day`, the day of the
//! event (`YYYY-MM-DD`), never a time of day. The kinds:
//!
//! - `genesis` (always seq 0): the start of the chain. For a ledger created with its chain,
//!   `migrated` is false and `ledger_id` is the ledger's random id, so that no two chains
//!   share their first entry (a chain started again elsewhere parts from the old one at
//!   entry 0). For a ledger that existed before its chain, `migrated` is true and the
//!   body records the state the chain starts from (periods, the current period's budget and
//!   spend, lifetime spend, and the last release and publication ids it summarises), and says
//!   that earlier history is summarised, not listed.
//! - `budget_period`: `budget init` or a renewal: `period`, `rho`, `delta`, `starts`, `ends`
//!   (days) and `renewal`.
//! - `allocation`: ρ or δ added to an allocation: `period`, `name`, `rho`, `delta`. Every
//!   researcher's allocation is named `researchers`, as the public budget shows it.
//! - `debit`: a release's debit, before any noise: `period`, `release_id`, `allocation`,
//!   `rho`, `delta`. A release that fails after its debit keeps this entry: what it spent
//!   stays spent.
//! - `private_debit`: a researcher's release, as spend only: `period`, `allocation`
//!   (`researchers`), `rho`, `delta`. No release id, no name, no number: a private release is
//!   public only as its day and its spend.
//! - `release`: a public release's numbers when its outcome is written (or when the steward
//!   makes a researcher's release public): `release_id`, `name`, `dataset_version`, `rho`,
//!   `delta`, `result` (the published numbers, exactly as `/v1/releases/{id}` serves them).
//! - `publication`: a quarter's publication, and the one it supersedes: `publication_id`,
//!   `quarter`, `release_id`, `equity_release_id`, `supersedes`, `dataset_version`.
//! - `recovery` (seq 1 of a ledger started by `budget recover`, whose genesis says
//!   `recovered: true`): the restart after a lost ledger, cited by the lost ledger's id
//!   (`lost_ledger_id`), chain size (`lost_entries`) and last hash (`lost_chain_head`), its
//!   lifetime spend, carried over (`lifetime_rho`, `lifetime_delta`), the highest release id
//!   it held (`releases_lost`), the quarters it had published (`published_quarters`) and the
//!   steward's reason (`why`). A reader holding the lost chain's head sees that this chain
//!   does not extend it, and why.
//!
//! ## The hash
//!
//! After Trillian's hash chainer, with a leaf prefix byte:
//!
//! ```text
//! hash = SHA-256(0x00 || prev_hash || seq as 8 bytes big-endian || kind || 0x00 || body)
//! ```
//!
//! where `prev_hash` is the previous entry's hash (32 zero bytes for seq 0), `kind` and `body`
//! are their UTF-8 bytes, and `body` is the canonical JSON text ([`canonical_json`]: object
//! keys sorted by their UTF-8 bytes, no whitespace, strings and numbers as `serde_json` writes
//! them). The text is stored and served as it was hashed, so a reader hashes what it reads.
//!
//! ## The signed head
//!
//! After every write transaction that appended entries, the head (the number of entries and
//! the last entry's hash) is signed with the warehouse's Ed25519 key over [`head_message`]:
//!
//! ```text
//! "outreach-warehouse ledger head v1" || 0x00 || size as 8 bytes big-endian || hash
//! ```
//!
//! Every signed head is kept (`chain_heads`), so a head that someone saved can be shown to be
//! a prefix of today's chain.
//!
//! ## One function keeps it right
//!
//! `extend` runs at the end of every write transaction of the ledger and the publication
//! store: it appends, in a fixed order (periods, allocations, debits, outcomes,
//! publications), an entry for every row not yet chained, then signs the new head. So an event
//! and its entry commit together or not at all: a refused release, or one whose transaction
//! fails, leaves no entry.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Ledger, LedgerError, Result, now, sql_err};

/// The tables of the chain (schema version 2), append-only like the rest of the ledger.
pub(super) const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS signing_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL CHECK (length(key) = 32),
    public_key BLOB NOT NULL CHECK (length(public_key) = 32)
);
CREATE TABLE IF NOT EXISTS public_chain (
    seq INTEGER PRIMARY KEY CHECK (seq >= 0),
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    source_table TEXT,
    source_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS public_chain_source ON public_chain(source_table, source_id);
CREATE TABLE IF NOT EXISTS chain_heads (
    size INTEGER PRIMARY KEY CHECK (size > 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    signature BLOB NOT NULL CHECK (length(signature) = 64),
    signed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_start (
    source_table TEXT PRIMARY KEY,
    through_id INTEGER NOT NULL
);
"#;

/// The tables of [`SCHEMA_V2`], for the append-only triggers.
pub(super) const TABLES_V2: &[&str] =
    &["signing_key", "public_chain", "chain_heads", "chain_start"];

/// The kinds of entry (see the module docs).
pub const GENESIS: &str = "genesis";
pub const BUDGET_PERIOD: &str = "budget_period";
pub const ALLOCATION: &str = "allocation";
pub const DEBIT: &str = "debit";
pub const PRIVATE_DEBIT: &str = "private_debit";
pub const RELEASE: &str = "release";
pub const PUBLICATION: &str = "publication";
pub const RECOVERY: &str = "recovery";

/// Every kind, in the order the module docs list them.
pub const KINDS: &[&str] = &[
    GENESIS,
    BUDGET_PERIOD,
    ALLOCATION,
    DEBIT,
    PRIVATE_DEBIT,
    RELEASE,
    PUBLICATION,
    RECOVERY,
];

/// What the line of a public key starts with, as `outreach key show` prints it and
/// `outreach verify --public-key` reads it: `outreach-ledger-ed25519 <64 hex digits>`.
pub const PUBLIC_KEY_LABEL: &str = "outreach-ledger-ed25519";

/// The name every researcher's allocation has on the chain, as in the public budget.
pub const RESEARCHERS: &str = "researchers";

/// The previous hash of entry 0.
pub const GENESIS_PREV: [u8; 32] = [0; 32];

/// What the signature of a head starts with: the format's name and version.
pub const HEAD_CONTEXT: &[u8] = b"outreach-warehouse ledger head v1";

/// The hash of an entry: `SHA-256(0x00 || prev_hash || seq (8 bytes, big-endian) || kind ||
/// 0x00 || body)`.
pub fn entry_hash(prev_hash: &[u8; 32], seq: u64, kind: &str, body: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00u8]);
    h.update(prev_hash);
    h.update(seq.to_be_bytes());
    h.update(kind.as_bytes());
    h.update([0x00u8]);
    h.update(body.as_bytes());
    h.finalize().into()
}

/// The message a head's signature covers: [`HEAD_CONTEXT`], 0x00, the number of entries (8
/// bytes, big-endian) and the last entry's hash.
pub fn head_message(size: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_CONTEXT.len() + 1 + 8 + 32);
    m.extend_from_slice(HEAD_CONTEXT);
    m.push(0x00);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// A JSON value as canonical text: object keys sorted by their UTF-8 bytes, no whitespace,
/// arrays in order, strings and numbers as `serde_json` writes them.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.push_str(&serde_json::to_string(v).expect("a JSON scalar serialises"));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("a key serialises"));
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    crate::warehouse::hex(bytes)
}

/// The bytes of a hex string (either case); `None` unless it is whole bytes of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The day (`YYYY-MM-DD`) of a stored RFC 3339 time; a time too short to hold one is kept
/// whole, which no stored time is.
pub fn day_of(time: &str) -> String {
    time.get(..10).unwrap_or(time).to_string()
}

/// One entry of the chain, as stored and served (hashes in hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    pub seq: u64,
    pub kind: String,
    /// The canonical JSON text that the hash covers.
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainEntry {
    /// The body's `day`.
    pub fn day(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|b| b.get("day").and_then(|d| d.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// The latest signed head, in hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedHead {
    pub size: u64,
    pub hash: String,
    pub signature: String,
    pub public_key: String,
}

/// Whether an allocation is a researcher's (`researcher:NAME`): its events are public without
/// the name, its releases as spend only.
fn is_researchers(allocation: &str) -> bool {
    allocation.starts_with("researcher:")
}

/// The name an allocation has on the chain.
fn public_allocation(allocation: &str) -> &str {
    if is_researchers(allocation) {
        RESEARCHERS
    } else {
        allocation
    }
}

/// Draws the warehouse's Ed25519 signing key from the OS generator and stores it, unless one
/// is stored: at `budget init` and when an older ledger is migrated. It never leaves the
/// ledger; only its public key is printed (`outreach key show`).
pub(super) fn create_signing_key(tx: &Transaction<'_>, path: &Path) -> Result<()> {
    let e = sql_err(path);
    let exists: i64 = tx
        .query_row("SELECT count(*) FROM signing_key", [], |r| r.get(0))
        .map_err(&e)?;
    if exists > 0 {
        return Ok(());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|err| LedgerError::Invalid(format!("the OS random generator failed: {err}")))?;
    // The public key is stored beside it, so that a reader (the API server) never reads the
    // signing key.
    let public_key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    tx.execute(
        "INSERT INTO signing_key (id, key, public_key) VALUES (1, ?1, ?2)",
        params![&seed[..], &public_key[..]],
    )
    .map_err(&e)?;
    Ok(())
}

fn signing_key(conn: &rusqlite::Connection, path: &Path) -> Result<SigningKey> {
    let seed: Option<Vec<u8>> = conn
        .query_row("SELECT key FROM signing_key WHERE id = 1", [], |r| r.get(0))
        .optional()
        .map_err(sql_err(path))?;
    let seed: [u8; 32] =
        seed.and_then(|s| s.try_into().ok())
            .ok_or_else(|| LedgerError::Corrupt {
                path: path.to_path_buf(),
                message: "the ledger has no signing key for its public chain".into(),
            })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The next seq and the last entry's hash.
fn tip(tx: &Transaction<'_>, path: &Path) -> Result<(u64, [u8; 32])> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT seq, hash FROM public_chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql_err(path))?;
    match last {
        None => Ok((0, GENESIS_PREV)),
        Some((seq, hash)) => {
            let hash: [u8; 32] = hash.try_into().map_err(|_| LedgerError::Corrupt {
                path: path.to_path_buf(),
                message: format!("public chain entry {seq} has a hash that is not 32 bytes"),
            })?;
            Ok((seq as u64 + 1, hash))
        }
    }
}

/// Appends one entry with `body` (which must hold `day`) after the chain's tip.
fn append(
    tx: &Transaction<'_>,
    path: &Path,
    kind: &str,
    body: &serde_json::Value,
    source: Option<(&str, i64)>,
) -> Result<()> {
    let (seq, prev) = tip(tx, path)?;
    let text = canonical_json(body);
    let hash = entry_hash(&prev, seq, kind, &text);
    tx.execute(
        "INSERT INTO public_chain (seq, kind, body, prev_hash, hash, source_table, source_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            seq as i64,
            kind,
            text,
            &prev[..],
            &hash[..],
            source.map(|s| s.0),
            source.map(|s| s.1)
        ],
    )
    .map_err(sql_err(path))?;
    Ok(())
}

/// Signs the chain's head and keeps it, unless that head is already signed.
fn sign_head(tx: &Transaction<'_>, path: &Path) -> Result<()> {
    let (size, hash) = tip(tx, path)?;
    if size == 0 {
        return Ok(());
    }
    let e = sql_err(path);
    let signed: i64 = tx
        .query_row(
            "SELECT count(*) FROM chain_heads WHERE size = ?1",
            params![size as i64],
            |r| r.get(0),
        )
        .map_err(&e)?;
    if signed > 0 {
        return Ok(());
    }
    let key = signing_key(tx, path)?;
    let signature = key.sign(&head_message(size, &hash)).to_bytes();
    tx.execute(
        "INSERT INTO chain_heads (size, hash, signature, signed_at) VALUES (?1, ?2, ?3, ?4)",
        params![size as i64, &hash[..], &signature[..], now()],
    )
    .map_err(&e)?;
    Ok(())
}

fn table_exists(tx: &Transaction<'_>, path: &Path, name: &str) -> Result<bool> {
    tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![name],
        |r| r.get(0),
    )
    .map_err(sql_err(path))
}

/// The id through which a migrated ledger's history is summarised by its genesis (0 for a
/// ledger created with its chain).
fn through(tx: &Transaction<'_>, path: &Path, source: &str) -> Result<i64> {
    let t: Option<i64> = tx
        .query_row(
            "SELECT through_id FROM chain_start WHERE source_table = ?1",
            params![source],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err(path))?;
    Ok(t.unwrap_or(0))
}

/// The rows of `sql` (which takes the cut-off id as `?1` and leaves out rows already
/// chained), each read by `row`.
fn unchained<T>(
    tx: &Transaction<'_>,
    path: &Path,
    sql: &str,
    cutoff: i64,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let e = sql_err(path);
    let mut stmt = tx.prepare(sql).map_err(&e)?;
    let rows = stmt
        .query_map(params![cutoff], row)
        .map_err(&e)?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(&e)?;
    Ok(rows)
}

/// Appends an entry for every ledger row not yet chained, in a fixed order (periods,
/// allocations, debits, release outcomes, publications), then signs the new head. Called at
/// the end of every write transaction of the ledger and the publication store, inside it.
pub(crate) fn extend(tx: &Transaction<'_>, path: &Path) -> Result<()> {
    // Budget periods: `budget init` and renewals.
    let cutoff = through(tx, path, "budgets")?;
    let periods = unchained(
        tx,
        path,
        "SELECT id, total_rho, total_delta, starts, ends FROM budgets b
         WHERE b.id > ?1 AND NOT EXISTS (SELECT 1 FROM public_chain c WHERE c.source_table = 'budgets' AND c.source_id = b.id)
         ORDER BY b.id",
        cutoff,
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        },
    )?;
    for (id, rho, delta, starts, ends) in periods {
        let body = serde_json::json!({
            "day": day_of(&starts),
            "period": id,
            "rho": rho,
            "delta": delta,
            "starts": day_of(&starts),
            "ends": day_of(&ends),
            "renewal": id > 1,
        });
        append(tx, path, BUDGET_PERIOD, &body, Some(("budgets", id)))?;
    }

    // Allocations: ρ, then δ, each in the order they were added.
    for (table, quantity) in [("allocations", "rho"), ("allocation_deltas", "delta")] {
        let cutoff = through(tx, path, table)?;
        let sql = format!(
            "SELECT a.id, a.budget_id, a.name, a.{quantity}, a.created_at FROM {table} a
             WHERE a.id > ?1 AND NOT EXISTS (SELECT 1 FROM public_chain c WHERE c.source_table = '{table}' AND c.source_id = a.id)
             ORDER BY a.id"
        );
        let rows = unchained(tx, path, &sql, cutoff, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        for (id, period, name, amount, at) in rows {
            let (rho, delta) = if quantity == "rho" {
                (amount, 0.0)
            } else {
                (0.0, amount)
            };
            let body = serde_json::json!({
                "day": day_of(&at),
                "period": period,
                "name": public_allocation(&name),
                "rho": rho,
                "delta": delta,
            });
            append(tx, path, ALLOCATION, &body, Some((table, id)))?;
        }
    }

    // Debits, before any noise: a researcher's as spend only.
    let cutoff = through(tx, path, "debits")?;
    let debits = unchained(
        tx,
        path,
        "SELECT d.id, d.budget_id, d.release_id, d.allocation, d.rho, d.delta, d.created_at FROM debits d
         WHERE d.id > ?1 AND NOT EXISTS (SELECT 1 FROM public_chain c WHERE c.source_table = 'debits' AND c.source_id = d.id)
         ORDER BY d.id",
        cutoff,
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, f64>(5)?,
                r.get::<_, String>(6)?,
            ))
        },
    )?;
    for (id, period, release_id, allocation, rho, delta, at) in debits {
        if is_researchers(&allocation) {
            let body = serde_json::json!({
                "day": day_of(&at),
                "period": period,
                "allocation": RESEARCHERS,
                "rho": rho,
                "delta": delta,
            });
            append(tx, path, PRIVATE_DEBIT, &body, Some(("debits", id)))?;
        } else {
            let body = serde_json::json!({
                "day": day_of(&at),
                "period": period,
                "release_id": release_id,
                "allocation": allocation,
                "rho": rho,
                "delta": delta,
            });
            append(tx, path, DEBIT, &body, Some(("debits", id)))?;
        }
    }

    // Released outcomes of public releases: their numbers. Failed ones add nothing (their
    // debit entry stays); researchers' stay private until the steward makes one public.
    let cutoff = through(tx, path, "release_outcomes")?;
    let outcomes = unchained(
        tx,
        path,
        "SELECT o.release_id FROM release_outcomes o JOIN releases r ON r.id = o.release_id
         WHERE o.release_id > ?1 AND o.status = 'released' AND substr(r.allocation, 1, 11) <> 'researcher:'
           AND NOT EXISTS (SELECT 1 FROM public_chain c WHERE c.source_table = 'release_outcomes' AND c.source_id = o.release_id)
         ORDER BY o.finished_at, o.release_id",
        cutoff,
        |r| r.get::<_, i64>(0),
    )?;
    for id in outcomes {
        let body = release_body(tx, path, id)?;
        append(tx, path, RELEASE, &body, Some(("release_outcomes", id)))?;
    }

    // Publications, with the one each supersedes. The table appears with the first one.
    if table_exists(tx, path, "publications")? {
        let cutoff = through(tx, path, "publications")?;
        let publications = unchained(
            tx,
            path,
            "SELECT p.id, p.quarter, p.release_id, p.dataset_version, p.supersedes, p.published_at, p.document
             FROM publications p
             WHERE p.id > ?1 AND NOT EXISTS (SELECT 1 FROM public_chain c WHERE c.source_table = 'publications' AND c.source_id = p.id)
             ORDER BY p.id",
            cutoff,
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            },
        )?;
        for (id, quarter, release_id, version, supersedes, at, document) in publications {
            let equity = serde_json::from_str::<serde_json::Value>(&document)
                .ok()
                .and_then(|d| d.get("equity_release_id").and_then(|v| v.as_i64()));
            let body = serde_json::json!({
                "day": day_of(&at),
                "publication_id": id,
                "quarter": quarter,
                "release_id": release_id,
                "equity_release_id": equity,
                "supersedes": supersedes,
                "dataset_version": version,
            });
            append(tx, path, PUBLICATION, &body, Some(("publications", id)))?;
        }
    }

    sign_head(tx, path)
}

/// The body of a `release` entry: the release's public numbers, as stored with its outcome.
fn release_body(tx: &Transaction<'_>, path: &Path, id: i64) -> Result<serde_json::Value> {
    let (name, version, rho, delta, result, finished_at): (
        String,
        String,
        f64,
        f64,
        Option<String>,
        String,
    ) = tx
        .query_row(
            "SELECT r.name, r.dataset_version, d.rho, d.delta, o.result, o.finished_at
             FROM releases r JOIN debits d ON d.release_id = r.id
             JOIN release_outcomes o ON o.release_id = r.id
             WHERE r.id = ?1 AND o.status = 'released'",
            params![id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(sql_err(path))?
        .ok_or(LedgerError::NoSuchRelease(id))?;
    let result: serde_json::Value = result
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| LedgerError::Corrupt {
            path: path.to_path_buf(),
            message: format!("release {id}'s stored result: {err}"),
        })?
        .unwrap_or(serde_json::Value::Null);
    Ok(serde_json::json!({
        "day": day_of(&finished_at),
        "release_id": id,
        "name": name,
        "dataset_version": version,
        "rho": rho,
        "delta": delta,
        "result": result,
    }))
}

/// Starts the chain of a new ledger, inside `budget init`'s transaction: the genesis entry,
/// then the entries of what `budget init` wrote, signed.
pub(super) fn start_new(tx: &Transaction<'_>, path: &Path, ledger_id: &str) -> Result<()> {
    create_signing_key(tx, path)?;
    let body = serde_json::json!({
        "day": day_of(&now()),
        "ledger_id": ledger_id,
        "migrated": false,
        "note": "a new ledger: every public event is an entry from here on",
    });
    append(tx, path, GENESIS, &body, None)?;
    extend(tx, path)
}

/// Starts the chain of a ledger that `budget recover` starts after a lost one, inside its
/// transaction: the genesis entry (`recovered: true`), the `recovery` entry citing the lost
/// ledger, then the entries of what the recovery wrote, signed.
pub(super) fn start_recovered(
    tx: &Transaction<'_>,
    path: &Path,
    r: &super::LedgerRecovery,
    ledger_id: &str,
) -> Result<()> {
    create_signing_key(tx, path)?;
    let day = day_of(&now());
    let genesis = serde_json::json!({
        "day": day,
        "ledger_id": ledger_id,
        "migrated": false,
        "recovered": true,
        "note": "a new ledger after a lost one: the next entry records the loss and carries its spend over",
    });
    append(tx, path, GENESIS, &genesis, None)?;
    let body = serde_json::json!({
        "day": day,
        "lost_ledger_id": r.lost_ledger_id,
        "lost_entries": r.lost_entries,
        "lost_chain_head": r.lost_chain_head,
        "lifetime_rho": r.lifetime_rho,
        "lifetime_delta": r.lifetime_delta,
        "releases_lost": r.releases_lost,
        "published_quarters": r.published_quarters,
        "why": r.why,
    });
    append(tx, path, RECOVERY, &body, None)?;
    extend(tx, path)
}

/// Starts the chain of a ledger that existed before it (the migration to schema version 2),
/// inside the migration's transaction: a signing key, and a genesis entry that records the
/// state the chain starts from and says that earlier history is summarised. A ledger whose
/// chain has begun only gets what is not chained yet.
pub(super) fn start_migrated(tx: &Transaction<'_>, path: &Path) -> Result<()> {
    create_signing_key(tx, path)?;
    let e = sql_err(path);
    let entries: i64 = tx
        .query_row("SELECT count(*) FROM public_chain", [], |r| r.get(0))
        .map_err(&e)?;
    if entries > 0 {
        return extend(tx, path);
    }
    let max = |sql: &str| -> Result<i64> { tx.query_row(sql, [], |r| r.get(0)).map_err(&e) };
    let releases_through = max("SELECT coalesce(max(id), 0) FROM releases")?;
    let publications_through = if table_exists(tx, path, "publications")? {
        max("SELECT coalesce(max(id), 0) FROM publications")?
    } else {
        0
    };
    let cutoffs = [
        ("budgets", max("SELECT coalesce(max(id), 0) FROM budgets")?),
        (
            "allocations",
            max("SELECT coalesce(max(id), 0) FROM allocations")?,
        ),
        (
            "allocation_deltas",
            max("SELECT coalesce(max(id), 0) FROM allocation_deltas")?,
        ),
        ("debits", max("SELECT coalesce(max(id), 0) FROM debits")?),
        ("release_outcomes", releases_through),
        ("public_release", releases_through),
        ("publications", publications_through),
    ];
    for (table, id) in cutoffs {
        tx.execute(
            "INSERT INTO chain_start (source_table, through_id) VALUES (?1, ?2)",
            params![table, id],
        )
        .map_err(&e)?;
    }
    let period = super::budget::current_period(tx).map_err(&e)?;
    let (
        periods,
        period_spent_rho,
        period_spent_delta,
        lifetime_rho,
        lifetime_delta,
        budget_rho,
        budget_delta,
    ): (i64, f64, f64, f64, f64, f64, f64) = tx
        .query_row(
            "SELECT (SELECT count(*) FROM budgets),
                    (SELECT coalesce(sum(rho), 0) FROM debits WHERE budget_id = ?1),
                    (SELECT coalesce(sum(delta), 0) FROM debits WHERE budget_id = ?1),
                    (SELECT coalesce(sum(rho), 0) FROM debits),
                    (SELECT coalesce(sum(delta), 0) FROM debits),
                    (SELECT coalesce(sum(total_rho), 0) FROM budgets),
                    (SELECT coalesce(sum(total_delta), 0) FROM budgets)",
            params![period.id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .map_err(&e)?;
    let body = serde_json::json!({
        "day": day_of(&now()),
        "migrated": true,
        "note": "this ledger existed before its public chain: its earlier history is summarised here, not listed; every public event after this entry is listed",
        "periods": periods,
        "period": period.id,
        "period_rho": period.total_rho,
        "period_delta": period.total_delta,
        "period_starts": day_of(&period.starts),
        "period_ends": day_of(&period.ends),
        "period_spent_rho": period_spent_rho,
        "period_spent_delta": period_spent_delta,
        "lifetime_budget_rho": budget_rho,
        "lifetime_budget_delta": budget_delta,
        "lifetime_spent_rho": lifetime_rho,
        "lifetime_spent_delta": lifetime_delta,
        "releases_through": releases_through,
        "publications_through": publications_through,
    });
    append(tx, path, GENESIS, &body, None)?;
    extend(tx, path)
}

impl Ledger {
    /// Puts a researcher's release on the public chain with its numbers, when the steward
    /// makes it public (`requests approve --public`); until then the chain holds its spend
    /// only. Spends nothing; a release already on the chain is left as it is.
    pub fn chain_public_release(&mut self, id: i64) -> Result<()> {
        let path = self.path.clone();
        let e = sql_err(&path);
        crate::sqlite::immediate(&mut self.conn, &e, |tx| {
            let chained: i64 = tx
                .query_row(
                    "SELECT count(*) FROM public_chain WHERE kind = 'release'
                       AND source_id = ?1 AND source_table IN ('release_outcomes', 'public_release')",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            if chained > 0 || id <= through(tx, &path, "public_release")? {
                return Ok(());
            }
            let body = release_body(tx, &path, id)?;
            append(tx, &path, RELEASE, &body, Some(("public_release", id)))?;
            extend(tx, &path)
        })?;
        self.after_commit()
    }

    /// Every entry of the public chain, in order. Works on a read-only ledger.
    pub fn chain(&self) -> Result<Vec<ChainEntry>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, kind, body, prev_hash, hash FROM public_chain ORDER BY seq")
            .map_err(self.e())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        Ok(rows
            .into_iter()
            .map(|(seq, kind, body, prev, hash)| ChainEntry {
                seq: seq as u64,
                kind,
                body,
                prev_hash: to_hex(&prev),
                hash: to_hex(&hash),
            })
            .collect())
    }

    /// The latest signed head with the public key, or `None` before the first entry. Works
    /// on a read-only ledger.
    pub fn chain_head(&self) -> Result<Option<SignedHead>> {
        let head: Option<(i64, Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT size, hash, signature FROM chain_heads ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.e())?;
        let Some((size, hash, signature)) = head else {
            return Ok(None);
        };
        Ok(Some(SignedHead {
            size: size as u64,
            hash: to_hex(&hash),
            signature: to_hex(&signature),
            public_key: self.public_key_hex()?,
        }))
    }

    /// Every signed head of the chain, oldest first, each with the public key: the static
    /// mirror keeps them all (`v1/ledger/heads/{size}`), so that a reader who saved any of them
    /// can check that today's chain extends it. Works on a read-only ledger.
    pub fn signed_heads(&self) -> Result<Vec<SignedHead>> {
        let public_key = self.public_key_hex()?;
        let mut stmt = self
            .conn
            .prepare("SELECT size, hash, signature FROM chain_heads ORDER BY size")
            .map_err(self.e())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        Ok(rows
            .into_iter()
            .map(|(size, hash, signature)| SignedHead {
                size: size as u64,
                hash: to_hex(&hash),
                signature: to_hex(&signature),
                public_key: public_key.clone(),
            })
            .collect())
    }

    /// The public key of the warehouse's signing key, in hex: what `outreach key show` prints
    /// and readers check the signed head with. It is read from its own column: the signing
    /// key itself is read only to sign, and never leaves the ledger.
    pub fn public_key_hex(&self) -> Result<String> {
        let key: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT public_key FROM signing_key WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.e())?;
        key.map(|k| to_hex(&k)).ok_or_else(|| LedgerError::Corrupt {
            path: self.path.clone(),
            message: "the ledger has no signing key for its public chain".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_hash_is_sha256_of_the_documented_encoding() {
        let body = canonical_json(&serde_json::json!({"rho": 0.5, "day": "2025-07-01"}));
        assert_eq!(body, r#"{"day":"2025-07-01","rho":0.5}"#);
        // Known answers, from the documented bytes hashed by another SHA-256 (Python's
        // hashlib): a change to the encoding changes them, and every chain published with it.
        assert_eq!(
            to_hex(&entry_hash(&GENESIS_PREV, 3, "debit", &body)),
            "85170aa514934cc9cdc3e36d244f3a58887bf1c8332e93c802495c82312686da"
        );
        assert_eq!(
            to_hex(&entry_hash(&GENESIS_PREV, 0, "genesis", "{}")),
            "1b1f1018fecbd4c9e62aa458e04625ff82ca4e109e72ee06dce5ba0fffa29d57"
        );
        // Each part counts: another seq, kind, body or previous hash is another hash.
        let h = entry_hash(&GENESIS_PREV, 3, "debit", &body);
        assert_ne!(h, entry_hash(&GENESIS_PREV, 4, "debit", &body));
        assert_ne!(h, entry_hash(&GENESIS_PREV, 3, "debi", &format!("t{body}")));
        assert_ne!(h, entry_hash(&[1; 32], 3, "debit", &body));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let v = serde_json::json!({"b": [{"z": 1, "a": null}], "a": "x\"y", "é": true});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x\"y","b":[{"a":null,"z":1}],"é":true}"#
        );
        let again: serde_json::Value = serde_json::from_str(&canonical_json(&v)).unwrap();
        assert_eq!(canonical_json(&again), canonical_json(&v));
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(to_hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(from_hex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None);
    }

    #[test]
    fn the_head_message_names_its_format_size_and_hash() {
        let m = head_message(7, &[9; 32]);
        assert!(m.starts_with(HEAD_CONTEXT));
        assert_eq!(m[HEAD_CONTEXT.len()], 0);
        assert_eq!(&m[HEAD_CONTEXT.len() + 1..][..8], &7u64.to_be_bytes());
        assert_eq!(&m[m.len() - 32..], &[9; 32]);
    }

    #[test]
    fn a_day_is_the_date_of_a_stored_time() {
        assert_eq!(day_of("2025-07-01T12:34:56Z"), "2025-07-01");
        assert_eq!(day_of("2025"), "2025");
    }
}
