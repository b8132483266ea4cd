//! Backups of a warehouse that restore: `outreach backup` and `outreach restore`.
//!
//! A backup is a folder:
//!
//! ```text
//! BACKUP/
//!   manifest.json            the manifest as read under the warehouse's write lock
//!   ledger-watermark.json    the ledger's watermark, read before the ledger was copied
//!   ledger.sqlite            the ledger, copied through SQLite's online backup API
//!   requests.sqlite          researchers' tokens and requests, copied the same way
//!   tables/...               every data file the manifest names, live and history
//!   checksums.sha256         the SHA-256 of every file above, in `sha256sum` format
//! ```
//!
//! [`backup`] writes it while releases and requests run. The write lock is held only while
//! the manifest is read: data files are never rewritten once a manifest names them, so the
//! files it names stay as they are after the lock is released. The two SQLite files are
//! copied by SQLite's online backup API in one step, inside one read transaction, which in
//! WAL mode does not stop writers: the copy holds exactly what was committed when the step
//! began, so every release committed before the backup began is in it.
//!
//! The watermark is read *before* the ledger is copied. The watermark is written after each
//! ledger commit, so what it says was already committed when it was read; the ledger copied
//! afterwards holds that commit and perhaps more. The copy's ledger is therefore never behind
//! the copied watermark, which is what the ledger checks accept (a ledger ahead of its
//! watermark is what a crash between a commit and the watermark's write leaves). Read after
//! the copy, the watermark could count a debit committed meanwhile that the copy lacks, and
//! the restored warehouse would refuse its own ledger.
//!
//! Everything is written into `BACKUP.tmp-<pid>-<time>` beside the backup, flushed, and
//! renamed into place at the end, so a backup folder is whole or absent. Never copied: the
//! release claims (`ledger-claims/`), the staging folder, the trash, quarantine reports and
//! the lock.
//!
//! [`restore`] copies a backup into `DIR.tmp-<pid>-<time>`, checks every file against
//! `checksums.sha256` as it copies it, each data file against the manifest's size and
//! SHA-256, and SQLite's `integrity_check` on both databases, and renames the folder into
//! place only when all hold: a damaged backup is refused, naming the file, and leaves DIR as
//! it was. Over an existing warehouse it compares the ledgers first: a warehouse that has
//! debited more than the backup holds (another ledger id, more chain entries, or more
//! lifetime spend, by its watermark or its ledger) is refused, since restoring would silently
//! forget those debits; its gap is recorded only by `outreach budget recover`. The warehouse
//! it replaces is moved aside, never deleted.
//!
//! No message here holds a value of the data: files are named by their paths in the
//! warehouse, SQLite's findings by its own words about pages and indexes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::fault::Fault;
use crate::ledger::watermark::manifest_ledger_id;
use crate::ledger::{LEDGER_FILE, WATERMARK_FILE, read_watermark};
use crate::requests::REQUESTS_FILE;
use crate::warehouse::{
    MANIFEST_FILE, Manifest, Warehouse, WarehouseError, create_dir_synced, hex, now_rfc3339,
    sync_dir,
};

/// The checksum list of a backup, in `sha256sum` format (`<hex>  <path>`).
pub const CHECKSUMS_FILE: &str = "checksums.sha256";
/// The SQLite files a backup copies through SQLite's online backup API.
const SQLITE_FILES: [&str; 2] = [LEDGER_FILE, REQUESTS_FILE];
/// How long a copy waits for SQLite's locks before it gives up.
const SQLITE_WAIT: Duration = Duration::from_secs(120);

/// Errors of `backup` and `restore`.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{0} already exists and is not empty; a backup is written only into a new or empty folder, so that no earlier backup is overwritten"
    )]
    OutNotEmpty(PathBuf),
    #[error(
        "{0} is inside the warehouse it would back up; write the backup elsewhere, off the warehouse's disk if you can"
    )]
    OutInsideWarehouse(PathBuf),
    #[error("copying {path} through SQLite's online backup failed: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path} was busy for over {} seconds (another command held SQLite's lock); try again",
        SQLITE_WAIT.as_secs()
    )]
    SqliteBusy { path: PathBuf },
    #[error(
        "the warehouse at {root} does not hold its data file {file} ({problem}); no backup was written. Run `outreach status --warehouse {root} --verify` and put the file back from an earlier backup"
    )]
    SourceDamaged {
        root: PathBuf,
        file: String,
        problem: String,
    },
    #[error(
        "{0} is no backup: it has no checksums.sha256; give the folder `outreach backup --out` wrote"
    )]
    NotABackup(PathBuf),
    #[error(
        "the backup at {backup} is damaged: {file} {problem}. Nothing was restored; {to} is as it was. Use another backup"
    )]
    Damaged {
        backup: PathBuf,
        to: PathBuf,
        file: String,
        problem: String,
    },
    #[error(
        "{0} holds files but is no warehouse (it has no manifest.json); restore into a new or empty folder, or over the warehouse the backup was taken of"
    )]
    TargetNotEmpty(PathBuf),
    #[error(
        "the warehouse at {to} has debited more than this backup holds, or holds another ledger (warehouse: {target}; backup: {backup}). Restoring it would silently forget those debits, so nothing was restored. A backup older than the warehouse's latest debit restores only through the ledger's recovery, which records the gap: see `outreach budget recover --warehouse {to} --why TEXT ...`"
    )]
    TargetAhead {
        to: PathBuf,
        target: String,
        backup: String,
    },
}

impl BackupError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            BackupError::Warehouse(e) => e.fault(),
            BackupError::Io { .. } | BackupError::Sqlite { .. } => Fault::Internal,
            BackupError::SqliteBusy { .. } => Fault::Busy,
            BackupError::OutNotEmpty(_)
            | BackupError::OutInsideWarehouse(_)
            | BackupError::SourceDamaged { .. }
            | BackupError::NotABackup(_)
            | BackupError::Damaged { .. }
            | BackupError::TargetNotEmpty(_)
            | BackupError::TargetAhead { .. } => Fault::BadInput,
        }
    }
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.into();
    move |source| BackupError::Io { path, source }
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup folder.
    pub out: PathBuf,
    /// Every file of the backup (`checksums.sha256` aside), backup-relative, sorted.
    pub files: Vec<String>,
    /// Their bytes in all.
    pub bytes: u64,
    /// How many data files were hard links to the warehouse's own (the rest are copies).
    pub linked: usize,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The restored warehouse.
    pub to: PathBuf,
    /// How many files were checked against the checksum list and restored.
    pub files: usize,
    /// Where the warehouse that was at `to` before was moved, when there was one.
    pub replaced: Option<PathBuf>,
}

/// How far a ledger has come: its id, its chain's entries and its lifetime spend, the
/// furthest of what its watermark and its own file say.
#[derive(Debug, Clone, Default, PartialEq)]
struct LedgerMark {
    ledger_id: Option<String>,
    entries: u64,
    lifetime_rho: f64,
    lifetime_delta: f64,
}

impl std::fmt::Display for LedgerMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ledger_id {
            Some(id) => write!(f, "ledger {id}, ")?,
            None => write!(f, "ledger without an id, ")?,
        }
        write!(
            f,
            "{} chain entries, lifetime ρ {} and δ {}",
            self.entries, self.lifetime_rho, self.lifetime_delta
        )
    }
}

impl LedgerMark {
    /// Whether `self` (a warehouse) holds a debit or an entry that `backup` lacks.
    fn is_ahead_of(&self, backup: &LedgerMark) -> bool {
        let more = |a: f64, b: f64| a > b * (1.0 + 1e-9) + 1e-300;
        let other_ledger = matches!(
            (&self.ledger_id, &backup.ledger_id),
            (Some(a), Some(b)) if a != b
        );
        other_ledger
            || self.entries > backup.entries
            || more(self.lifetime_rho, backup.lifetime_rho)
            || more(self.lifetime_delta, backup.lifetime_delta)
    }
}

/// A folder's name with `suffix` appended, beside it: `BACKUP.tmp-<pid>-<nanos>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "outreach".into());
    path.with_file_name(format!("{name}.{suffix}"))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    sibling(path, &format!("tmp-{}-{nanos}", std::process::id()))
}

/// A temporary folder of ours that is removed unless the work it holds is kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn create(path: PathBuf) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir_synced(parent)?;
        }
        fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(Self { path, keep: false })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Whether `dir` is missing or an empty folder (a file there is neither).
fn is_missing_or_empty(dir: &Path) -> Result<bool> {
    if fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Ok(false);
    }
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// A backup-relative path as the checksum list and the manifest write it: `/`-separated
/// plain names, no `..`, no root, no line break or backslash. Anything else is refused, so
/// neither file can make a restore read or write outside its folders.
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\n', '\r', '\\', '\0'])
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Copies `from` to `to`, hashing the bytes as they pass; returns the SHA-256 and the size.
fn copy_hashed(from: &Path, to: &Path) -> io::Result<(String, u64)> {
    let mut src = File::open(from)?;
    let mut dst = File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        bytes += n as u64;
    }
    dst.sync_all()?;
    Ok((hex(&hasher.finalize()), bytes))
}

/// The SHA-256 and the size of a file.
fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hasher.finalize()), bytes))
}

/// Opens an existing SQLite file without creating it and without changing its settings.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_WAIT)?;
    Ok(conn)
}

/// Copies the SQLite file `from` into `to` (a new file) through SQLite's online backup API,
/// all pages in one step, so inside one read transaction of `from`: the copy is what was
/// committed when the step began, whatever is written meanwhile. The copy is left in
/// rollback-journal mode, one file with no `-wal` beside it, so that its checksum is that
/// of everything it holds.
fn copy_sqlite(from: &Path, to: &Path) -> Result<()> {
    let sql = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    let src = open_existing(from).map_err(sql(from))?;
    let mut dst = Connection::open(to).map_err(sql(to))?;
    {
        let copy = Backup::new(&src, &mut dst).map_err(sql(from))?;
        let started = Instant::now();
        loop {
            match copy.step(-1).map_err(sql(from))? {
                StepResult::Done => break,
                StepResult::More => continue,
                // Busy, Locked, and any result a later SQLite adds: wait, then try again.
                _ => {
                    if started.elapsed() > SQLITE_WAIT {
                        return Err(BackupError::SqliteBusy {
                            path: from.to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    drop(src);
    // The copied header may say WAL (the source's mode): pass through WAL to be sure the
    // switch back to a rollback journal rewrites it and folds the log into the file.
    dst.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql(to))?;
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(sql(to))?;
    dst.close().map_err(|(_, e)| sql(to)(e))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", to.display()));
        if side.exists() {
            fs::remove_file(&side).map_err(io_err(&side))?;
        }
    }
    Ok(())
}

/// Flushes every file and folder below `dir` (and `dir` itself) to disk.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
    }
    sync_dir(dir)?;
    Ok(())
}

/// Writes a consistent backup of the warehouse at `warehouse` into `out`, a new or empty
/// folder, while releases, requests and loads run (see the module docs).
pub fn backup(warehouse: &Path, out: &Path) -> Result<BackupReport> {
    let wh = Warehouse::open(warehouse)?;
    if !is_missing_or_empty(out)? {
        return Err(BackupError::OutNotEmpty(out.to_path_buf()));
    }
    let out_parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let inside = match (fs::canonicalize(warehouse), fs::canonicalize(out_parent)) {
        (Ok(w), Ok(o)) => o.starts_with(&w),
        _ => false,
    };
    if inside {
        return Err(BackupError::OutInsideWarehouse(out.to_path_buf()));
    }
    // The manifest, as committed: the lock only while it is read.
    let (manifest, manifest_bytes) = {
        let _lock = wh.lock()?;
        let manifest = wh.manifest()?;
        let path = wh.path(MANIFEST_FILE);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        (manifest, bytes)
    };
    let tmp = TempDir::create(temp_sibling(out))?;
    let mut written: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut linked = 0usize;

    let write_file = |rel: &str, bytes: &[u8]| -> Result<(String, u64)> {
        let path = tmp.path.join(rel);
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(bytes).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        Ok((hex(&Sha256::digest(bytes)), bytes.len() as u64))
    };
    written.insert(
        MANIFEST_FILE.to_string(),
        write_file(MANIFEST_FILE, &manifest_bytes)?,
    );
    // The watermark before the ledger: see the module docs.
    let watermark = wh.path(WATERMARK_FILE);
    match fs::read(&watermark) {
        Ok(bytes) => {
            written.insert(
                WATERMARK_FILE.to_string(),
                write_file(WATERMARK_FILE, &bytes)?,
            );
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&watermark)(e)),
    }
    for name in SQLITE_FILES {
        let from = wh.path(name);
        if !from.is_file() {
            continue;
        }
        let to = tmp.path.join(name);
        copy_sqlite(&from, &to)?;
        written.insert(name.to_string(), hash_file(&to).map_err(io_err(&to))?);
    }
    // The data files the manifest names: never rewritten once named, so read without the lock.
    for (_, file) in manifest.every_data_file() {
        let damaged = |problem: String| BackupError::SourceDamaged {
            root: warehouse.to_path_buf(),
            file: file.path.clone(),
            problem,
        };
        if !is_plain_relative(&file.path) || written.contains_key(&file.path) {
            return Err(damaged("a path the manifest may not name".into()));
        }
        let from = wh.path(&file.path);
        match fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(damaged("not a regular file".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(damaged("missing".into()));
            }
            Err(e) => return Err(io_err(&from)(e)),
        }
        let to = tmp.path.join(&file.path);
        if let Some(dir) = to.parent() {
            create_dir_synced(dir)?;
        }
        let (sha, bytes) = match fs::hard_link(&from, &to) {
            Ok(()) => {
                linked += 1;
                hash_file(&to).map_err(io_err(&to))?
            }
            // Another file system, or one without links: a copy.
            Err(_) => copy_hashed(&from, &to).map_err(io_err(&to))?,
        };
        if file.bytes != 0 && bytes != file.bytes {
            return Err(damaged(format!(
                "{bytes} bytes, the manifest records {}",
                file.bytes
            )));
        }
        if !file.sha256.is_empty() && sha != file.sha256 {
            return Err(damaged("its SHA-256 differs from the manifest's".into()));
        }
        written.insert(file.path.clone(), (sha, bytes));
    }
    let mut list = String::new();
    for (rel, (sha, _)) in &written {
        list.push_str(&format!("{sha}  {rel}\n"));
    }
    write_file(CHECKSUMS_FILE, list.as_bytes())?;
    sync_tree(&tmp.path)?;
    fs::rename(&tmp.path, out).map_err(io_err(out))?;
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    Ok(BackupReport {
        out: out.to_path_buf(),
        bytes: written.values().map(|(_, b)| b).sum(),
        files: written.into_keys().collect(),
        linked,
    })
}

/// Reads `checksums.sha256`: each line `<64 hex digits>  <path>`, a path at most once.
fn read_checksums(
    backup: &Path,
    damaged: &impl Fn(&str, String) -> BackupError,
) -> Result<BTreeMap<String, String>> {
    let path = backup.join(CHECKSUMS_FILE);
    let text = match fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| damaged(CHECKSUMS_FILE, "is not UTF-8 text".into()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::NotABackup(backup.to_path_buf()));
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mut sums = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || damaged(CHECKSUMS_FILE, format!("has a malformed line {}", i + 1));
        let (sha, rel) = line.split_once("  ").ok_or_else(bad)?;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || !is_plain_relative(rel)
            || rel == CHECKSUMS_FILE
        {
            return Err(bad());
        }
        if sums.insert(rel.to_string(), sha.to_string()).is_some() {
            return Err(damaged(
                CHECKSUMS_FILE,
                format!("lists {rel} twice (line {})", i + 1),
            ));
        }
    }
    if !sums.contains_key(MANIFEST_FILE) {
        return Err(damaged(MANIFEST_FILE, "is not in checksums.sha256".into()));
    }
    Ok(sums)
}

/// The mark of a ledger, read with SQL through `conn` (not through the ledger's own
/// checks, which would refuse the very ledger a restore replaces): its chain's entries and
/// the sum of its debits.
fn ledger_mark(conn: &Connection) -> rusqlite::Result<LedgerMark> {
    let has = |table: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    let entries = if has("public_chain")? {
        conn.query_row("SELECT count(*) FROM public_chain", [], |r| {
            r.get::<_, i64>(0)
        })?
        .max(0) as u64
    } else {
        0
    };
    let (lifetime_rho, lifetime_delta) = if has("debits")? {
        conn.query_row(
            "SELECT coalesce(sum(rho), 0), coalesce(sum(delta), 0) FROM debits",
            [],
            |r| Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?)),
        )?
    } else {
        (0.0, 0.0)
    };
    Ok(LedgerMark {
        ledger_id: None,
        entries,
        lifetime_rho,
        lifetime_delta,
    })
}

/// How far the ledger of a folder has come: the furthest of its watermark and its file.
fn folder_mark(dir: &Path, file: Option<LedgerMark>) -> LedgerMark {
    // Read leniently: a watermark or manifest that does not parse counts as none here (the
    // ledger's own checks judge it when the warehouse opens).
    let w = read_watermark(dir).ok().flatten();
    let f = file.unwrap_or_default();
    LedgerMark {
        ledger_id: w
            .as_ref()
            .map(|w| w.ledger_id.clone())
            .or_else(|| manifest_ledger_id(dir).ok().flatten()),
        entries: f.entries.max(w.as_ref().map_or(0, |w| w.entries)),
        lifetime_rho: f
            .lifetime_rho
            .max(w.as_ref().map_or(0.0, |w| w.lifetime_rho)),
        lifetime_delta: f
            .lifetime_delta
            .max(w.as_ref().map_or(0.0, |w| w.lifetime_delta)),
    }
}

/// Restores the backup at `backup` into `to`: a new or empty folder, or the warehouse the
/// backup was taken of when it has not debited more since (see the module docs).
pub fn restore(backup: &Path, to: &Path) -> Result<RestoreReport> {
    let damaged = |file: &str, problem: String| BackupError::Damaged {
        backup: backup.to_path_buf(),
        to: to.to_path_buf(),
        file: file.to_string(),
        problem,
    };
    if !backup.is_dir() {
        return Err(BackupError::NotABackup(backup.to_path_buf()));
    }
    let sums = read_checksums(backup, &damaged)?;
    // The target, as it is: nothing is written to it before everything is checked.
    let existing = to.join(MANIFEST_FILE).is_file();
    if !existing && !is_missing_or_empty(to)? {
        return Err(BackupError::TargetNotEmpty(to.to_path_buf()));
    }
    let tmp = TempDir::create(temp_sibling(to))?;
    for (rel, sha) in &sums {
        let from = backup.join(rel);
        match fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(damaged(rel.as_str(), "is not a regular file".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(damaged(rel.as_str(), "is missing".into()));
            }
            Err(e) => return Err(io_err(&from)(e)),
        }
        let dest = tmp.path.join(rel);
        if let Some(dir) = dest.parent() {
            create_dir_synced(dir)?;
        }
        let (found, _) = copy_hashed(&from, &dest).map_err(io_err(&dest))?;
        if &found != sha {
            return Err(damaged(
                rel.as_str(),
                "does not match its SHA-256 in checksums.sha256".into(),
            ));
        }
    }
    // The manifest, and every data file it names, with the size and SHA-256 it records.
    let manifest_path = tmp.path.join(MANIFEST_FILE);
    let manifest: Manifest = fs::read(&manifest_path)
        .map_err(io_err(&manifest_path))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|_| damaged(MANIFEST_FILE, "is not a manifest".into()))
        })?;
    for (_, file) in manifest.every_data_file() {
        if !sums.contains_key(&file.path) {
            return Err(damaged(
                file.path.as_str(),
                "is named by the manifest but not in checksums.sha256".into(),
            ));
        }
        let path = tmp.path.join(&file.path);
        let (sha, bytes) = hash_file(&path).map_err(io_err(&path))?;
        if (file.bytes != 0 && bytes != file.bytes)
            || (!file.sha256.is_empty() && sha != file.sha256)
        {
            return Err(damaged(
                file.path.as_str(),
                "differs from the size or SHA-256 the manifest records".into(),
            ));
        }
    }
    // SQLite's own check of both databases.
    for name in SQLITE_FILES {
        if !sums.contains_key(name) {
            continue;
        }
        let path = tmp.path.join(name);
        let result = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)));
        match result {
            Ok(ok) if ok == "ok" => {}
            Ok(found) => {
                let first = found.lines().next().unwrap_or_default().to_string();
                return Err(damaged(
                    name,
                    format!("fails SQLite's integrity_check ({first})"),
                ));
            }
            Err(e) => {
                return Err(damaged(name, format!("cannot be read by SQLite ({e})")));
            }
        }
    }
    // A backup without a ledger (taken before `budget init`) counts as a ledger with
    // nothing spent: over a warehouse that has spent anything, it is refused below.
    let restored_ledger = tmp.path.join(LEDGER_FILE);
    let restored_file = if restored_ledger.is_file() {
        let mark = Connection::open_with_flags(
            &restored_ledger,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| ledger_mark(&c))
        .map_err(|e| damaged(LEDGER_FILE, format!("cannot be read by SQLite ({e})")))?;
        Some(mark)
    } else {
        None
    };
    let restored = folder_mark(&tmp.path, restored_file);
    sync_tree(&tmp.path)?;
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let replaced = if existing {
        // Over a warehouse: under its write lock, compare the ledgers, then move it aside.
        let target = Warehouse::open(to)?;
        let lock = target.lock()?;
        // The target's ledger is read under SQLite's write lock, so that the comparison sees
        // every debit committed before it; the lock ends just before the folders are swapped
        // (a connection open across the swap would clean up its `-wal` by path, inside the
        // restored folder). A release started in that instant writes into the folder moved
        // aside: restore over a warehouse only when nothing else runs. A target ledger that
        // SQLite cannot read (lost, damaged) is compared by its watermark alone.
        let target_ledger = to.join(LEDGER_FILE);
        let held = if target_ledger.is_file() {
            match open_existing(&target_ledger)
                .and_then(|c| c.execute_batch("BEGIN IMMEDIATE").map(|()| c))
            {
                Ok(c) => Some(c),
                Err(e) if crate::sqlite::is_busy(&e) => {
                    return Err(BackupError::SqliteBusy {
                        path: target_ledger,
                    });
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let target_file = held.as_ref().and_then(|c| ledger_mark(c).ok());
        let target_mark = folder_mark(to, target_file);
        if target_mark.is_ahead_of(&restored) {
            return Err(BackupError::TargetAhead {
                to: to.to_path_buf(),
                target: target_mark.to_string(),
                backup: restored.to_string(),
            });
        }
        let stamp = now_rfc3339().replace([':', '-'], "");
        let mut aside = sibling(to, &format!("replaced-{stamp}"));
        let mut n = 2;
        while aside.exists() {
            aside = sibling(to, &format!("replaced-{stamp}-{n}"));
            n += 1;
        }
        // Nothing was written through it: the transaction ends without a change.
        if let Some(conn) = held {
            let _ = conn.execute_batch("ROLLBACK");
        }
        fs::rename(to, &aside).map_err(io_err(&aside))?;
        fs::rename(&tmp.path, to).map_err(io_err(to))?;
        drop(lock);
        Some(aside)
    } else {
        fs::rename(&tmp.path, to).map_err(io_err(to))?;
        None
    };
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(&parent)?;
    Ok(RestoreReport {
        to: to.to_path_buf(),
        files: sums.len(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        for ok in [
            "manifest.json",
            "tables/arrests/quarter=2025Q1/v0003-00.parquet",
        ] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "tables/../../x",
            "./manifest.json",
            "a\nb",
            "a\\b",
        ] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_warehouse_ahead_of_the_backup_is_seen() {
        let backup = LedgerMark {
            ledger_id: Some("aa".into()),
            entries: 5,
            lifetime_rho: 0.5,
            lifetime_delta: 0.0,
        };
        assert!(!backup.is_ahead_of(&backup));
        let more_entries = LedgerMark {
            entries: 6,
            ..backup.clone()
        };
        assert!(more_entries.is_ahead_of(&backup));
        let more_spent = LedgerMark {
            lifetime_rho: 0.6,
            ..backup.clone()
        };
        assert!(more_spent.is_ahead_of(&backup));
        let more_delta = LedgerMark {
            lifetime_delta: 1e-9,
            ..backup.clone()
        };
        assert!(more_delta.is_ahead_of(&backup));
        let other = LedgerMark {
            ledger_id: Some("bb".into()),
            ..backup.clone()
        };
        assert!(other.is_ahead_of(&backup));
        let behind = LedgerMark {
            entries: 4,
            lifetime_rho: 0.4,
            ..backup.clone()
        };
        assert!(!behind.is_ahead_of(&backup));
    }

    #[test]
    fn a_malformed_checksum_line_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let damaged = |file: &str, problem: String| BackupError::Damaged {
            backup: tmp.path().to_path_buf(),
            to: tmp.path().to_path_buf(),
            file: file.to_string(),
            problem,
        };
        let sha = "0".repeat(64);
        fs::write(
            tmp.path().join(CHECKSUMS_FILE),
            format!("{sha}  manifest.json\n{sha} ledger.sqlite\n"),
        )
        .unwrap();
        let e = read_checksums(tmp.path(), &damaged).unwrap_err();
        assert!(e.to_string().contains("malformed line 2"), "{e}");
        fs::write(
            tmp.path().join(CHECKSUMS_FILE),
            format!("{sha}  manifest.json\n{sha}  ../escape\n"),
        )
        .unwrap();
        let e = read_checksums(tmp.path(), &damaged).unwrap_err();
        assert!(e.to_string().contains("malformed line 2"), "{e}");
        fs::write(
            tmp.path().join(CHECKSUMS_FILE),
            format!("{sha}  ledger.sqlite\n"),
        )
        .unwrap();
        let e = read_checksums(tmp.path(), &damaged).unwrap_err();
        assert!(e.to_string().contains("manifest.json"), "{e}");
    }
}
