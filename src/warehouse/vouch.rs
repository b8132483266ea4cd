//! The warehouse vouches for its data files: every Parquet file the manifest names is there,
//! whole, and is the file that was written.
//!
//! Two checks, one cheap and one thorough:
//! - [`Warehouse::check_data_files`] runs before any command reads the data (every DataFusion
//!   session over the warehouse opens through it, see `session.rs`, so a release, `publish`,
//!   `plan`, the exact metrics and `status` all refuse before anything is read or debited).
//!   For each file a reader reads, it checks that the file exists, is a regular file, has
//!   the size the manifest records, and that its Parquet footer holds the rows the manifest
//!   records. It reads the file's metadata and its footer, never its data pages.
//! - [`Warehouse::scrub`] (`outreach status --verify`) re-hashes every data file the manifest
//!   names against the SHA-256 recorded when it was written: the scrub a steward runs on a
//!   schedule, which also finds a file whose bytes changed but whose size and footer did not.
//!
//! Neither writes anything, and neither names a value of a row: a damaged file is named by
//! its warehouse-relative path, its table and what is wrong (missing, its size, its row
//! count). Sizes and row counts are the steward's own exact figures of their warehouse, shown
//! only by the steward's commands; the parser's own message about an unreadable footer is
//! not repeated.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use sha2::{Digest, Sha256};

use super::{
    DataFile, Manifest, Result, TABLES_DIR, Warehouse, WarehouseError, dictionary, hex, io_err,
};

/// How many damaged files the error of [`Warehouse::check_data_files`] names; the rest are
/// counted (the scrub lists them all).
const NAMED_IN_ERROR: usize = 5;

/// The buffer the scrub reads a file through: 1 MiB.
const SCRUB_BUFFER: usize = 1 << 20;

/// What is wrong with a data file that the manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// No file at its path.
    Missing,
    /// Something at its path that is not a regular file (a folder, a device).
    NotAFile,
    /// Its size is not the recorded one: shorter (truncated) or longer.
    Size { found: u64, recorded: u64 },
    /// Its Parquet footer cannot be read.
    Unreadable,
    /// Its Parquet footer holds another number of rows than the manifest records.
    Rows { found: u64, recorded: u64 },
    /// Its bytes hash to another SHA-256 than the recorded one (the scrub only).
    Changed,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Missing => write!(f, "missing"),
            FileProblem::NotAFile => write!(f, "not a regular file"),
            FileProblem::Size { found, recorded } if found < recorded => {
                write!(f, "truncated: {found} bytes, recorded {recorded}")
            }
            FileProblem::Size { found, recorded } => {
                write!(f, "size {found} bytes, recorded {recorded}")
            }
            FileProblem::Unreadable => write!(f, "its Parquet footer cannot be read"),
            FileProblem::Rows { found, recorded } => {
                write!(f, "{found} rows in its Parquet footer, recorded {recorded}")
            }
            FileProblem::Changed => write!(
                f,
                "changed: its SHA-256 is not the one recorded when it was written"
            ),
        }
    }
}

/// A data file that the manifest names and the warehouse does not hold as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFile {
    /// Warehouse-relative path, as the manifest names it.
    pub path: String,
    pub table: String,
    pub problem: FileProblem,
}

impl fmt::Display for DamagedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (table {}): {}", self.path, self.table, self.problem)
    }
}

/// The damaged files [`Warehouse::check_data_files`] found, at least one; its display names
/// the first few and counts the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFiles(pub Vec<DamagedFile>);

impl fmt::Display for DamagedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().take(NAMED_IN_ERROR).enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{d}")?;
        }
        let more = self.0.len().saturating_sub(NAMED_IN_ERROR);
        if more > 0 {
            write!(
                f,
                "; and {more} more data file{}",
                if more == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

/// What [`Warehouse::scrub`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrub {
    /// Data files checked: every file the manifest names.
    pub files: usize,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Files missing, truncated or changed, in the manifest's order.
    pub damaged: Vec<DamagedFile>,
    /// Files for which the manifest records no SHA-256 (written by a build that did not
    /// record it): checked by their size, where recorded, and their footer's rows only.
    pub unhashed: usize,
}

impl fmt::Display for Scrub {
    /// The steward's summary of a scrub: each damaged file on a line of its own, or how many
    /// files and bytes were checked when every one holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.damaged.is_empty() {
            for d in &self.damaged {
                writeln!(f, "{d}")?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "Verified {} data file{} ({} bytes): each is present and matches the SHA-256 its manifest records.",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.bytes
        )?;
        if self.unhashed > 0 {
            writeln!(
                f,
                "{} of them have no recorded SHA-256 (written by an older build): only their size and rows were checked.",
                self.unhashed
            )?;
        }
        Ok(())
    }
}

impl Warehouse {
    /// Checks every data file that a reader of `manifest` reads (each table's files, as
    /// [`Manifest::data_files`] gives them): it exists, is a regular file, has its recorded
    /// size (when one is recorded) and its Parquet footer's row count is the recorded one.
    /// Reads metadata and footers only. Any failure is [`WarehouseError::DamagedData`],
    /// naming the files, and the command that asked reads and spends nothing.
    pub fn check_data_files(&self, manifest: &Manifest) -> Result<()> {
        let mut damaged = Vec::new();
        for t in dictionary()?.tables() {
            for f in manifest.data_files(&t.name) {
                if let Some(problem) = self.quick_check(f)? {
                    damaged.push(DamagedFile {
                        path: f.path.clone(),
                        table: t.name.clone(),
                        problem,
                    });
                }
            }
        }
        if damaged.is_empty() {
            Ok(())
        } else {
            Err(WarehouseError::DamagedData {
                root: self.root.clone(),
                damaged: DamagedFiles(damaged),
            })
        }
    }

    /// The manifest as last committed, once [`Warehouse::check_data_files`] has vouched for
    /// its files: for the commands that read no data through a session but must not run on a
    /// damaged warehouse (`serve`, `report`, `ingest`).
    pub fn vouched_manifest(&self) -> Result<Manifest> {
        let manifest = self.manifest()?;
        self.check_data_files(&manifest)?;
        Ok(manifest)
    }

    /// Re-hashes every data file that `manifest` names ([`Manifest::all_data_files`]) against
    /// its recorded SHA-256, reading each through a buffer, several files at once. A file
    /// whose size already differs from the recorded one is not read. A file with no recorded
    /// SHA-256 gets the checks of [`Warehouse::check_data_files`] instead. Writes nothing.
    pub fn scrub(&self, manifest: &Manifest) -> Result<Scrub> {
        let files: Vec<&DataFile> = manifest.all_data_files().collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(files.len())
            .max(1);
        let counter = AtomicUsize::new(0);
        let (next, list) = (&counter, &files);
        let mut verdicts: Vec<(usize, Result<Verdict>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(f) = list.get(i) else {
                                break;
                            };
                            out.push((i, self.scrub_file(f)));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a scrub thread only reads files"))
                .collect()
        });
        verdicts.sort_by_key(|(i, _)| *i);
        let mut scrub = Scrub {
            files: files.len(),
            bytes: 0,
            damaged: Vec::new(),
            unhashed: 0,
        };
        for (i, verdict) in verdicts {
            let verdict = verdict?;
            scrub.bytes += verdict.hashed;
            if !verdict.had_hash {
                scrub.unhashed += 1;
            }
            if let Some(problem) = verdict.problem {
                let path = &files[i].path;
                scrub.damaged.push(DamagedFile {
                    table: table_of(path).to_string(),
                    path: path.clone(),
                    problem,
                });
            }
        }
        Ok(scrub)
    }

    /// The cheap check of one data file: what is wrong with it, if anything.
    fn quick_check(&self, f: &DataFile) -> Result<Option<FileProblem>> {
        let path = self.path(&f.path);
        let len = match stat(&path)? {
            Ok(len) => len,
            Err(problem) => return Ok(Some(problem)),
        };
        if f.bytes > 0 && len != f.bytes {
            return Ok(Some(FileProblem::Size {
                found: len,
                recorded: f.bytes,
            }));
        }
        let file = match open(&path)? {
            Ok(file) => file,
            Err(problem) => return Ok(Some(problem)),
        };
        let rows = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .ok()
            .and_then(|m| u64::try_from(m.file_metadata().num_rows()).ok());
        Ok(match rows {
            None => Some(FileProblem::Unreadable),
            Some(found) if found != f.rows => Some(FileProblem::Rows {
                found,
                recorded: f.rows,
            }),
            Some(_) => None,
        })
    }

    /// The scrub of one data file.
    fn scrub_file(&self, f: &DataFile) -> Result<Verdict> {
        if f.sha256.is_empty() {
            return Ok(Verdict {
                problem: self.quick_check(f)?,
                hashed: 0,
                had_hash: false,
            });
        }
        let path = self.path(&f.path);
        let verdict = |problem| Verdict {
            problem: Some(problem),
            hashed: 0,
            had_hash: true,
        };
        let len = match stat(&path)? {
            Ok(len) => len,
            Err(problem) => return Ok(verdict(problem)),
        };
        if f.bytes > 0 && len != f.bytes {
            return Ok(verdict(FileProblem::Size {
                found: len,
                recorded: f.bytes,
            }));
        }
        let mut file = match open(&path)? {
            Ok(file) => file,
            Err(problem) => return Ok(verdict(problem)),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; SCRUB_BUFFER];
        let mut hashed = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            hasher.update(&buf[..n]);
            hashed += n as u64;
        }
        let problem = (!hex(&hasher.finalize()).eq_ignore_ascii_case(&f.sha256))
            .then_some(FileProblem::Changed);
        Ok(Verdict {
            problem,
            hashed,
            had_hash: true,
        })
    }
}

/// What the scrub found of one file.
#[derive(Debug)]
struct Verdict {
    problem: Option<FileProblem>,
    /// Bytes read and hashed.
    hashed: u64,
    /// Whether the manifest records the file's SHA-256.
    had_hash: bool,
}

/// The size of the regular file at `path`, or what is wrong with what is there. Another
/// failure to read its metadata (permissions, the disk) is an error of the environment.
fn stat(path: &Path) -> Result<std::result::Result<u64, FileProblem>> {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Ok(m.len())),
        Ok(_) => Ok(Err(FileProblem::NotAFile)),
        Err(e) if is_missing(&e) => Ok(Err(FileProblem::Missing)),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The file at `path`, opened to read, or [`FileProblem::Missing`] when it went away since
/// it was looked at.
fn open(path: &Path) -> Result<std::result::Result<File, FileProblem>> {
    match File::open(path) {
        Ok(file) => Ok(Ok(file)),
        Err(e) if is_missing(&e) => Ok(Err(FileProblem::Missing)),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Whether an error says that nothing is at the path (a folder on the way may be a file).
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The table a data file's path files it under: `tables/<table>/…`.
fn table_of(path: &str) -> &str {
    path.strip_prefix(TABLES_DIR)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.split('/').next())
        .filter(|t| !t.is_empty())
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;

    use super::*;
    use crate::warehouse::{DatasetVersion, Load, LoadedFile};

    const EVENTS: &str = "tables/overdose_events/quarter=2025Q1/v0001-00.parquet";
    const ARRESTS: &str = "tables/arrests/quarter=2025Q1/v0001-01.parquet";

    /// Writes a Parquet file of `rows` rows at `rel` under `root`, and returns its record.
    fn parquet(root: &Path, rel: &str, rows: i64) -> DataFile {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = fs::read(&path).unwrap();
        DataFile {
            path: rel.to_string(),
            rows: rows as u64,
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            replaced_in: None,
        }
    }

    /// A manifest with one load of `files`, each of the table its path names.
    fn manifest(files: &[DataFile]) -> Manifest {
        let mut m = Manifest::new();
        m.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            files: files
                .iter()
                .map(|d| LoadedFile {
                    source: "x.csv".into(),
                    sha256: "aa".into(),
                    bytes: 1,
                    table: table_of(&d.path).to_string(),
                    rows_read: d.rows,
                    rows_loaded: d.rows,
                    rows_rejected: 0,
                    quarantine: None,
                    mapping_sha256: None,
                    data_files: vec![d.clone()],
                    rows_unchanged: 0,
                    rows_corrected: 0,
                })
                .collect(),
            revisions: Vec::new(),
        });
        m
    }

    /// A warehouse with an events file of 5 rows and an arrests file of 7.
    fn warehouse() -> (tempfile::TempDir, Warehouse, Vec<DataFile>) {
        let tmp = tempfile::tempdir().unwrap();
        let wh = Warehouse::open_or_create(tmp.path().join("wh")).unwrap();
        let files = vec![
            parquet(wh.root(), EVENTS, 5),
            parquet(wh.root(), ARRESTS, 7),
        ];
        (tmp, wh, files)
    }

    fn damaged(wh: &Warehouse, m: &Manifest) -> Vec<DamagedFile> {
        match wh.check_data_files(m) {
            Ok(()) => Vec::new(),
            Err(WarehouseError::DamagedData { damaged, .. }) => damaged.0,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_intact_warehouse_passes_both_checks() {
        let (_tmp, wh, files) = warehouse();
        let m = manifest(&files);
        wh.check_data_files(&m).unwrap();
        let scrub = wh.scrub(&m).unwrap();
        assert_eq!(scrub.files, 2);
        assert!(scrub.damaged.is_empty(), "{scrub}");
        assert_eq!(scrub.bytes, files[0].bytes + files[1].bytes);
        assert_eq!(scrub.unhashed, 0);
        assert!(scrub.to_string().starts_with("Verified 2 data files"));
    }

    #[test]
    fn each_problem_is_named_with_its_file_and_table() {
        let (_tmp, wh, files) = warehouse();
        let events = wh.path(EVENTS);
        let len = files[0].bytes;
        let cases = [
            ("missing", FileProblem::Missing),
            ("a folder in its place", FileProblem::NotAFile),
            (
                "truncated",
                FileProblem::Size {
                    found: len / 2,
                    recorded: len,
                },
            ),
            (
                "one byte longer",
                FileProblem::Size {
                    found: len + 1,
                    recorded: len,
                },
            ),
            ("garbage of the same size", FileProblem::Unreadable),
        ];
        for (what, problem) in cases {
            let _ = fs::remove_dir(&events);
            parquet(wh.root(), EVENTS, 5);
            match what {
                "missing" => fs::remove_file(&events).unwrap(),
                "a folder in its place" => {
                    fs::remove_file(&events).unwrap();
                    fs::create_dir(&events).unwrap();
                }
                "truncated" => {
                    let f = fs::OpenOptions::new().write(true).open(&events).unwrap();
                    f.set_len(len / 2).unwrap();
                }
                "one byte longer" => {
                    let f = fs::OpenOptions::new().write(true).open(&events).unwrap();
                    f.set_len(len + 1).unwrap();
                }
                _ => fs::write(&events, vec![0x55u8; len as usize]).unwrap(),
            }
            let found = damaged(&wh, &manifest(&files));
            assert_eq!(
                found,
                [DamagedFile {
                    path: EVENTS.into(),
                    table: "overdose_events".into(),
                    problem: problem.clone(),
                }],
                "{what}"
            );
            // The scrub finds the same, without hashing what its size already told.
            let scrub = wh.scrub(&manifest(&files)).unwrap();
            let expected = match problem {
                FileProblem::Unreadable => FileProblem::Changed,
                p => p,
            };
            assert_eq!(scrub.damaged[0].problem, expected, "{what}");
        }
    }

    #[test]
    fn a_footer_with_other_rows_is_refused_also_where_no_size_was_recorded() {
        let (_tmp, wh, mut files) = warehouse();
        // Another valid file of the table in its place: 6 rows where 5 are recorded.
        parquet(wh.root(), EVENTS, 6);
        files[0].bytes = 0;
        let found = damaged(&wh, &manifest(&files));
        assert_eq!(
            found[0].problem,
            FileProblem::Rows {
                found: 6,
                recorded: 5
            }
        );
        let text = WarehouseError::DamagedData {
            root: wh.root().to_path_buf(),
            damaged: DamagedFiles(found),
        }
        .to_string();
        assert!(
            text.contains(&format!(
                "{EVENTS} (table overdose_events): 6 rows in its Parquet footer, recorded 5"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_scrub_finds_changed_bytes_that_the_cheap_check_cannot_see() {
        let (_tmp, wh, files) = warehouse();
        let m = manifest(&files);
        // Flip one byte inside the data pages: same size, same footer.
        let path = wh.path(ARRESTS);
        let mut bytes = fs::read(&path).unwrap();
        bytes[4] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        wh.check_data_files(&m).unwrap();
        let scrub = wh.scrub(&m).unwrap();
        assert_eq!(
            scrub.damaged,
            [DamagedFile {
                path: ARRESTS.into(),
                table: "arrests".into(),
                problem: FileProblem::Changed,
            }]
        );
        assert!(scrub.to_string().contains(ARRESTS), "{scrub}");
        // Hashed whole, except the file whose size already told.
        fs::remove_file(wh.path(EVENTS)).unwrap();
        let scrub = wh.scrub(&m).unwrap();
        assert_eq!(scrub.damaged.len(), 2);
        assert_eq!(scrub.damaged[0].problem, FileProblem::Missing);
        assert_eq!(scrub.bytes, files[1].bytes);
    }

    #[test]
    fn files_without_a_recorded_hash_get_the_cheap_check() {
        let (_tmp, wh, mut files) = warehouse();
        for f in &mut files {
            f.sha256.clear();
            f.bytes = 0;
        }
        let m = manifest(&files);
        let scrub = wh.scrub(&m).unwrap();
        assert_eq!((scrub.unhashed, scrub.bytes), (2, 0));
        assert!(scrub.damaged.is_empty());
        assert!(scrub.to_string().contains("no recorded SHA-256"), "{scrub}");
        parquet(wh.root(), ARRESTS, 8);
        let scrub = wh.scrub(&m).unwrap();
        assert_eq!(
            scrub.damaged[0].problem,
            FileProblem::Rows {
                found: 8,
                recorded: 7
            }
        );
    }

    #[test]
    fn the_error_names_a_few_files_and_counts_the_rest() {
        let list = DamagedFiles(
            (0..8)
                .map(|i| DamagedFile {
                    path: format!("tables/arrests/quarter=2025Q1/v0001-{i:02}.parquet"),
                    table: "arrests".into(),
                    problem: FileProblem::Missing,
                })
                .collect(),
        );
        let text = list.to_string();
        assert!(
            text.contains("v0001-04.parquet (table arrests): missing"),
            "{text}"
        );
        assert!(!text.contains("v0001-05"), "{text}");
        assert!(text.ends_with("; and 3 more data files"), "{text}");
        assert_eq!(table_of("tables/programs/v0001-00.parquet"), "programs");
        assert_eq!(table_of("elsewhere/x.parquet"), "unknown");
    }
}
