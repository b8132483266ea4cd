//! The parallel row pipeline of one file: a reader cuts the body into chunks of whole lines,
//! workers validate chunks in parallel, and the collector takes their results in file order,
//! enforces unique keys across the file, earlier files and the warehouse, and writes the valid
//! rows as zstd Parquet, one file per quarter, into the staging folder.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::IngestError;
use super::rows::{ChunkResult, Reject, RowRules, validate_chunk};
use crate::dictionary::ColumnType;
use crate::quarter::Quarter;
use crate::warehouse::hex;

/// Bytes per chunk handed to a worker.
const CHUNK_BYTES: usize = 4 << 20;
/// Rows per Parquet row group: small enough to prune within a quarter, large enough to
/// compress well.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// A hasher for keys that are already uniform 128-bit hashes.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(29) ^ v;
    }
}

/// A 128-bit key hash as two words, so a set entry with its line is 24 bytes, not 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(u64, u64);

impl From<u128> for KeyHash {
    fn from(h: u128) -> Self {
        KeyHash((h >> 64) as u64, h as u64)
    }
}

/// Primary-key hashes already taken, with the line that took each (0: already stored).
pub type SeenKeys = HashMap<KeyHash, u64, BuildHasherDefault<PassThroughHasher>>;

/// One staged Parquet file.
#[derive(Debug)]
pub struct StagedData {
    pub quarter: Option<Quarter>,
    pub path: PathBuf,
    pub rows: u64,
}

/// A file whose valid rows are staged and not yet committed.
#[derive(Debug)]
pub struct StagedFile {
    pub data: Vec<StagedData>,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    /// Rejected fields, by line.
    pub rejects: Vec<Reject>,
    /// For the programs table: each loaded program's id and start date (epoch days).
    pub programs: Vec<(String, i32)>,
    /// SHA-256 of the whole file, computed while reading it.
    pub sha256: String,
}

struct Chunk {
    index: usize,
    first_line: u64,
    bytes: Vec<u8>,
    last_unterminated: bool,
}

/// Validates and stages the body of `path`.
pub fn stage_file(
    path: &Path,
    body_offset: u64,
    rules: &RowRules,
    staging: &Path,
    seen: &mut SeenKeys,
    progress: &ProgressBar,
) -> Result<StagedFile, IngestError> {
    std::fs::create_dir_all(staging).map_err(IngestError::io(staging))?;
    // Reserve the uniqueness set once from the size (a row is about 64 bytes or more), so it
    // rarely rehashes while it grows.
    let body = std::fs::metadata(path)
        .map_err(IngestError::io(path))?
        .len()
        .saturating_sub(body_offset);
    seen.reserve((body / 64) as usize);
    let stop = AtomicBool::new(false);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers + 1);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let (result_tx, result_rx) = mpsc::sync_channel::<(usize, usize, ChunkResult)>(workers + 1);

        let stop_ref = &stop;
        let reader = scope.spawn(move || read_chunks(path, body_offset, chunk_tx, stop_ref));
        for _ in 0..workers {
            let rx = Arc::clone(&chunk_rx);
            let tx = result_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(chunk)) = next else { break };
                    let res = validate_chunk(
                        rules,
                        &chunk.bytes,
                        chunk.first_line,
                        chunk.last_unterminated,
                    );
                    if tx.send((chunk.index, chunk.bytes.len(), res)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        drop(chunk_rx);

        let outcome = collect(path, rules, staging, seen, progress, result_rx);
        if outcome.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let read = reader.join().expect("the reader thread does not panic");
        match (outcome, read) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(mut staged), Ok(sha256)) => {
                staged.sha256 = sha256;
                Ok(staged)
            }
        }
    })
}

/// Reads the body in chunks that end at a line break and sends them on.
/// Returns the SHA-256 of the whole file, read on the way (empty if stopped early).
fn read_chunks(
    path: &Path,
    body_offset: u64,
    tx: mpsc::SyncSender<Chunk>,
    stop: &AtomicBool,
) -> Result<String, IngestError> {
    let mut file = File::open(path).map_err(IngestError::io(path))?;
    let mut hasher = Sha256::new();
    let mut head = vec![0u8; body_offset as usize];
    file.read_exact(&mut head).map_err(IngestError::io(path))?;
    hasher.update(&head);
    let mut carry: Vec<u8> = Vec::new();
    let mut line = 2u64;
    let mut index = 0usize;
    let mut eof = false;
    while !eof {
        if stop.load(Ordering::Relaxed) {
            return Ok(String::new());
        }
        let mut buf = std::mem::take(&mut carry);
        let start = buf.len();
        buf.resize(start + CHUNK_BYTES, 0);
        let mut filled = start;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .map_err(IngestError::io(path))?;
            if n == 0 {
                eof = true;
                break;
            }
            hasher.update(&buf[filled..filled + n]);
            filled += n;
        }
        buf.truncate(filled);
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(p) => p + 1,
                // No line break in a whole chunk: hand it on, the worker reports the overlong line.
                None => buf.len(),
            }
        };
        carry = buf.split_off(cut);
        if buf.is_empty() {
            continue;
        }
        let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
        let chunk = Chunk {
            index,
            first_line: line,
            last_unterminated: eof && !buf.ends_with(b"\n"),
            bytes: buf,
        };
        line += lines;
        index += 1;
        if tx.send(chunk).is_err() {
            return Ok(String::new());
        }
    }
    Ok(hex(&hasher.finalize()))
}

struct QuarterWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

/// Takes chunk results in file order, removes duplicate keys and writes the rest.
fn collect(
    path: &Path,
    rules: &RowRules,
    staging: &Path,
    seen: &mut SeenKeys,
    progress: &ProgressBar,
    results: mpsc::Receiver<(usize, usize, ChunkResult)>,
) -> Result<StagedFile, IngestError> {
    // Ids and free text are nearly unique: dictionary encoding them only costs time.
    let plain_columns = rules
        .table
        .columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Id | ColumnType::Text))
        .map(|c| ColumnPath::from(c.name.as_str()));
    let props = plain_columns
        .fold(WriterProperties::builder(), |b, c| {
            b.set_column_dictionary_enabled(c, false)
        })
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("outreach-warehouse {}", env!("CARGO_PKG_VERSION")))
        .build();
    let pk = rules
        .table
        .column_index(&rules.table.primary_key)
        .expect("the dictionary checks the primary key");
    let is_programs = rules.table.name == "programs";
    let start_col = rules.table.column_index("start_date");

    let mut writers: BTreeMap<Option<Quarter>, QuarterWriter> = BTreeMap::new();
    let mut pending: BTreeMap<usize, (usize, ChunkResult)> = BTreeMap::new();
    let mut next = 0usize;
    let mut staged = StagedFile {
        data: Vec::new(),
        rows_read: 0,
        rows_loaded: 0,
        rows_rejected: 0,
        rejects: Vec::new(),
        programs: Vec::new(),
        sha256: String::new(),
    };
    for (index, bytes, result) in results {
        pending.insert(index, (bytes, result));
        while let Some((bytes, result)) = pending.remove(&next) {
            next += 1;
            progress.inc(bytes as u64);
            if let Some(problem) = result.problem {
                return Err(IngestError::from_problem(path, problem));
            }
            staged.rows_read += result.rows_read;
            staged.rows_rejected += result.rows_rejected;
            staged.rejects.extend(result.rejects);
            for bucket in result.buckets {
                let mut keep = Vec::with_capacity(bucket.keys.len());
                let ids = bucket.batch.column(pk).as_string::<i32>();
                for (row, (hash, line)) in bucket.keys.iter().enumerate() {
                    match seen.entry(KeyHash::from(*hash)) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            let first = *first.get();
                            let id = ids.value(row);
                            let reason = if first == 0 {
                                format!(
                                    "{} '{id}' is already in the warehouse",
                                    rules.table.primary_key
                                )
                            } else {
                                format!("{} '{id}' repeats line {first}", rules.table.primary_key)
                            };
                            staged.rejects.push(Reject {
                                line: *line,
                                column: rules.table.primary_key.clone(),
                                reason,
                            });
                            staged.rows_rejected += 1;
                            keep.push(false);
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(*line);
                            keep.push(true);
                        }
                    }
                }
                let batch = if keep.iter().all(|k| *k) {
                    bucket.batch
                } else {
                    filter_record_batch(&bucket.batch, &BooleanArray::from(keep))
                        .expect("a mask as long as the batch")
                };
                if batch.num_rows() == 0 {
                    continue;
                }
                if is_programs && let Some(sc) = start_col {
                    let ids = batch.column(pk).as_string::<i32>();
                    let starts = batch
                        .column(sc)
                        .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
                    for i in 0..batch.num_rows() {
                        staged
                            .programs
                            .push((ids.value(i).to_string(), starts.value(i)));
                    }
                }
                let w = match writers.entry(bucket.quarter) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let name = match bucket.quarter {
                            Some(q) => format!("{q}.parquet"),
                            None => "all.parquet".to_string(),
                        };
                        let p = staging.join(name);
                        let file = File::create(&p).map_err(IngestError::io(&p))?;
                        let writer =
                            ArrowWriter::try_new(file, rules.schema.clone(), Some(props.clone()))
                                .map_err(IngestError::parquet(&p))?;
                        e.insert(QuarterWriter {
                            path: p,
                            writer,
                            rows: 0,
                        })
                    }
                };
                w.writer
                    .write(&batch)
                    .map_err(IngestError::parquet(&w.path))?;
                w.rows += batch.num_rows() as u64;
                staged.rows_loaded += batch.num_rows() as u64;
            }
        }
    }
    // Closing flushes each file's last row groups: compress them on all cores at once.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let writers: Vec<(Option<Quarter>, QuarterWriter)> = writers.into_iter().collect();
    let closed: Vec<Result<StagedData, IngestError>> = std::thread::scope(|scope| {
        let mut groups: Vec<Vec<(Option<Quarter>, QuarterWriter)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (i, w) in writers.into_iter().enumerate() {
            groups[i % threads].push(w);
        }
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                scope.spawn(move || {
                    group
                        .into_iter()
                        .map(|(quarter, w)| {
                            let file = w
                                .writer
                                .into_inner()
                                .map_err(IngestError::parquet(&w.path))?;
                            file.sync_all().map_err(IngestError::io(&w.path))?;
                            Ok(StagedData {
                                quarter,
                                path: w.path,
                                rows: w.rows,
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a closing thread does not panic"))
            .collect()
    });
    for data in closed {
        staged.data.push(data?);
    }
    staged.data.sort_by_key(|d| d.quarter);
    staged.rejects.sort();
    Ok(staged)
}
