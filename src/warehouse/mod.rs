//! The warehouse folder: Parquet files per table and quarter, the manifest that commits them,
//! the write lock, crash recovery, and the DataFusion session over it all.
//!
//! ```text
//! WAREHOUSE/
//!   manifest.json                      what the warehouse holds (the commit point)
//!   .lock                              held by the one writer at a time
//!   tables/<table>/quarter=2025Q1/v0003-00.parquet
//!   tables/programs/v0001-00.parquet
//!   quarantine/v0003-<table>-<file>.csv rejected rows of a load, with line, column and reason
//!   .staging/                          work in progress; removed on the next write
//! ```

mod manifest;
mod session;
mod status;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub use manifest::{
    CompletenessDeclaration, DataFile, DatasetVersion, Load, LoadedFile, Manifest, hex,
};
pub use session::{open_session, open_session_at};
pub use status::{Status, TableStatus, status};

use crate::dictionary::Dictionary;
use crate::error::Fault;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Folder of the Parquet data.
pub const TABLES_DIR: &str = "tables";
/// Folder of quarantine reports.
pub const QUARANTINE_DIR: &str = "quarantine";
const STAGING_DIR: &str = ".staging";
const LOCK_FILE: &str = ".lock";

/// Errors of the warehouse layer.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("no warehouse at {0}: create one with `outreach ingest --warehouse {0} FILE...`")]
    NotFound(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({message}); restore it from a backup")]
    CorruptManifest { path: PathBuf, message: String },
    #[error("{path} was written by a newer version of outreach (format {found}); upgrade outreach")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("another command is writing to the warehouse at {0}; try again when it has finished")]
    Busy(PathBuf),
    #[error("unknown table '{name}'; the tables are {known}")]
    UnknownTable { name: String, known: String },
    #[error("complete-through date {date} is in the future; declare only dates that have passed")]
    FutureCompleteThrough { date: NaiveDate },
    #[error("query engine: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
}

impl WarehouseError {
    pub fn fault(&self) -> Fault {
        match self {
            WarehouseError::NotFound(_)
            | WarehouseError::UnknownTable { .. }
            | WarehouseError::FutureCompleteThrough { .. } => Fault::BadInput,
            WarehouseError::Busy(_) => Fault::Busy,
            WarehouseError::Io { .. }
            | WarehouseError::CorruptManifest { .. }
            | WarehouseError::NewerFormat { .. }
            | WarehouseError::Query(_) => Fault::Internal,
        }
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WarehouseError {
    let path = path.into();
    move |source| WarehouseError::Io { path, source }
}

type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// A warehouse folder.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

/// Proof that this process is the warehouse's one writer. Dropping it releases the lock.
#[derive(Debug)]
pub struct WriteLock {
    file: File,
}

impl Drop for WriteLock {
    /// Unlocks before the file closes. Closing alone is not enough: a child process forked
    /// meanwhile (by another thread) holds a copy of the descriptor until it execs, and the
    /// lock would live on in that copy, so the next writer would find the warehouse busy.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Warehouse {
    /// Opens an existing warehouse.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.join(MANIFEST_FILE).is_file() {
            return Err(WarehouseError::NotFound(root));
        }
        Ok(Self { root })
    }

    /// Opens the warehouse at `root`, creating an empty one if there is none.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.join(MANIFEST_FILE).is_file() {
            return Ok(Self { root });
        }
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let wh = Self { root };
        let lock = wh.lock()?;
        if !wh.root.join(MANIFEST_FILE).is_file() {
            wh.commit_manifest(&lock, &Manifest::new())?;
        }
        Ok(wh)
    }

    /// The warehouse folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a warehouse-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Reads the manifest as last committed.
    pub fn manifest(&self) -> Result<Manifest> {
        let path = self.root.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let m: Manifest =
            serde_json::from_str(&text).map_err(|e| WarehouseError::CorruptManifest {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if m.format > manifest::MANIFEST_FORMAT {
            return Err(WarehouseError::NewerFormat {
                path,
                found: m.format,
            });
        }
        Ok(m)
    }

    /// Takes the write lock, or fails at once if another process holds it.
    pub fn lock(&self) -> Result<WriteLock> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(WriteLock { file }),
            Err(fs::TryLockError::WouldBlock) => Err(WarehouseError::Busy(self.root.clone())),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// Commits a new manifest atomically: a reader sees the old one or the new one, whole.
    pub fn commit_manifest(&self, _lock: &WriteLock, m: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(m).expect("a manifest always serialises");
        write_atomic(&self.root.join(MANIFEST_FILE), &json)
    }

    /// Removes what an interrupted write left behind: the staging folder and data files that
    /// no committed load names. Returns how many data files were removed.
    pub fn recover(&self, _lock: &WriteLock) -> Result<usize> {
        let staging = self.root.join(STAGING_DIR);
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        let manifest = self.manifest()?;
        let known: std::collections::HashSet<PathBuf> = manifest
            .all_data_files()
            .map(|f| self.path(&f.path))
            .collect();
        let mut removed = 0;
        let tables = self.root.join(TABLES_DIR);
        for file in list_files(&tables)? {
            if !known.contains(&file) {
                fs::remove_file(&file).map_err(io_err(&file))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A fresh, empty staging folder for one write.
    pub fn staging_dir(&self, _lock: &WriteLock) -> Result<PathBuf> {
        let dir = self
            .root
            .join(STAGING_DIR)
            .join(format!("{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Removes a staging folder after its files were committed or abandoned.
    pub fn drop_staging(&self, dir: &Path) -> Result<()> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        Ok(())
    }

    /// Records a steward's "data complete through" date for `table`. It is public metadata,
    /// so it does not change the dataset version.
    pub fn declare_complete_through(&self, table: &str, through: NaiveDate) -> Result<()> {
        check_table(table)?;
        let today = chrono::Utc::now().date_naive();
        if through > today {
            return Err(WarehouseError::FutureCompleteThrough { date: through });
        }
        let lock = self.lock()?;
        let mut m = self.manifest()?;
        m.complete_through
            .entry(table.to_string())
            .or_default()
            .push(CompletenessDeclaration {
                through,
                declared_at: now_rfc3339(),
            });
        self.commit_manifest(&lock, &m)
    }
}

/// Fails unless `name` is a table of the dictionary.
pub fn check_table(name: &str) -> Result<()> {
    let dict = Dictionary::builtin().map_err(|e| WarehouseError::CorruptManifest {
        path: PathBuf::from("data-dictionary"),
        message: e.to_string(),
    })?;
    if dict.table(name).is_some() {
        Ok(())
    } else {
        Err(WarehouseError::UnknownTable {
            name: name.to_string(),
            known: dict.table_names().join(", "),
        })
    }
}

/// The current time as RFC 3339, to the second, in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `bytes` to `path` so that the path holds either its old content or the new one,
/// whole, even across a crash: temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// Flushes a folder's entries (renames, new files) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Every file below `dir`, recursively; none if `dir` does not exist.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let p = entry.path();
            if entry.file_type().map_err(io_err(&p))?.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
