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

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
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

type KeyMap = HashMap<KeyHash, u64, BuildHasherDefault<PassThroughHasher>>;

/// Primary-key hashes already taken, with the smallest line that took each (0: already in the
/// warehouse or in an earlier file of this load). Sharded, so workers check keys in parallel.
///
/// Workers see chunks out of order, so the first line of a key is settled by the collector,
/// which takes chunks in order: when it takes chunk k, every chunk before it has been checked,
/// so a row is the first of its key exactly when no smaller line claimed the key. A worker
/// that finds a larger line holding the key takes it over and reports that line as
/// *demoted*; the collector rejects demoted rows when it reaches them.
pub struct SeenKeys {
    shards: Vec<Mutex<KeyMap>>,
}

const SHARDS: usize = 64;

/// What the uniqueness check says of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyStatus {
    /// No smaller line holds the key (yet: see [`SeenKeys`]).
    First,
    /// This line repeats the key of the given earlier line (0: stored or an earlier file).
    Repeats(u64),
}

impl Default for SeenKeys {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(KeyMap::default())).collect(),
        }
    }
}

impl SeenKeys {
    fn shard(&self, k: KeyHash) -> std::sync::MutexGuard<'_, KeyMap> {
        self.shards[(k.0 >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a key that is already stored.
    pub fn insert_stored(&self, hash: u128) {
        let k = KeyHash::from(hash);
        self.shard(k).insert(k, 0);
    }

    /// Makes room for about `n` more keys.
    pub fn reserve(&self, n: usize) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .reserve(n / SHARDS + 1);
        }
    }

    /// After a file is staged, its keys count as earlier for the next file.
    pub fn settle(&self) {
        for s in &self.shards {
            for v in s.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
                *v = 0;
            }
        }
    }

    /// Claims `hash` for `line`. Returns the row's status and, if it took the key over from a
    /// larger line, that line.
    fn claim(&self, hash: u128, line: u64) -> (KeyStatus, Option<(u64, u64)>) {
        let k = KeyHash::from(hash);
        let mut shard = self.shard(k);
        match shard.entry(k) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                (KeyStatus::First, None)
            }
            std::collections::hash_map::Entry::Occupied(mut held) => {
                let holder = *held.get();
                if holder < line {
                    (KeyStatus::Repeats(holder), None)
                } else {
                    held.insert(line);
                    (KeyStatus::First, Some((holder, line)))
                }
            }
        }
    }
}

/// A validated chunk with the uniqueness status of each bucket's rows.
struct CheckedChunk {
    result: ChunkResult,
    status: Vec<Vec<KeyStatus>>,
    /// Lines that held a key until this chunk's smaller line took it: (demoted, first).
    demoted: Vec<(u64, u64)>,
}

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
    seen: &SeenKeys,
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
        let (result_tx, result_rx) =
            mpsc::sync_channel::<(usize, usize, CheckedChunk)>(workers + 1);

        let stop_ref = &stop;
        let reader = scope.spawn(move || read_chunks(path, body_offset, chunk_tx, stop_ref));
        for _ in 0..workers {
            let rx = Arc::clone(&chunk_rx);
            let tx = result_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(chunk)) = next else { break };
                    let result = validate_chunk(
                        rules,
                        &chunk.bytes,
                        chunk.first_line,
                        chunk.last_unterminated,
                    );
                    let mut demoted = Vec::new();
                    let status = result
                        .buckets
                        .iter()
                        .map(|b| {
                            b.keys
                                .iter()
                                .map(|(hash, line)| {
                                    let (status, took_over) = seen.claim(*hash, *line);
                                    demoted.extend(took_over);
                                    status
                                })
                                .collect()
                        })
                        .collect();
                    let checked = CheckedChunk {
                        result,
                        status,
                        demoted,
                    };
                    if tx.send((chunk.index, chunk.bytes.len(), checked)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        drop(chunk_rx);

        let outcome = collect(path, rules, staging, progress, result_rx);
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

/// A quarter's Parquet file, written by its own thread so that encoding and compression run
/// beside validation instead of behind it.
struct QuarterWriter<'scope> {
    tx: mpsc::SyncSender<RecordBatch>,
    handle: std::thread::ScopedJoinHandle<'scope, Result<StagedData, IngestError>>,
}

fn spawn_writer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    path: PathBuf,
    quarter: Option<Quarter>,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<QuarterWriter<'scope>, IngestError> {
    let file = File::create(&path).map_err(IngestError::io(&path))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(IngestError::parquet(&path))?;
    let (tx, rx) = mpsc::sync_channel::<RecordBatch>(4);
    let handle = scope.spawn(move || {
        let mut rows = 0u64;
        for batch in rx {
            writer.write(&batch).map_err(IngestError::parquet(&path))?;
            rows += batch.num_rows() as u64;
        }
        let file = writer.into_inner().map_err(IngestError::parquet(&path))?;
        file.sync_all().map_err(IngestError::io(&path))?;
        Ok(StagedData {
            quarter,
            path,
            rows,
        })
    });
    Ok(QuarterWriter { tx, handle })
}

/// Takes chunk results in file order, removes duplicate keys and writes the rest.
fn collect(
    path: &Path,
    rules: &RowRules,
    staging: &Path,
    progress: &ProgressBar,
    results: mpsc::Receiver<(usize, usize, CheckedChunk)>,
) -> Result<StagedFile, IngestError> {
    // Ids and free text are nearly unique: dictionary encoding them only costs time.
    let plain_columns = rules
        .table
        .columns
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Id | ColumnType::Text))
        .map(|c| ColumnPath::from(c.name.as_str()));
    // Their page-level statistics would never prune anything either; dates keep theirs.
    let props = plain_columns
        .fold(WriterProperties::builder(), |b, c| {
            b.set_column_dictionary_enabled(c.clone(), false)
                .set_column_statistics_enabled(c, EnabledStatistics::Chunk)
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

    std::thread::scope(|scope| {
        let mut writers: BTreeMap<Option<Quarter>, QuarterWriter> = BTreeMap::new();
        let mut pending: BTreeMap<usize, (usize, CheckedChunk)> = BTreeMap::new();
        // Rows that lost their key to a smaller line, with that line.
        let mut demoted: HashMap<u64, u64> = HashMap::new();
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
            while let Some((bytes, checked)) = pending.remove(&next) {
                let CheckedChunk {
                    result,
                    status,
                    demoted: newly_demoted,
                } = checked;
                demoted.extend(newly_demoted);
                next += 1;
                progress.inc(bytes as u64);
                if let Some(problem) = result.problem {
                    return Err(IngestError::from_problem(path, problem));
                }
                staged.rows_read += result.rows_read;
                staged.rows_rejected += result.rows_rejected;
                staged.rejects.extend(result.rejects);
                for (bucket, status) in result.buckets.into_iter().zip(status) {
                    let mut keep = Vec::with_capacity(bucket.keys.len());
                    let ids = bucket.batch.column(pk).as_string::<i32>();
                    for (row, ((_, line), st)) in bucket.keys.iter().zip(status).enumerate() {
                        let first = match st {
                            KeyStatus::First if demoted.is_empty() => None,
                            KeyStatus::First => demoted.remove(line),
                            KeyStatus::Repeats(first) => Some(first),
                        };
                        let Some(first) = first else {
                            keep.push(true);
                            continue;
                        };
                        let id = ids.value(row);
                        let reason = if first == 0 {
                            format!(
                                "{} '{id}' is already in the warehouse or an earlier file of this load",
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
                    let rows = batch.num_rows() as u64;
                    let w = match writers.entry(bucket.quarter) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let name = match bucket.quarter {
                                Some(q) => format!("{q}.parquet"),
                                None => "all.parquet".to_string(),
                            };
                            e.insert(spawn_writer(
                                scope,
                                staging.join(name),
                                bucket.quarter,
                                rules.schema.clone(),
                                props.clone(),
                            )?)
                        }
                    };
                    if w.tx.send(batch).is_err() {
                        // The writer stopped on an error: report it.
                        let w = writers.remove(&bucket.quarter).expect("present");
                        return Err(
                            match w.handle.join().expect("a writer thread does not panic") {
                                Err(e) => e,
                                Ok(d) => IngestError::Io {
                                    path: d.path,
                                    source: std::io::Error::other("the writer stopped early"),
                                },
                            },
                        );
                    }
                    staged.rows_loaded += rows;
                }
            }
        }
        for (_, w) in writers {
            drop(w.tx);
            staged
                .data
                .push(w.handle.join().expect("a writer thread does not panic")?);
        }
        staged.rejects.sort();
        Ok(staged)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_line_keeps_a_key_whatever_the_order_of_claims() {
        let seen = SeenKeys::default();
        // A later chunk is checked first...
        assert_eq!(seen.claim(7, 500), (KeyStatus::First, None));
        // ...then an earlier one takes the key over and demotes line 500.
        assert_eq!(seen.claim(7, 10), (KeyStatus::First, Some((500, 10))));
        assert_eq!(seen.claim(7, 50), (KeyStatus::Repeats(10), None));
        assert_eq!(seen.claim(8, 50), (KeyStatus::First, None));
        // Keys of a staged file count as earlier for the next file.
        seen.settle();
        assert_eq!(seen.claim(7, 2), (KeyStatus::Repeats(0), None));
        seen.insert_stored(9);
        assert_eq!(seen.claim(9, 3), (KeyStatus::Repeats(0), None));
    }
}
