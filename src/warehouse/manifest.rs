//! The manifest: the one file that says what the warehouse holds.
//!
//! Data files that the manifest does not name do not exist as far as every reader is
//! concerned, so writing the manifest (by atomic rename) is the commit point of a load.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Format version of `manifest.json`.
pub const MANIFEST_FORMAT: u32 = 1;

/// An opaque, sequential dataset version, published as `v7`. Version `v0` is the empty
/// warehouse. Releases cite it; the content hash behind it stays with the steward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetVersion(pub u64);

impl fmt::Display for DatasetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// What `manifest.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Every successful load, oldest first. Each one made a new dataset version.
    pub loads: Vec<Load>,
    /// Steward-declared "data complete through" dates, per table, oldest declaration first.
    /// The last one is in force. Never inferred from the data.
    #[serde(default)]
    pub complete_through: BTreeMap<String, Vec<CompletenessDeclaration>>,
    /// The id of the warehouse's privacy-budget ledger, recorded at `budget init` (or a
    /// recovery): a ledger with another id, or none where this names one, is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_id: Option<String>,
}

/// One successful `outreach ingest`: all its files committed together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub version: DatasetVersion,
    /// RFC 3339 time of the commit.
    pub loaded_at: String,
    pub files: Vec<LoadedFile>,
    /// The stored rows this load corrected or retracted, per table: the data files it wrote
    /// in place of those it replaced (see [`DataFile::replaced_in`]). Empty for a load that
    /// only added rows, and in manifests written before corrections existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
}

/// What one load changed in one table's stored rows. Stored Parquet files are never edited:
/// a file holding a superseded row is replaced by a new file of the same table and quarter
/// without it, and the old file stays on disk as history, named in the manifest but never
/// read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub table: String,
    /// Stored rows replaced by a corrected row under the same key (the corrected rows
    /// themselves are in the load's source files' data files).
    pub corrected: u64,
    /// Stored rows a snapshot no longer held, and so retracted.
    pub retracted: u64,
    /// The quarters whose rows changed: those of the replaced rows and those the corrected
    /// rows moved to (`2025Q1`; empty for a table without dates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarters: Vec<String>,
    /// The files written in place of the replaced ones: their rows without the superseded
    /// ones (a replaced file none of whose rows remain has no successor).
    pub data_files: Vec<DataFile>,
}

/// One source file of a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadedFile {
    /// The file's path as the steward gave it.
    pub source: String,
    /// SHA-256 of the file's bytes: how a re-load of the same file is recognised.
    pub sha256: String,
    /// Size of the file in bytes; only a file of the same size can be a re-load.
    #[serde(default)]
    pub bytes: u64,
    pub table: String,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    /// Warehouse-relative path of the quarantine CSV, when rows were rejected.
    pub quarantine: Option<String>,
    pub data_files: Vec<DataFile>,
    /// SHA-256 of the source mapping the file was read through (`ingest --mapping`); absent
    /// for a file in the dictionary's form. The same bytes through another mapping are
    /// another load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_sha256: Option<String>,
    /// Rows identical to the stored row under their key: skipped, neither loaded nor
    /// rejected.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_unchanged: u64,
    /// Rows that replaced the stored row under their key (`--corrections`); they are among
    /// `rows_loaded`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_corrected: u64,
}

/// One Parquet file written by a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Warehouse-relative path, `/`-separated.
    pub path: String,
    pub rows: u64,
    /// Size of the file in bytes, as written; 0 in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// SHA-256 of the file, as written; empty in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The dataset version whose load replaced this file (it corrected or retracted some of
    /// its rows): from then on the file is history, kept on disk and named here, but no
    /// reader reads it. `None` while the file is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_in: Option<DatasetVersion>,
}

impl DataFile {
    /// Whether readers read this file: it is not replaced.
    pub fn is_live(&self) -> bool {
        self.replaced_in.is_none()
    }

    /// The quarter whose folder holds the file (`tables/<t>/quarter=2025Q1/…`), if any.
    pub fn quarter(&self) -> Option<crate::quarter::Quarter> {
        self.path
            .split('/')
            .find_map(|part| part.strip_prefix("quarter="))
            .and_then(|q| q.parse().ok())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A steward's declaration that a table's data is complete through a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletenessDeclaration {
    #[serde(with = "iso_date")]
    pub through: NaiveDate,
    pub declared_at: String,
}

impl Manifest {
    pub fn new() -> Self {
        Self {
            format: MANIFEST_FORMAT,
            ..Self::default()
        }
    }

    /// The current dataset version: that of the last load, or `v0` when empty.
    pub fn version(&self) -> DatasetVersion {
        self.loads.last().map_or(DatasetVersion(0), |l| l.version)
    }

    /// Every quarter that a live data file is filed under (`tables/<t>/quarter=2025Q1/…`),
    /// over every table.
    pub fn quarters(&self) -> std::collections::BTreeSet<crate::quarter::Quarter> {
        self.all_data_files()
            .filter_map(DataFile::quarter)
            .collect()
    }

    /// The load that already holds a file with this SHA-256 in `table`, if any. The same
    /// bytes loaded into another table (with `--table`) are not the same load.
    pub fn load_of_file(&self, table: &str, sha256: &str) -> Option<(&Load, &LoadedFile)> {
        self.load_of(table, sha256, None)
    }

    /// The load that already holds a file with this SHA-256 in `table`, read through the
    /// mapping with this SHA-256 (`None`: in the dictionary's form).
    pub fn load_of(
        &self,
        table: &str,
        sha256: &str,
        mapping_sha256: Option<&str>,
    ) -> Option<(&Load, &LoadedFile)> {
        self.loads
            .iter()
            .flat_map(|l| l.files.iter().map(move |f| (l, f)))
            .find(|(_, f)| {
                f.sha256 == sha256
                    && f.table == table
                    && f.mapping_sha256.as_deref() == mapping_sha256
            })
    }

    /// Records a steward's declaration that `table` is complete through `through`.
    pub fn declare_complete_through(
        &mut self,
        table: &str,
        through: NaiveDate,
        declared_at: String,
    ) {
        self.complete_through
            .entry(table.to_string())
            .or_default()
            .push(CompletenessDeclaration {
                through,
                declared_at,
            });
    }

    /// Whether a file of this size may already be loaded (sizes unknown to older manifests
    /// count as a possible match).
    pub fn may_hold_file_of_size(&self, bytes: u64) -> bool {
        self.loads
            .iter()
            .flat_map(|l| l.files.iter())
            .any(|f| f.bytes == bytes || f.bytes == 0)
    }

    /// Every live data file of `table`, oldest first: what readers of the table read.
    pub fn data_files(&self, table: &str) -> impl Iterator<Item = &DataFile> {
        self.every_data_file()
            .filter(move |(t, _)| *t == table)
            .map(|(_, d)| d)
            .filter(|d| d.is_live())
    }

    /// Every live data file of every table: what a reader may depend on.
    pub fn all_data_files(&self) -> impl Iterator<Item = &DataFile> {
        self.every_data_file()
            .map(|(_, d)| d)
            .filter(|d| d.is_live())
    }

    /// Every data file the manifest names, live or replaced (history), with its table,
    /// oldest first: what recovery must never move away.
    pub fn every_data_file(&self) -> impl Iterator<Item = (&str, &DataFile)> {
        self.loads.iter().flat_map(|l| {
            l.files
                .iter()
                .flat_map(|f| f.data_files.iter().map(move |d| (f.table.as_str(), d)))
                .chain(
                    l.revisions
                        .iter()
                        .flat_map(|r| r.data_files.iter().map(move |d| (r.table.as_str(), d))),
                )
        })
    }

    /// Marks the named data files as replaced by the load of `version`. Returns how many it
    /// marked; a path it does not name, or names as replaced already, is not counted.
    pub fn replace_files(&mut self, paths: &[String], version: DatasetVersion) -> usize {
        let mut marked = 0;
        for l in &mut self.loads {
            let files = l.files.iter_mut().flat_map(|f| f.data_files.iter_mut());
            let revised = l.revisions.iter_mut().flat_map(|r| r.data_files.iter_mut());
            for d in files.chain(revised) {
                if d.replaced_in.is_none() && paths.contains(&d.path) {
                    d.replaced_in = Some(version);
                    marked += 1;
                }
            }
        }
        marked
    }

    /// Stored rows corrected and retracted in `table` over every load, for the steward's
    /// status.
    pub fn revised_rows(&self, table: &str) -> (u64, u64) {
        self.loads
            .iter()
            .flat_map(|l| &l.revisions)
            .filter(|r| r.table == table)
            .fold((0, 0), |(c, r), x| (c + x.corrected, r + x.retracted))
    }

    /// The quarters whose stored rows a load after `version` corrected or retracted, with
    /// the first such version for each: a publication made from `version` no longer shows
    /// what the warehouse holds for them.
    pub fn quarters_revised_after(
        &self,
        version: DatasetVersion,
    ) -> BTreeMap<crate::quarter::Quarter, DatasetVersion> {
        let mut out = BTreeMap::new();
        for l in self.loads.iter().filter(|l| l.version > version) {
            for r in &l.revisions {
                for q in r.quarters.iter().filter_map(|q| q.parse().ok()) {
                    out.entry(q).or_insert(l.version);
                }
            }
        }
        out
    }

    /// The "data complete through" date in force for `table`.
    pub fn complete_through(&self, table: &str) -> Option<NaiveDate> {
        self.complete_through.get(table)?.last().map(|d| d.through)
    }

    /// A hash of what the warehouse holds. It is a function of private data, so it is shown to
    /// the steward only and never published; releases cite [`Manifest::version`] instead, and
    /// bind their idempotency key to this hash.
    ///
    /// It covers what was stored, not only where it came from: the same CSVs loaded with
    /// another `--max-date`, `--min-date`, `--max-reject-rate` or by a build with other rules
    /// store other rows, so each source file's rows loaded and rejected, and each data file's
    /// path, rows, size and SHA-256 (size and hash as recorded since they were; older
    /// manifests hash as empty there) are hashed beside the source file's SHA-256 and table.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"outreach content v2\0");
        for l in &self.loads {
            for f in &l.files {
                h.update(f.table.as_bytes());
                h.update([0]);
                h.update(f.sha256.as_bytes());
                h.update([0]);
                h.update(f.rows_loaded.to_le_bytes());
                h.update(f.rows_rejected.to_le_bytes());
                h.update((f.data_files.len() as u64).to_le_bytes());
                for d in &f.data_files {
                    hash_data_file(&mut h, d);
                }
                // Written only by loads that revise rows, so a manifest without revisions
                // keeps the hash it always had (releases bind their keys to it).
                if f.rows_unchanged != 0 || f.rows_corrected != 0 {
                    h.update(b"revised\0");
                    h.update(f.rows_unchanged.to_le_bytes());
                    h.update(f.rows_corrected.to_le_bytes());
                }
            }
            for r in &l.revisions {
                h.update(b"revision\0");
                h.update(r.table.as_bytes());
                h.update([0]);
                h.update(r.corrected.to_le_bytes());
                h.update(r.retracted.to_le_bytes());
                h.update((r.data_files.len() as u64).to_le_bytes());
                for d in &r.data_files {
                    hash_data_file(&mut h, d);
                }
            }
        }
        hex(&h.finalize())
    }
}

/// A data file's part of [`Manifest::content_hash`]: path, rows, size and SHA-256, and the
/// version that replaced it, if one did.
fn hash_data_file(h: &mut Sha256, d: &DataFile) {
    h.update(d.path.as_bytes());
    h.update([0]);
    h.update(d.rows.to_le_bytes());
    h.update(d.bytes.to_le_bytes());
    h.update(d.sha256.as_bytes());
    h.update([0]);
    if let Some(v) = d.replaced_in {
        h.update(b"replaced\0");
        h.update(v.0.to_le_bytes());
    }
}

/// Serde for `YYYY-MM-DD` dates.
mod iso_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format("%Y-%m-%d"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(serde::de::Error::custom)
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(table: &str, sha: &str, paths: &[&str]) -> LoadedFile {
        LoadedFile {
            source: format!("{table}.csv"),
            sha256: sha.into(),
            bytes: 10,
            table: table.into(),
            rows_read: 2,
            rows_loaded: 2,
            rows_rejected: 0,
            quarantine: None,
            rows_unchanged: 0,
            rows_corrected: 0,
            data_files: paths
                .iter()
                .map(|p| DataFile {
                    path: (*p).into(),
                    rows: 1,
                    bytes: 100,
                    sha256: format!("{p}-sha"),
                    replaced_in: None,
                })
                .collect(),
            mapping_sha256: None,
        }
    }

    #[test]
    fn version_files_and_completeness() {
        let mut m = Manifest::new();
        assert_eq!(m.version().to_string(), "v0");
        m.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![file("arrests", "aa", &["a/1.parquet", "a/2.parquet"])],
        });
        m.loads.push(Load {
            version: DatasetVersion(2),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![
                file("arrests", "bb", &["a/3.parquet"]),
                file("referrals", "cc", &["r/1.parquet"]),
            ],
        });
        assert_eq!(m.version().to_string(), "v2");
        let paths: Vec<_> = m.data_files("arrests").map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/1.parquet", "a/2.parquet", "a/3.parquet"]);
        assert_eq!(
            m.load_of_file("referrals", "cc").unwrap().0.version,
            DatasetVersion(2)
        );
        assert!(m.load_of_file("arrests", "cc").is_none());
        assert!(m.load_of_file("referrals", "dd").is_none());

        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        m.complete_through
            .entry("arrests".into())
            .or_default()
            .extend([
                CompletenessDeclaration {
                    through: d("2025-03-31"),
                    declared_at: "t1".into(),
                },
                CompletenessDeclaration {
                    through: d("2025-06-30"),
                    declared_at: "t2".into(),
                },
            ]);
        assert_eq!(m.complete_through("arrests"), Some(d("2025-06-30")));
        assert_eq!(m.complete_through("referrals"), None);

        let round: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(round, m);
    }

    #[test]
    fn content_hash_changes_with_content_only() {
        let mut a = Manifest::new();
        a.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![file("arrests", "aa", &[])],
        });
        let mut b = a.clone();
        b.loads[0].loaded_at = "later".into();
        assert_eq!(a.content_hash(), b.content_hash());
        b.loads[0].files[0].sha256 = "ab".into();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn content_hash_binds_the_stored_rows_not_only_the_source_files() {
        let mut a = Manifest::new();
        a.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![file("arrests", "aa", &["a/1.parquet", "a/2.parquet"])],
        });
        let changed: [fn(&mut LoadedFile); 6] = [
            |f| f.rows_loaded += 1,
            |f| f.rows_rejected += 1,
            |f| f.data_files[0].rows += 1,
            |f| f.data_files[1].sha256 = "other".into(),
            |f| f.data_files[1].bytes += 1,
            |f| {
                f.data_files.pop();
            },
        ];
        for change in changed {
            let mut b = a.clone();
            change(&mut b.loads[0].files[0]);
            assert_ne!(a.content_hash(), b.content_hash(), "{:?}", b.loads[0]);
        }
    }

    #[test]
    fn quarters_are_read_from_the_data_files_folders() {
        let mut m = Manifest::new();
        m.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![
                file(
                    "arrests",
                    "aa",
                    &[
                        "tables/arrests/quarter=2025Q1/v0001-00.parquet",
                        "tables/arrests/quarter=2024Q4/v0001-01.parquet",
                    ],
                ),
                // A table without dates has no quarter folder.
                file("programs", "bb", &["tables/programs/v0001-00.parquet"]),
            ],
        });
        m.loads.push(Load {
            version: DatasetVersion(2),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![file(
                "referrals",
                "cc",
                &["tables/referrals/quarter=2025Q1/v0002-00.parquet"],
            )],
        });
        let quarters: Vec<String> = m.quarters().iter().map(|q| q.to_string()).collect();
        assert_eq!(quarters, ["2024Q4", "2025Q1"]);
    }

    #[test]
    fn manifests_without_data_file_hashes_still_open() {
        let old = r#"{"format":1,"loads":[{"version":1,"loaded_at":"t","files":[{"source":"a.csv","sha256":"aa","bytes":10,"table":"arrests","rows_read":2,"rows_loaded":2,"rows_rejected":0,"quarantine":null,"data_files":[{"path":"tables/arrests/quarter=2025Q1/v0001-00.parquet","rows":2}]}]}]}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        let d = &m.loads[0].files[0].data_files[0];
        assert_eq!((d.bytes, d.sha256.as_str()), (0, ""));
        assert_eq!(m.content_hash().len(), 64);
        // Written back, it holds no empty fields.
        let again = serde_json::to_string(&m).unwrap();
        assert!(!again.contains("\"sha256\":\"\""), "{again}");
        // Nor a mapping field for a file loaded without one.
        assert!(m.loads[0].files[0].mapping_sha256.is_none());
        assert!(!again.contains("mapping_sha256"), "{again}");
    }

    #[test]
    fn the_same_bytes_through_another_mapping_are_another_load() {
        let mut m = Manifest::new();
        let mut mapped = file("arrests", "aa", &["a/1.parquet"]);
        mapped.mapping_sha256 = Some("m1".into());
        m.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            files: vec![mapped],
            revisions: Vec::new(),
        });
        assert!(m.load_of("arrests", "aa", Some("m1")).is_some());
        assert!(m.load_of("arrests", "aa", Some("m2")).is_none());
        assert!(m.load_of_file("arrests", "aa").is_none());
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"mapping_sha256\":\"m1\""), "{text}");
    }

    #[test]
    fn replaced_files_are_history_named_but_never_read() {
        let mut m = Manifest::new();
        m.loads.push(Load {
            version: DatasetVersion(1),
            loaded_at: "t".into(),
            revisions: Vec::new(),
            files: vec![file(
                "arrests",
                "aa",
                &[
                    "tables/arrests/quarter=2025Q1/v0001-00.parquet",
                    "tables/arrests/quarter=2025Q2/v0001-00.parquet",
                ],
            )],
        });
        let before = m.content_hash();
        let written = DataFile {
            path: "tables/arrests/quarter=2025Q1/v0002-01.parquet".into(),
            rows: 1,
            bytes: 90,
            sha256: "new".into(),
            replaced_in: None,
        };
        m.loads.push(Load {
            version: DatasetVersion(2),
            loaded_at: "t".into(),
            files: vec![file("arrests", "bb", &[])],
            revisions: vec![Revision {
                table: "arrests".into(),
                corrected: 1,
                retracted: 0,
                quarters: vec!["2025Q1".into(), "2025Q3".into()],
                data_files: vec![written],
            }],
        });
        let replaced = vec!["tables/arrests/quarter=2025Q1/v0001-00.parquet".to_string()];
        assert_eq!(m.replace_files(&replaced, DatasetVersion(2)), 1);
        // A file is replaced once: the second call marks nothing.
        assert_eq!(m.replace_files(&replaced, DatasetVersion(3)), 0);
        let live: Vec<_> = m.data_files("arrests").map(|f| f.path.as_str()).collect();
        assert_eq!(
            live,
            [
                "tables/arrests/quarter=2025Q2/v0001-00.parquet",
                "tables/arrests/quarter=2025Q1/v0002-01.parquet"
            ]
        );
        assert_eq!(m.all_data_files().count(), 2);
        // Recovery still sees the history file as the warehouse's own.
        assert_eq!(m.every_data_file().count(), 3);
        assert_eq!(m.revised_rows("arrests"), (1, 0));
        assert_eq!(m.revised_rows("referrals"), (0, 0));
        let q = |s: &str| s.parse::<crate::quarter::Quarter>().unwrap();
        let revised = m.quarters_revised_after(DatasetVersion(1));
        assert_eq!(
            revised.into_iter().collect::<Vec<_>>(),
            [
                (q("2025Q1"), DatasetVersion(2)),
                (q("2025Q3"), DatasetVersion(2))
            ]
        );
        assert!(m.quarters_revised_after(DatasetVersion(2)).is_empty());
        assert_ne!(m.content_hash(), before);
        let round: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(round, m);
        // A manifest without revisions writes none of their fields.
        m.loads.truncate(1);
        m.loads[0].files[0].data_files[0].replaced_in = None;
        let text = serde_json::to_string(&m).unwrap();
        for field in [
            "revisions",
            "replaced_in",
            "rows_unchanged",
            "rows_corrected",
        ] {
            assert!(!text.contains(field), "{field}: {text}");
        }
        assert_eq!(m.content_hash(), before);
    }
}
