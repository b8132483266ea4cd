//! The privacy-budget ledger and the release store: one SQLite file, `ledger.sqlite`, in the
//! warehouse folder (privacy model §4).
//!
//! - **Budget.** One warehouse-wide budget in ρ (and δ), with a horizon. It is split into
//!   named allocations, each with its own ρ and δ (an allocation given no δ can spend none,
//!   so one researcher cannot spend the warehouse's whole δ), and renewed only by a recorded
//!   steward action, which may set a new ρ, δ and horizon; each renewal starts a new budget
//!   period, so lifetime loss (ρ and δ) is the sum over periods.
//! - **Append-only.** Triggers refuse every UPDATE and DELETE on every table.
//! - **Debit first.** [`Ledger::begin_release`] checks what remains and inserts the release
//!   and its debit in one IMMEDIATE transaction, before any noise is drawn. SQLite's write
//!   lock serialises concurrent releases from threads and processes, so they can never
//!   jointly overspend. A crash after the commit loses budget but never leaks.
//! - **Idempotent.** A release whose idempotency key was already *released* returns the
//!   stored numbers and spends nothing. A fresh draw, including a retry after a failure, is a
//!   new debit. The key is steward-only: it binds the warehouse's content hash.
//! - **One at a time per key.** [`Ledger::claim_release`] takes an OS file lock named by the
//!   idempotency key (`WAREHOUSE/ledger-claims/`) and holds it from before the debit until
//!   the outcome is written, so an identical request started meanwhile waits for the first
//!   and then finds it released, instead of debiting again. The OS drops the lock of a
//!   process that dies, so a crash never leaves a key claimed.
//! - **Outcomes.** A release ends with one outcome row: released (its public result and the
//!   steward's diagnostics) or failed (error text for the steward only). A release with no
//!   outcome was interrupted; its debit stays spent.
//! - **Secret.** The key of the cell-choice hash is created at `budget init` from the OS
//!   generator and never leaves this file.
//! - **Public chain.** Every event the public may know is also an entry of a hash-chained,
//!   append-only list whose head is signed with the warehouse's Ed25519 key (created at
//!   `budget init` from the OS generator, kept in this file beside the secret): see
//!   [`chain`]. Each write transaction appends its events' entries before it commits.
//! - **Schema versions** (`PRAGMA user_version`). 0: the first ledgers, whose allocations
//!   had no δ. 1: `allocation_deltas`, an allocation's δ. [`Ledger::open`] migrates an older
//!   ledger in place, adding tables only (so the append-only triggers never fire); its
//!   allocations then have δ 0 until the steward gives them some
//!   (`outreach budget allocate NAME 0 --delta D`). 2: the public chain (`public_chain`,
//!   `chain_heads`, `chain_start`) and its signing key (`signing_key`); a ledger migrated to it
//!   gets a signing key and a chain that starts with a `genesis` entry recording its state
//!   then. A ledger of a newer version is refused.
//!
//! ## Files
//!
//! - `mod.rs`: the [`Ledger`] handle, opening the file, its schema and migrations, and
//!   [`LedgerError`].
//! - `budget.rs`: `budget init`, the privacy configuration, allocations, renewals, what
//!   remains and the check that a release fits ([`Ledger::check_affordable`]).
//! - `releases.rs`: the release store: the debit before noise ([`Ledger::begin_releases`]),
//!   the outcome of each release, and the stored releases.
//! - `claims.rs`: the per-key lock that makes identical releases wait for each other
//!   ([`Ledger::claim_release`]).
//! - `secret.rs`: the warehouse's secret, the key of the cell-choice hash.
//! - `chain.rs`: the public chain of ledger events, its hash, its signed heads and its
//!   signing key.
//! - `spend.rs`: [`Spend`], a privacy spend (ρ and δ) as one checked value.
//! - `integrity.rs`: the steward's check of the ledger's invariants ([`Ledger::check`]).
//! - `noise.rs`: the noise a warehouse uses ([`NoiseKind`]).
//! - `watermark.rs`: the ledger's id and the watermark beside the manifest, the check that
//!   every opening of the ledger runs against them ([`Ledger::check_against_watermark`]),
//!   and `budget recover` ([`Ledger::recover`]).

mod budget;
pub mod chain;
mod claims;
mod integrity;
pub mod noise;
mod releases;
mod secret;
mod spend;
pub mod watermark;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::fault::Fault;
use crate::sqlite::{self, Migration};
pub use budget::{AllocationView, BudgetInit, BudgetPeriod, BudgetView, PrivacyConfig};
pub use chain::{ChainEntry, SignedHead};
pub use claims::{CLAIMS_DIR, ReleaseClaim};
pub use noise::NoiseKind;
pub use releases::{Begin, ReleaseStart, StoredRelease};
use spend::amount;
pub use spend::{Spend, SpendError};
pub use watermark::{LedgerRecovery, WATERMARK_FILE, Watermark, read_watermark};

/// The ledger's file name inside the warehouse folder.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// The ledger's schema version (`PRAGMA user_version`); see the module docs.
pub const SCHEMA_VERSION: i64 = 2;

/// Errors of the ledger layer.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "no privacy budget in {0}: set one with `outreach budget init --warehouse ... --total RHO --horizon DAYS`"
    )]
    NotInitialised(PathBuf),
    #[error(
        "the privacy budget of {0} is already set; use `outreach budget renew` to start a new period"
    )]
    AlreadyInitialised(PathBuf),
    #[error("{0}")]
    Invalid(String),
    #[error("unknown allocation '{name}'; the allocations are: {known}")]
    UnknownAllocation { name: String, known: String },
    #[error(
        "over budget: {quantity} = {} is asked, but {scope} has {} left of {}",
        amount(.quantity, *.needed),
        amount(.quantity, *.remaining),
        amount(.quantity, *.total)
    )]
    OverBudget {
        /// `rho` or `delta`.
        quantity: &'static str,
        scope: String,
        needed: f64,
        remaining: f64,
        total: f64,
    },
    #[error(
        "the budget period ended on {0}; the steward must renew it (`outreach budget renew --why ...`)"
    )]
    HorizonEnded(String),
    #[error("no release {0}")]
    NoSuchRelease(i64),
    #[error("the ledger is busy with another writer; try again")]
    Busy,
    #[error(
        "an identical release (same queries, declarations, budget and data) is still running; try again when it has finished"
    )]
    ReleaseInProgress,
    #[error("ledger lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ledger {path} has schema version {found}, newer than this program's {SCHEMA_VERSION}: use a newer outreach"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("ledger {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("ledger {path} holds bad JSON: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Sums read from the ledger that are no privacy spend (an infinite total).
    #[error("ledger {path} holds amounts that are not a privacy spend: {source}")]
    BadSpend { path: PathBuf, source: SpendError },
    #[error(
        "the ledger {path} is missing, but {named_by} names ledger {id}: it holds the only record of what was spent, so nothing was run. Put it back from a backup (`outreach restore`); only if it is truly lost, start a new one that carries its spend over with `outreach budget recover --why TEXT --total RHO --horizon DAYS`"
    )]
    LedgerMissing {
        path: PathBuf,
        id: String,
        named_by: String,
    },
    #[error(
        "the ledger {path} is ledger {found}, but {named_by}: it belongs to another warehouse or another start, so nothing was run. Put this warehouse's own ledger back"
    )]
    OtherLedger {
        path: PathBuf,
        found: String,
        named_by: String,
    },
    #[error(
        "the ledger {path} ({state}) is behind the watermark {watermark_path} ({watermark}): it is an older copy, and what was spent since would be spent again, so nothing was run. Put the latest ledger back; only if it is truly lost, move this copy aside and run `outreach budget recover --why TEXT --total RHO --horizon DAYS`"
    )]
    LedgerBehind {
        path: PathBuf,
        state: String,
        watermark_path: PathBuf,
        watermark: String,
    },
    #[error(
        "the warehouse already has a ledger: {named_by} names ledger {id}, so `budget init` would start a second budget from zero at {path}. Put the ledger back from a backup, or, if it is truly lost, run `outreach budget recover --why TEXT --total RHO --horizon DAYS`"
    )]
    LedgerNamed {
        path: PathBuf,
        id: String,
        named_by: String,
    },
    #[error(
        "`budget recover` starts a new ledger only where the old one is gone, but {path} exists; if it is an older or foreign copy, move it aside (outreach never deletes a ledger) and run the recovery again"
    )]
    RecoverOverLedger { path: PathBuf },
    #[error(
        "`budget recover` needs the watermark {path} to know what the lost ledger spent, and there is none: put the ledger or the watermark back from a backup"
    )]
    NoWatermark { path: PathBuf },
    #[error("watermark {path} is damaged ({message}); restore it from a backup")]
    BadWatermark { path: PathBuf, message: String },
    #[error("watermark {path}: {source}")]
    WatermarkIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The warehouse's manifest, read or written for the ledger's id.
    #[error(transparent)]
    Warehouse(Box<crate::warehouse::WarehouseError>),
}

impl From<crate::warehouse::WarehouseError> for LedgerError {
    fn from(e: crate::warehouse::WarehouseError) -> LedgerError {
        LedgerError::Warehouse(Box::new(e))
    }
}

impl LedgerError {
    pub fn fault(&self) -> Fault {
        match self {
            LedgerError::NotInitialised(_)
            | LedgerError::AlreadyInitialised(_)
            | LedgerError::Invalid(_)
            | LedgerError::UnknownAllocation { .. }
            | LedgerError::NoSuchRelease(_)
            | LedgerError::LedgerMissing { .. }
            | LedgerError::OtherLedger { .. }
            | LedgerError::LedgerBehind { .. }
            | LedgerError::LedgerNamed { .. }
            | LedgerError::RecoverOverLedger { .. }
            | LedgerError::NoWatermark { .. } => Fault::BadInput,
            LedgerError::OverBudget { .. } | LedgerError::HorizonEnded(_) => Fault::BudgetExhausted,
            LedgerError::Busy | LedgerError::ReleaseInProgress => Fault::Busy,
            LedgerError::Sqlite { .. }
            | LedgerError::Corrupt { .. }
            | LedgerError::BadSpend { .. }
            | LedgerError::Lock { .. }
            | LedgerError::NewerSchema { .. }
            | LedgerError::BadWatermark { .. }
            | LedgerError::WatermarkIo { .. } => Fault::Internal,
            LedgerError::Warehouse(e) => e.fault(),
        }
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL CHECK (length(key) = 32)
);
CREATE TABLE IF NOT EXISTS budgets (
    id INTEGER PRIMARY KEY,
    total_rho REAL NOT NULL CHECK (total_rho > 0),
    total_delta REAL NOT NULL CHECK (total_delta >= 0),
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    why TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS allocations (
    id INTEGER PRIMARY KEY,
    budget_id INTEGER NOT NULL REFERENCES budgets(id),
    name TEXT NOT NULL,
    rho REAL NOT NULL CHECK (rho > 0),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    name TEXT NOT NULL,
    budget_id INTEGER NOT NULL REFERENCES budgets(id),
    allocation TEXT NOT NULL,
    spec TEXT NOT NULL,
    query_hashes TEXT NOT NULL,
    dataset_version TEXT NOT NULL,
    measure TEXT NOT NULL,
    d_in TEXT NOT NULL,
    d_out TEXT NOT NULL,
    approver TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_key ON releases(idempotency_key);
CREATE TABLE IF NOT EXISTS debits (
    id INTEGER PRIMARY KEY,
    budget_id INTEGER NOT NULL REFERENCES budgets(id),
    allocation TEXT NOT NULL,
    release_id INTEGER NOT NULL UNIQUE REFERENCES releases(id),
    rho REAL NOT NULL CHECK (rho >= 0),
    delta REAL NOT NULL CHECK (delta >= 0),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS release_outcomes (
    release_id INTEGER PRIMARY KEY REFERENCES releases(id),
    status TEXT NOT NULL CHECK (status IN ('released', 'failed')),
    result TEXT,
    diagnostics TEXT,
    error TEXT,
    finished_at TEXT NOT NULL
);
"#;

/// Schema version 1: the δ of each allocation, added per period like its ρ. A table of its
/// own (not a column of `allocations`), so an older ledger migrates by adding a table, and
/// δ can be added to an allocation without more ρ.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS allocation_deltas (
    id INTEGER PRIMARY KEY,
    budget_id INTEGER NOT NULL REFERENCES budgets(id),
    name TEXT NOT NULL,
    delta REAL NOT NULL CHECK (delta > 0 AND delta < 1),
    created_at TEXT NOT NULL
);
"#;

const APPEND_ONLY: &[&str] = &[
    "config",
    "secret",
    "budgets",
    "allocations",
    "allocation_deltas",
    "releases",
    "debits",
    "release_outcomes",
];

/// Makes `tables` append-only: triggers refuse every UPDATE and DELETE.
fn append_only(tx: &rusqlite::Transaction<'_>, tables: &[&str]) -> rusqlite::Result<()> {
    for t in tables {
        tx.execute_batch(&format!(
            "CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
        ))?;
    }
    Ok(())
}

/// Creates every table of the current schema, append-only, inside `budget init`'s
/// transaction.
fn create_schema(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(SCHEMA_V1)?;
    tx.execute_batch(chain::SCHEMA_V2)?;
    append_only(tx, APPEND_ONLY)?;
    append_only(tx, chain::TABLES_V2)
}

/// The migrations that bring a ledger of an older schema up to [`SCHEMA_VERSION`]. They only
/// add tables and triggers: no row is updated or deleted.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        apply: to_v1,
    },
    Migration {
        version: 2,
        apply: to_v2,
    },
];

/// Version 1: the table of allocations' δ, append-only like the rest.
fn to_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(SCHEMA_V1)?;
    append_only(tx, &["allocation_deltas"])
}

/// Version 2: the tables of the public chain and its signing key, append-only like the rest.
/// `Ledger::migrate` then draws the key and starts the chain in the same transaction.
fn to_v2(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(chain::SCHEMA_V2)?;
    append_only(tx, chain::TABLES_V2)
}

/// An open ledger.
pub struct Ledger {
    pub(crate) path: PathBuf,
    pub(crate) conn: Connection,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

/// Maps SQLite's errors on the ledger at `path`: busy (another writer held it past the
/// timeout) is [`LedgerError::Busy`], anything else [`LedgerError::Sqlite`].
pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| {
        if sqlite::is_busy(&source) {
            LedgerError::Busy
        } else {
            LedgerError::Sqlite {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

pub(crate) fn now() -> String {
    crate::warehouse::now_rfc3339()
}

impl Ledger {
    /// The ledger path of a warehouse folder.
    pub fn path_in(warehouse: &Path) -> PathBuf {
        warehouse.join(LEDGER_FILE)
    }

    /// Opens the ledger file for writing; a writer waits up to two minutes for another.
    fn connect(path: &Path) -> Result<Connection> {
        sqlite::open(path, Duration::from_secs(120)).map_err(sql_err(path))
    }

    /// Opens the ledger of a warehouse; it must have been initialised.
    pub fn open(warehouse: &Path) -> Result<Ledger> {
        let path = Self::path_in(warehouse);
        if !path.exists() {
            return Err(watermark::refuse_missing(warehouse));
        }
        let conn = Self::connect(&path)?;
        let mut ledger = Ledger { path, conn };
        if ledger.current_period_opt()?.is_none() {
            return Err(LedgerError::NotInitialised(warehouse.to_path_buf()));
        }
        ledger.migrate()?;
        // Nothing runs on a ledger that the warehouse does not vouch for.
        ledger.check_against_watermark(warehouse, true)?;
        Ok(ledger)
    }

    /// Opens the ledger for reading only, with SQLite's read-only flag: every write through
    /// it fails in SQLite itself, whatever the code above asks. The API server opens the
    /// ledger and release store this way. It never migrates: a ledger of an older schema is
    /// refused until a command of the steward's has upgraded it.
    pub fn open_read_only(warehouse: &Path) -> Result<Ledger> {
        use rusqlite::OpenFlags;
        let path = Self::path_in(warehouse);
        if !path.exists() {
            return Err(watermark::refuse_missing(warehouse));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&path, flags).map_err(sql_err(&path))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql_err(&path))?;
        let ledger = Ledger { path, conn };
        if ledger.current_period_opt()?.is_none() {
            return Err(LedgerError::NotInitialised(warehouse.to_path_buf()));
        }
        let found = sqlite::schema_version(&ledger.conn).map_err(ledger.e())?;
        if found != SCHEMA_VERSION {
            return Err(LedgerError::Corrupt {
                path: ledger.path.clone(),
                message: format!(
                    "schema version {found}, this build reads {SCHEMA_VERSION}: run `outreach budget show` once to upgrade it"
                ),
            });
        }
        let mut ledger = ledger;
        ledger.check_against_watermark(warehouse, false)?;
        Ok(ledger)
    }

    /// SQLite's `data_version`: it changes whenever another connection commits to the
    /// ledger, so a reader can tell cheaply that it must reload.
    pub fn data_version(&self) -> Result<i64> {
        sqlite::data_version(&self.conn).map_err(self.e())
    }

    /// Whether this connection was opened read-only ([`Ledger::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
    }

    /// Upgrades an older ledger's schema in place (see the module docs), under the write
    /// lock, or refuses a newer one. A ledger already current is only read.
    fn migrate(&mut self) -> Result<()> {
        let found = sqlite::schema_version(&self.conn).map_err(self.e())?;
        if found > SCHEMA_VERSION {
            return Err(LedgerError::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            // Another process may have upgraded it meanwhile.
            let found = sqlite::schema_version(tx).map_err(&e)?;
            if found < SCHEMA_VERSION {
                sqlite::upgrade(tx, found, SCHEMA_VERSION, MIGRATIONS).map_err(&e)?;
                // A ledger from before the public chain: its signing key and the chain's
                // start, which records the state it starts from.
                chain::start_migrated(tx, &path)?;
            }
            Ok(())
        })
    }

    pub(crate) fn e(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        sql_err(&self.path)
    }
}
