//! The warehouse folder: Parquet files per table and quarter, the manifest that commits them,
//! the write lock, crash recovery, the DataFusion session over it all, and the checks that
//! vouch for the data files before anything reads them (`vouch`).
//!
//! ```text
//! WAREHOUSE/
//!   manifest.json                      what the warehouse holds (the commit point)
//!   .lock                              held by the one writer at a time
//!   tables/<table>/quarter=2025Q1/v0003-00.parquet
//!   tables/programs/v0001-00.parquet
//!                                      (a file a later load replaced stays, as history)
//!   quarantine/v0003-00-<file>.csv     rejected rows of a load: line, column, rule, redacted value
//!   quarantine/refused-<time>-<file>.csv  the same for a refused file
//!   trash/<time>/                      what recovery moved out of the way, never deleted
//!   .staging/                          work in progress
//! ```
//!
//! Every name above is the warehouse's own: recovery touches nothing else, and a warehouse is
//! created only in an empty or new folder.

mod manifest;
pub mod programs;
mod session;
mod status;
mod vouch;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub use manifest::{
    CompletenessDeclaration, DataFile, DatasetVersion, Load, LoadedFile, Manifest, Revision, hex,
};
pub use session::{
    DATA_SESSIONS_OPENED, MIN_QUERY_MEMORY, QUERY_MEMORY_SHARE, meminfo_total, open_session,
    open_session_at, query_memory_limit, schema_session,
};
pub use status::{Status, TableStatus, status};
pub use vouch::{DamagedFile, DamagedFiles, FileProblem, Scrub};

use crate::dictionary::{Dictionary, DictionaryError};
use crate::fault::Fault;
use crate::quarter::Quarter;

/// Name of the manifest file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Folder of the Parquet data.
pub const TABLES_DIR: &str = "tables";
/// Folder of quarantine reports.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Folder where recovery moves what it clears away, one dated folder per recovery.
pub const TRASH_DIR: &str = "trash";
const STAGING_DIR: &str = ".staging";
const LOCK_FILE: &str = ".lock";
/// Prefix of the temporary file that [`write_atomic`] renames onto the manifest.
const MANIFEST_TMP_PREFIX: &str = ".manifest.json.tmp-";

/// Errors of the warehouse layer.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("no warehouse at {0}: create one with `outreach ingest --warehouse {0} FILE...`")]
    NotFound(PathBuf),
    #[error(
        "{0} holds files but no manifest.json, so it is no warehouse, and a new one is only created in an empty or new folder. If it is a warehouse whose manifest.json was lost, restore that file from a backup (nothing was changed); otherwise choose another folder"
    )]
    NotEmpty(PathBuf),
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
    #[error("the data dictionary built into outreach is invalid, a defect of this build: {0}")]
    Dictionary(&'static DictionaryError),
    #[error("query engine: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error(
        "the warehouse at {root} does not hold the data its manifest.json names: {damaged}. Nothing was read and nothing was spent. Put the files back from a backup; `outreach status --warehouse {root} --verify` lists every damaged file"
    )]
    DamagedData {
        root: PathBuf,
        damaged: DamagedFiles,
    },
    #[error(
        "{damaged} of the {checked} data files of the warehouse at {root} are missing or changed (listed above). Put them back from a backup: until then every command that reads the data refuses"
    )]
    ScrubFailed {
        root: PathBuf,
        damaged: usize,
        checked: usize,
    },
}

impl WarehouseError {
    pub fn fault(&self) -> Fault {
        match self {
            WarehouseError::NotFound(_)
            | WarehouseError::NotEmpty(_)
            | WarehouseError::UnknownTable { .. }
            | WarehouseError::FutureCompleteThrough { .. }
            | WarehouseError::DamagedData { .. }
            | WarehouseError::ScrubFailed { .. } => Fault::BadInput,
            WarehouseError::Busy(_) => Fault::Busy,
            WarehouseError::Io { .. }
            | WarehouseError::CorruptManifest { .. }
            | WarehouseError::NewerFormat { .. }
            | WarehouseError::Dictionary(_)
            | WarehouseError::Query(_) => Fault::Internal,
        }
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> WarehouseError {
    let path = path.into();
    move |source| WarehouseError::Io { path, source }
}

/// The built-in data dictionary; a failure is a defect of the build, not bad input.
pub(crate) fn dictionary() -> Result<&'static Dictionary> {
    Dictionary::builtin().map_err(WarehouseError::Dictionary)
}

type Result<T, E = WarehouseError> = std::result::Result<T, E>;

/// A warehouse folder.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    /// Whether this process created the warehouse: then recovery touches nothing.
    created: bool,
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

/// What [`Warehouse::recover`] cleared away.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files moved: data files that no committed load names, and staged files of an
    /// interrupted load.
    pub moved: usize,
    /// The dated folder under `trash/` that now holds them, when any were moved.
    pub trash: Option<PathBuf>,
}

impl Warehouse {
    /// Opens an existing warehouse.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.join(MANIFEST_FILE).is_file() {
            return Err(WarehouseError::NotFound(root));
        }
        Ok(Self {
            root,
            created: false,
        })
    }

    /// Opens the warehouse at `root`, creating an empty one if there is none. A folder that
    /// holds anything but a manifest is refused rather than taken over: it may be a warehouse
    /// whose manifest was lost, and recovery would then clear its data away.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.join(MANIFEST_FILE).is_file() {
            return Ok(Self {
                root,
                created: false,
            });
        }
        refuse_unless_empty(&root)?;
        if !create_dir_synced(&root)?.is_empty() {
            crate::failpoint::hit("dir-synced:.");
        }
        let lock = Self {
            root: root.clone(),
            created: false,
        }
        .lock()?;
        if root.join(MANIFEST_FILE).is_file() {
            // Another command created it meanwhile.
            return Ok(Self {
                root,
                created: false,
            });
        }
        refuse_unless_empty(&root)?;
        let wh = Self {
            root,
            created: true,
        };
        wh.commit_manifest(&lock, &Manifest::new())?;
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
    /// Every folder that the manifest's files live in must already be flushed to disk (see
    /// [`Warehouse::create_dir`]), or a power loss could keep the manifest and lose a folder.
    pub fn commit_manifest(&self, _lock: &WriteLock, m: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(m).expect("a manifest always serialises");
        write_atomic(&self.root.join(MANIFEST_FILE), &json)
    }

    /// Clears away what an interrupted write left behind: the files of the staging folder, and
    /// data files that no committed load names. Only files named as the warehouse names its
    /// own data (`v0003-00.parquet`) in the folders it writes them to (`tables/<table>/`, or
    /// its `quarter=2025Q1/` folders for a table with quarters) count; anything else is left
    /// where it is. Nothing is deleted: the files move to a new dated folder under `trash/`,
    /// which the result names. The command that created the warehouse clears nothing.
    pub fn recover(&self, _lock: &WriteLock) -> Result<Recovery> {
        if self.created {
            return Ok(Recovery::default());
        }
        let manifest = self.manifest()?;
        // Replaced files are history the manifest still names: never moved.
        let named: HashSet<&str> = manifest
            .every_data_file()
            .map(|(_, f)| f.path.as_str())
            .collect();
        let mut leftovers: Vec<String> = Vec::new();
        for t in dictionary()?.tables() {
            let dir = format!("{TABLES_DIR}/{}", t.name);
            for (name, is_dir) in entries(&self.path(&dir))? {
                if t.date_column.is_none() {
                    let rel = format!("{dir}/{name}");
                    if !is_dir && is_data_file_name(&name) && !named.contains(rel.as_str()) {
                        leftovers.push(rel);
                    }
                    continue;
                }
                if !is_dir || !is_quarter_dir_name(&name) {
                    continue;
                }
                let sub = format!("{dir}/{name}");
                for (file, is_dir) in entries(&self.path(&sub))? {
                    let rel = format!("{sub}/{file}");
                    if !is_dir && is_data_file_name(&file) && !named.contains(rel.as_str()) {
                        leftovers.push(rel);
                    }
                }
            }
        }
        let staging = self.root.join(STAGING_DIR);
        let staged = list_files(&staging)?.len();
        if leftovers.is_empty() && staged == 0 {
            if staging.exists() {
                // Empty folders only: nothing of value to keep.
                fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
            }
            return Ok(Recovery::default());
        }
        let trash = self.new_trash_dir()?;
        for rel in &leftovers {
            let dest = trash.join(rel);
            let dir = dest.parent().expect("a data file has a folder");
            create_dir_synced(dir)?;
            fs::rename(self.path(rel), &dest).map_err(io_err(&dest))?;
            sync_dir(dir)?;
        }
        if staged > 0 {
            let dest = trash.join(STAGING_DIR);
            fs::rename(&staging, &dest).map_err(io_err(&dest))?;
            sync_dir(&trash)?;
        }
        Ok(Recovery {
            moved: leftovers.len() + staged,
            trash: Some(trash),
        })
    }

    /// A new folder `trash/<UTC time>` (with `-2`, `-3`, … when one of the same second exists).
    fn new_trash_dir(&self) -> Result<PathBuf> {
        let trash = self.root.join(TRASH_DIR);
        create_dir_synced(&trash)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        for n in 1u32.. {
            let name = if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            };
            let dir = trash.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    sync_dir(&trash)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        unreachable!("some name of the form <time>-<n> is free")
    }

    /// Creates the warehouse folder `rel` (`/`-separated) and every missing ancestor, each
    /// flushed into its parent by [`create_dir_synced`]. The fail point
    /// `dir-synced:<folder>` follows each folder this creates, so the crash tests can tell
    /// that it was flushed before the manifest's commit.
    pub fn create_dir(&self, rel: &str) -> Result<()> {
        for dir in create_dir_synced(&self.path(rel))? {
            if let Ok(r) = dir.strip_prefix(&self.root) {
                crate::failpoint::hit(&format!("dir-synced:{}", r.to_string_lossy()));
            }
        }
        Ok(())
    }

    /// A new path for the report of a refused file, `quarantine/refused-<UTC time>-<file>.csv`
    /// (with `-2`, `-3`, … when a report of the same second and file exists), so that a
    /// report never overwrites another. Creates the quarantine folder.
    pub fn refused_report_path(&self, _lock: &WriteLock, source: &Path) -> Result<PathBuf> {
        self.create_dir(QUARANTINE_DIR)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let stem = file_stem(source);
        for n in 1u32.. {
            let name = if n == 1 {
                format!("refused-{stamp}-{stem}.csv")
            } else {
                format!("refused-{stamp}-{stem}-{n}.csv")
            };
            let path = self.root.join(QUARANTINE_DIR).join(name);
            // Under the write lock, so no other command picks the same name meanwhile.
            if !path.exists() {
                return Ok(path);
            }
        }
        unreachable!("some name of the form refused-<time>-<file>-<n>.csv is free")
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
        check_complete_through(through)?;
        let lock = self.lock()?;
        let mut m = self.manifest()?;
        m.declare_complete_through(table, through, now_rfc3339());
        self.commit_manifest(&lock, &m)
    }
}

/// Fails unless `name` is a table of the dictionary.
pub fn check_table(name: &str) -> Result<()> {
    let dict = dictionary()?;
    if dict.table(name).is_some() {
        Ok(())
    } else {
        Err(WarehouseError::UnknownTable {
            name: name.to_string(),
            known: dict.table_names().join(", "),
        })
    }
}

/// Fails when a "data complete through" date lies in the future: only a day that has passed
/// can be declared complete.
pub fn check_complete_through(through: NaiveDate) -> Result<()> {
    if through > chrono::Utc::now().date_naive() {
        return Err(WarehouseError::FutureCompleteThrough { date: through });
    }
    Ok(())
}

/// Warehouse-relative path of data file `file_no` of a load committed as `version`: in the
/// table's folder, or in its quarter's folder.
pub fn data_file_path(
    table: &str,
    quarter: Option<Quarter>,
    version: DatasetVersion,
    file_no: usize,
) -> String {
    match quarter {
        Some(q) => format!(
            "{TABLES_DIR}/{table}/quarter={q}/v{:04}-{file_no:02}.parquet",
            version.0
        ),
        None => format!(
            "{TABLES_DIR}/{table}/v{:04}-{file_no:02}.parquet",
            version.0
        ),
    }
}

/// Whether a file name is one [`data_file_path`] gives: `v` and at least four digits, `-`,
/// at least two digits, `.parquet`.
fn is_data_file_name(name: &str) -> bool {
    let digits =
        |s: &str, at_least: usize| s.len() >= at_least && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix('v')
        .and_then(|n| n.strip_suffix(".parquet"))
        .and_then(|n| n.split_once('-'))
        .is_some_and(|(v, f)| digits(v, 4) && digits(f, 2))
}

/// Whether a folder name is one [`data_file_path`] gives: `quarter=2025Q1`.
fn is_quarter_dir_name(name: &str) -> bool {
    name.strip_prefix("quarter=")
        .is_some_and(|q| q.parse::<Quarter>().is_ok_and(|p| p.to_string() == q))
}

/// Warehouse-relative path of the quarantine report of data file `file_no` of a load
/// committed as `version`, named after its source file.
pub fn quarantine_path(version: DatasetVersion, file_no: usize, source: &Path) -> String {
    format!(
        "{QUARANTINE_DIR}/v{:04}-{file_no:02}-{}.csv",
        version.0,
        file_stem(source)
    )
}

/// A source file's name without its extension, for report names.
fn file_stem(source: &Path) -> String {
    source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Refuses a folder that holds anything but what creating a warehouse there leaves on the
/// way (its lock, the manifest's temporary file). A missing folder is fine.
fn refuse_unless_empty(root: &Path) -> Result<()> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(root)(e)),
    };
    for entry in entries {
        let name = entry.map_err(io_err(root))?.file_name();
        let name = name.to_string_lossy();
        if name != LOCK_FILE && !name.starts_with(MANIFEST_TMP_PREFIX) {
            return Err(WarehouseError::NotEmpty(root.to_path_buf()));
        }
    }
    Ok(())
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

/// Creates `dir` and every missing ancestor, outermost first, and flushes each new folder's
/// entry into its parent, so that a power loss cannot lose a folder that a later commit
/// depends on. Returns the folders it created, outermost first.
pub fn create_dir_synced(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    loop {
        match fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(d.to_path_buf());
                match d.parent() {
                    Some(p) if !p.as_os_str().is_empty() => d = p,
                    _ => break,
                }
            }
            Err(e) => return Err(io_err(d)(e)),
        }
    }
    missing.reverse();
    for m in &missing {
        match fs::create_dir(m) {
            Ok(()) => {}
            // Another process made it meanwhile; its entry may not be flushed yet.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && m.is_dir() => {}
            Err(e) => return Err(io_err(m)(e)),
        }
        let parent = m
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(missing)
}

/// The entries of a folder, with whether each is a folder; none if it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, bool)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        let is_dir = entry.file_type().map_err(io_err(entry.path()))?.is_dir();
        out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    out.sort();
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_names_are_recognised() {
        let q: Quarter = "2025Q1".parse().unwrap();
        let p = data_file_path("arrests", Some(q), DatasetVersion(3), 0);
        assert_eq!(p, "tables/arrests/quarter=2025Q1/v0003-00.parquet");
        assert!(is_data_file_name("v0003-00.parquet"));
        assert!(is_data_file_name("v12345-123.parquet"));
        for other in [
            "v003-00.parquet",
            "v0003-0.parquet",
            "v0003-00.parquet.bak",
            "x0003-00.parquet",
            "v0003_00.parquet",
            "export.parquet",
        ] {
            assert!(!is_data_file_name(other), "{other}");
        }
        assert!(is_quarter_dir_name("quarter=2025Q1"));
        assert!(!is_quarter_dir_name("quarter=2025q1"));
        assert!(!is_quarter_dir_name("quarter=2025Q5"));
        assert!(!is_quarter_dir_name("2025Q1"));
    }

    #[test]
    fn new_folders_are_created_outermost_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b").join("c");
        let made = create_dir_synced(&dir).unwrap();
        assert_eq!(
            made,
            [
                tmp.path().join("a"),
                tmp.path().join("a/b"),
                tmp.path().join("a/b/c")
            ]
        );
        assert!(dir.is_dir());
        assert!(create_dir_synced(&dir).unwrap().is_empty());
    }
}
