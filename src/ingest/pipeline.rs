//! The parallel row pipeline of one file: a reader cuts the body into chunks of whole lines,
//! workers validate chunks in parallel, and the collector takes their results in file order,
//! enforces unique keys across the file, earlier files and the warehouse, and writes the valid
//! rows as zstd Parquet, one file per quarter, into the staging folder.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use indicatif::ProgressBar;

use super::IngestError;
use super::rows::{ChunkResult, Reject, RowRules, validate_chunk};
use crate::quarter::Quarter;

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
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// Primary-key hashes already taken, with the line that took each (0: already stored).
pub type SeenKeys = HashMap<u128, u64, BuildHasherDefault<PassThroughHasher>>;

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
            (Ok(staged), Ok(())) => Ok(staged),
        }
    })
}

/// Reads the body in chunks that end at a line break and sends them on.
fn read_chunks(
    path: &Path,
    body_offset: u64,
    tx: mpsc::SyncSender<Chunk>,
    stop: &AtomicBool,
) -> Result<(), IngestError> {
    let mut file = File::open(path).map_err(IngestError::io(path))?;
    file.seek(SeekFrom::Start(body_offset))
        .map_err(IngestError::io(path))?;
    let mut carry: Vec<u8> = Vec::new();
    let mut line = 2u64;
    let mut index = 0usize;
    let mut eof = false;
    while !eof {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
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
            return Ok(());
        }
    }
    Ok(())
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
    let props = WriterProperties::builder()
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
                    match seen.get(hash) {
                        Some(&first) => {
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
                        None => {
                            seen.insert(*hash, *line);
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
    for (quarter, w) in writers {
        let file = w
            .writer
            .into_inner()
            .map_err(IngestError::parquet(&w.path))?;
        file.sync_all().map_err(IngestError::io(&w.path))?;
        staged.data.push(StagedData {
            quarter,
            path: w.path,
            rows: w.rows,
        });
    }
    staged.rejects.sort();
    Ok(staged)
}
