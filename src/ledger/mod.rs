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
//! - **Schema versions** (`PRAGMA user_version`). 0: the first ledgers, whose allocations
//!   had no δ. 1: `allocation_deltas`, an allocation's δ. [`Ledger::open`] migrates an older
//!   ledger in place, adding tables only (so the append-only triggers never fire); its
//!   allocations then have δ 0 until the steward gives them some
//!   (`outreach budget allocate NAME 0 --delta D`). A ledger of a newer version is refused.

pub mod noise;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fault::Fault;
pub use noise::NoiseKind;

/// The ledger's file name inside the warehouse folder.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// Slack for floating-point sums of ρ when comparing with a total: 1e-12 relative.
const SLACK: f64 = 1e-12;

/// The folder, next to the ledger, of the lock files that claim idempotency keys.
pub const CLAIMS_DIR: &str = "ledger-claims";

/// The ledger's schema version (`PRAGMA user_version`); see the module docs.
pub const SCHEMA_VERSION: i64 = 1;

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
}

impl LedgerError {
    pub fn fault(&self) -> Fault {
        match self {
            LedgerError::NotInitialised(_)
            | LedgerError::AlreadyInitialised(_)
            | LedgerError::Invalid(_)
            | LedgerError::UnknownAllocation { .. }
            | LedgerError::NoSuchRelease(_) => Fault::BadInput,
            LedgerError::OverBudget { .. } | LedgerError::HorizonEnded(_) => Fault::BudgetExhausted,
            LedgerError::Busy | LedgerError::ReleaseInProgress => Fault::Busy,
            LedgerError::Sqlite { .. }
            | LedgerError::Corrupt { .. }
            | LedgerError::Lock { .. }
            | LedgerError::NewerSchema { .. } => Fault::Internal,
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

/// The schema version of an open ledger.
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Whether `allocation` and the warehouse budget can pay (`rho`, `delta`) now: the checks of
/// [`Ledger::begin_release`], run inside its transaction, and by
/// [`Ledger::check_affordable`] for a plan that spends nothing.
fn check_budget(
    conn: &Connection,
    path: &Path,
    allocation: &str,
    rho: f64,
    delta: f64,
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
    if spent_alloc + rho > allocated * (1.0 + SLACK) {
        return Err(LedgerError::OverBudget {
            quantity: "rho",
            scope: format!("allocation '{}'", allocation),
            needed: rho,
            remaining: (allocated - spent_alloc).max(0.0),
            total: allocated,
        });
    }
    if spent_total + rho > period.total_rho * (1.0 + SLACK) {
        return Err(LedgerError::OverBudget {
            quantity: "rho",
            scope: "the warehouse budget".into(),
            needed: rho,
            remaining: (period.total_rho - spent_total).max(0.0),
            total: period.total_rho,
        });
    }
    if spent_delta + delta > period.total_delta * (1.0 + SLACK) + f64::MIN_POSITIVE {
        return Err(LedgerError::OverBudget {
            quantity: "delta",
            scope: "the warehouse delta budget".into(),
            needed: delta,
            remaining: (period.total_delta - spent_delta).max(0.0),
            total: period.total_delta,
        });
    }
    if delta > 0.0
        && spent_alloc_delta + delta > allocated_delta * (1.0 + SLACK) + f64::MIN_POSITIVE
    {
        return Err(LedgerError::OverBudget {
            quantity: "delta",
            scope: format!("the delta budget of allocation '{}'", allocation),
            needed: delta,
            remaining: (allocated_delta - spent_alloc_delta).max(0.0),
            total: allocated_delta,
        });
    }
    Ok(())
}

/// Brings a ledger of an older schema up to [`SCHEMA_VERSION`], inside `tx`. Only adds
/// tables and triggers: no row is updated or deleted.
fn upgrade(tx: &rusqlite::Transaction<'_>, from: i64) -> rusqlite::Result<()> {
    if from < 1 {
        tx.execute_batch(SCHEMA_V1)?;
        append_only(tx, &["allocation_deltas"])?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
}

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
}

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
    pub rho: f64,
    pub delta: f64,
    pub approver: String,
}

/// Proof that this process runs the release of one idempotency key
/// ([`Ledger::claim_release`]). Dropping it lets the next identical request go on.
#[derive(Debug)]
pub struct ReleaseClaim {
    file: File,
}

impl Drop for ReleaseClaim {
    /// Unlocks before the file closes: a child process forked meanwhile would otherwise keep
    /// the lock alive in its copy of the descriptor until it execs.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
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

pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            LedgerError::Busy
        }
        _ => LedgerError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
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

    fn connect(path: &Path) -> Result<Connection> {
        let conn = Connection::open(path).map_err(sql_err(path))?;
        conn.busy_timeout(Duration::from_secs(120))
            .map_err(sql_err(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_err(path))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql_err(path))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql_err(path))?;
        Ok(conn)
    }

    /// Opens the ledger of a warehouse; it must have been initialised.
    pub fn open(warehouse: &Path) -> Result<Ledger> {
        let path = Self::path_in(warehouse);
        if !path.exists() {
            return Err(LedgerError::NotInitialised(warehouse.to_path_buf()));
        }
        let conn = Self::connect(&path)?;
        let mut ledger = Ledger { path, conn };
        if ledger.current_period_opt()?.is_none() {
            return Err(LedgerError::NotInitialised(warehouse.to_path_buf()));
        }
        ledger.migrate()?;
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
            return Err(LedgerError::NotInitialised(warehouse.to_path_buf()));
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
        let found = schema_version(&ledger.conn).map_err(ledger.e())?;
        if found != SCHEMA_VERSION {
            return Err(LedgerError::Corrupt {
                path: ledger.path.clone(),
                message: format!(
                    "schema version {found}, this build reads {SCHEMA_VERSION}: run `outreach budget show` once to upgrade it"
                ),
            });
        }
        Ok(ledger)
    }

    /// SQLite's `data_version`: it changes whenever another connection commits to the
    /// ledger, so a reader can tell cheaply that it must reload.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.e())
    }

    /// Whether this connection was opened read-only ([`Ledger::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
    }

    /// Checks that a release debiting (`rho`, `delta`) from `allocation` would be paid now,
    /// without debiting anything: the same checks as [`Ledger::begin_release`]. Works on a
    /// read-only ledger.
    pub fn check_affordable(&self, allocation: &str, rho: f64, delta: f64) -> Result<()> {
        check_budget(&self.conn, &self.path, allocation, rho, delta)
    }

    /// Upgrades an older ledger's schema in place (see the module docs), under the write
    /// lock, or refuses a newer one. A ledger already current is only read.
    fn migrate(&mut self) -> Result<()> {
        let found = schema_version(&self.conn).map_err(self.e())?;
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Another process may have upgraded it meanwhile.
        let found = schema_version(&tx).map_err(&e)?;
        if found < SCHEMA_VERSION {
            upgrade(&tx, found).map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }

    /// Creates the ledger with its first budget period, config and secret.
    pub fn init(warehouse: &Path, init: &BudgetInit) -> Result<Ledger> {
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
        let mut conn = Self::connect(&path)?;
        let e = sql_err(&path);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        tx.execute_batch(SCHEMA).map_err(&e)?;
        tx.execute_batch(SCHEMA_V1).map_err(&e)?;
        append_only(&tx, APPEND_ONLY).map_err(&e)?;
        let existing: i64 = tx
            .query_row("SELECT count(*) FROM budgets", [], |r| r.get(0))
            .map_err(&e)?;
        if existing > 0 {
            return Err(LedgerError::AlreadyInitialised(warehouse.to_path_buf()));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|err| {
            LedgerError::Invalid(format!("the OS random generator failed: {err}"))
        })?;
        tx.execute(
            "INSERT INTO secret (id, key) VALUES (1, ?1)",
            params![&secret[..]],
        )
        .map_err(&e)?;
        let config = serde_json::to_string(&init.config).expect("config serialises");
        tx.execute(
            "INSERT INTO config (key, value) VALUES ('privacy', ?1)",
            params![config],
        )
        .map_err(&e)?;
        insert_period(
            &tx,
            init.total_rho,
            init.total_delta,
            init.horizon_days,
            "initial budget",
        )
        .map_err(&e)?;
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        drop(e);
        Ok(Ledger { path, conn })
    }

    pub(crate) fn e(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        sql_err(&self.path)
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

    /// The key of the cell-choice hash. It never leaves the warehouse.
    pub fn cell_choice_key(&self) -> Result<[u8; 16]> {
        let key: Vec<u8> = self
            .conn
            .query_row("SELECT key FROM secret WHERE id = 1", [], |r| r.get(0))
            .map_err(self.e())?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&key[..16]);
        Ok(out)
    }

    fn current_period_opt(&self) -> Result<Option<BudgetPeriod>> {
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let period = current_period(&tx).map_err(&e)?;
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
        tx.commit().map_err(&e)
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let old = current_period(&tx).map_err(&e)?;
        let total = total_rho.unwrap_or(old.total_rho);
        let delta = total_delta.unwrap_or(old.total_delta);
        let days = match horizon_days {
            Some(d) => d,
            None => horizon_of(&old),
        };
        validate_total(total, delta, days)?;
        let id = insert_period(&tx, total, delta, days, why).map_err(&e)?;
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
        tx.commit().map_err(&e)?;
        Ok(period)
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
        Ok(BudgetView {
            config: self.config()?,
            period,
            periods: periods as usize,
            spent_rho,
            spent_delta,
            allocations,
            lifetime_rho,
            lifetime_delta,
        })
    }

    /// Claims an idempotency key for this process: waits up to `wait` while another process
    /// (or thread) holds it, then refuses as busy ([`LedgerError::ReleaseInProgress`]). Hold
    /// the claim from before [`Ledger::begin_release`] until the outcome is written, so an
    /// identical request started meanwhile finds the release finished (and spends nothing)
    /// instead of debiting again. The lock is the OS's (`flock`): a process that dies lets go.
    pub fn claim_release(&self, idempotency_key: &str, wait: Duration) -> Result<ReleaseClaim> {
        let dir = self
            .path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(CLAIMS_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| LedgerError::Lock {
            path: dir.clone(),
            source,
        })?;
        // The file name is a hash of the key, so any key makes a plain file name.
        let name = crate::warehouse::hex(&Sha256::digest(idempotency_key.as_bytes()));
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LedgerError::Lock {
                path: path.clone(),
                source,
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ReleaseClaim { file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= wait {
                        return Err(LedgerError::ReleaseInProgress);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LedgerError::Lock { path, source });
                }
            }
        }
    }

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
            if !(r.rho.is_finite() && r.rho > 0.0 && r.delta.is_finite() && r.delta >= 0.0) {
                return Err(LedgerError::Invalid(format!(
                    "a release must debit a positive rho (got {}, delta {})",
                    r.rho, r.delta
                )));
            }
        }
        let path = self.path.clone();
        let e = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let mut existing: Vec<Option<i64>> = Vec::with_capacity(starts.len());
        for r in starts {
            existing.push(released_with_key(&tx, &r.idempotency_key, &r.allocation).map_err(&e)?);
        }
        // What the fresh releases cost together, per allocation: each allocation (and the
        // budget with it) must have room for its whole sum, so the refusal names the sum.
        let mut per_allocation: Vec<(&str, f64, f64)> = Vec::new();
        for (r, _) in starts.iter().zip(&existing).filter(|(_, id)| id.is_none()) {
            match per_allocation
                .iter_mut()
                .find(|(a, _, _)| *a == r.allocation.as_str())
            {
                Some(sum) => {
                    sum.1 += r.rho;
                    sum.2 += r.delta;
                }
                None => per_allocation.push((r.allocation.as_str(), r.rho, r.delta)),
            }
        }
        for (allocation, rho, delta) in &per_allocation {
            check_budget(&tx, &path, allocation, *rho, *delta)?;
        }
        let period = current_period(&tx).map_err(&e)?;
        let at = now();
        let mut begun = Vec::with_capacity(starts.len());
        for (r, id) in starts.iter().zip(existing) {
            if let Some(id) = id {
                begun.push(Begin::Existing(id));
                continue;
            }
            // Checked again one by one, after the debits before it in this transaction:
            // across several allocations, the budget's total must hold their sum too.
            check_budget(&tx, &path, &r.allocation, r.rho, r.delta)?;
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
                params![period.id, r.allocation, id, r.rho, r.delta, at],
            )
            .map_err(&e)?;
            begun.push(Begin::Fresh(id));
        }
        if per_allocation.is_empty() {
            // Every one was already released: nothing was written.
            return Ok(begun);
        }
        crate::failpoint::hit("ledger-before-commit");
        tx.commit().map_err(&e)?;
        crate::failpoint::hit("ledger-after-debit");
        Ok(begun)
    }

    /// Records that release `id` was published with `result` (public) and `diagnostics`
    /// (steward only).
    pub fn finish_released(
        &mut self,
        id: i64,
        result: &serde_json::Value,
        diagnostics: &serde_json::Value,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO release_outcomes (release_id, status, result, diagnostics, finished_at)
                 VALUES (?1, 'released', ?2, ?3, ?4)",
                params![id, result.to_string(), diagnostics.to_string(), now()],
            )
            .map_err(self.e())?;
        Ok(())
    }

    /// Records that release `id` failed after its debit; the debit stays spent. The error
    /// text is for the steward only.
    pub fn finish_failed(&mut self, id: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO release_outcomes (release_id, status, error, finished_at)
                 VALUES (?1, 'failed', ?2, ?3)",
                params![id, error, now()],
            )
            .map_err(self.e())?;
        Ok(())
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

/// The latest budget period: the one releases debit.
fn current_period(conn: &Connection) -> rusqlite::Result<BudgetPeriod> {
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

/// A budget amount for messages: ρ to six places, δ in scientific notation.
fn amount(quantity: &str, x: f64) -> String {
    if quantity == "delta" {
        format!("{x:.3e}")
    } else {
        format!("{x:.6}")
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
