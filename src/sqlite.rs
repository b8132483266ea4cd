//! The SQLite plumbing that the warehouse's two SQLite files share: the ledger
//! (`ledger.sqlite`, the budget and the release store) and the requests file
//! (`requests.sqlite`, researchers' tokens, requests and decisions).
//!
//! - [`open`]: a connection for writing, with the settings both files use: a write-ahead log,
//!   every commit on disk before it returns, foreign keys enforced, and a wait for another
//!   writer instead of an immediate refusal.
//! - [`immediate`]: a write transaction that takes SQLite's write lock when it begins, so that
//!   what it reads cannot change before it commits (a budget check and its debit, a count of
//!   pending requests and the insert that it caps).
//! - [`schema_version`] and [`upgrade`]: numbered schema migrations through
//!   `PRAGMA user_version`.
//! - [`data_version`]: whether another connection has committed since, for a reader.
//! - [`is_busy`]: whether an error means that another writer held the file too long.
//!
//! Each store keeps its own error type: these functions return `rusqlite` errors, and each
//! store maps them as it always does, with its own path in the message.
//!
//! A foundation module: it imports nothing from the rest of the crate.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

/// Opens (creating it if missing) the SQLite file at `path` for writing: WAL journal,
/// `synchronous = FULL` (a commit is on disk when it returns), foreign keys enforced, and a
/// wait of up to `busy_timeout` while another connection holds the write lock.
pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Runs `f` in an IMMEDIATE transaction on `conn` and commits what it wrote when it returns
/// `Ok`; when it returns `Err`, nothing it wrote is kept (the transaction rolls back). SQLite's
/// errors in beginning and committing are mapped by `sql_error`, as the store maps its own.
pub fn immediate<T, E>(
    conn: &mut Connection,
    sql_error: impl Fn(rusqlite::Error) -> E,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&sql_error)?;
    let value = f(&tx)?;
    tx.commit().map_err(sql_error)?;
    Ok(value)
}

/// The schema version of a file (`PRAGMA user_version`; 0 in a new file).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// One numbered migration: the schema version it brings a file to, and the change.
pub struct Migration {
    pub version: i64,
    pub apply: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// Brings a file of schema version `from` up to version `to` inside `tx`: applies, in order,
/// every migration of `migrations` whose version is above `from`, then records `to` as the
/// file's version.
pub fn upgrade(
    tx: &Transaction<'_>,
    from: i64,
    to: i64,
    migrations: &[Migration],
) -> rusqlite::Result<()> {
    for m in migrations {
        if from < m.version {
            (m.apply)(tx)?;
        }
    }
    set_schema_version(tx, to)
}

/// Records `version` as the file's schema version, inside `tx`.
pub fn set_schema_version(tx: &Transaction<'_>, version: i64) -> rusqlite::Result<()> {
    tx.execute_batch(&format!("PRAGMA user_version = {version}"))
}

/// SQLite's `data_version`: it changes whenever another connection commits to the file, so
/// a reader can tell cheaply that it must reload.
pub fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// Whether `e` means that another connection held the file (busy or locked) for longer than
/// the connection's busy timeout: the caller may try again.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked)
    )
}
