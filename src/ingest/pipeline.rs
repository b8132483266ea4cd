//! The parallel row pipeline of one file: a reader cuts the body into chunks of whole lines,
//! workers validate chunks in parallel, and the collector takes their results in file order,
//! enforces unique keys across the file, earlier files and the warehouse (see [`super::keys`]),
//! and writes the valid rows as zstd Parquet, one file per quarter, into the staging folder.
//! A row that re-sends a stored key is settled by [`super::revision`]: skipped when unchanged,
//! written when it corrects the stored row, or rejected.

use std::collections::BTreeMap;
use std::fs::File;
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
use super::keys::{Earlier, SeenKeys};
use super::mapping::BoundFeed;
use super::revision::{Resent, TableRevision};
use super::rows::{Bucket, ChunkResult, Reject, RowRules, validate_chunk};
use crate::dictionary::{ColumnType, Table};
use crate::quarter::Quarter;
use crate::warehouse::hex;

/// Bytes per chunk handed to a worker.
const CHUNK_BYTES: usize = 4 << 20;
/// Rows per Parquet row group: small enough to prune within a quarter, large enough to
/// compress well.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// One staged Parquet file.
#[derive(Debug)]
pub struct StagedData {
    pub quarter: Option<Quarter>,
    pub path: PathBuf,
    pub rows: u64,
    /// Size and SHA-256 of the file as written, for the manifest's content hash.
    pub bytes: u64,
    pub sha256: String,
}

/// A file that hashes and counts what is written to it.
struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl std::io::Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A file whose valid rows are staged and not yet committed.
#[derive(Debug)]
pub struct StagedFile {
    pub data: Vec<StagedData>,
    pub rows_read: u64,
    pub rows_loaded: u64,
    pub rows_rejected: u64,
    /// Rows rejected by a row rule, whose keys are not known (the rest of the rejects repeat
    /// a key).
    pub rows_invalid: u64,
    /// Rows identical to the stored row under their key: skipped.
    pub rows_unchanged: u64,
    /// Rows that correct the stored row under their key; among `rows_loaded`.
    pub rows_corrected: u64,
    /// Rejected fields, by line.
    pub rejects: Vec<Reject>,
    /// For a table that others reference (programs): each loaded row's key and start date
    /// (epoch days; `i32::MIN` for a table without a start column).
    pub starts: Vec<(String, i32)>,
    /// SHA-256 of the whole file, computed while reading it.
    pub sha256: String,
}

struct Chunk {
    index: usize,
    first_line: u64,
    bytes: Vec<u8>,
    last_unterminated: bool,
}

/// The key checks a file's rows pass: the keys seen so far (stored, and earlier in this load)
/// and the revision that settles a key re-sent from the stored rows.
pub struct KeyChecks<'k, 'r> {
    pub seen: &'k mut SeenKeys,
    pub revision: &'k mut TableRevision<'r>,
}

/// Validates and stages the body of `path`. With `mapping`, each source row is mapped into
/// the table's values, which are validated in place as a dictionary line's fields are (see
/// [`super::mapping`]).
pub fn stage_file(
    path: &Path,
    body_offset: u64,
    rules: &RowRules,
    staging: &Path,
    keys: KeyChecks<'_, '_>,
    progress: &ProgressBar,
    mapping: Option<&BoundFeed>,
) -> Result<StagedFile, IngestError> {
    std::fs::create_dir_all(staging).map_err(IngestError::io(staging))?;
    // Size the key filter once from the size (a row is about 64 bytes or more), so it is
    // rarely rebuilt while it grows.
    let body = std::fs::metadata(path)
        .map_err(IngestError::io(path))?
        .len()
        .saturating_sub(body_offset);
    keys.seen.reserve((body / 64) as usize);
    let stop = AtomicBool::new(false);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers + 1);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let (result_tx, result_rx) = mpsc::sync_channel::<(usize, usize, ChunkResult)>(workers + 1);
        // Validated chunks' buffers go back to the reader: a fresh 4 MiB buffer per chunk cost
        // a page fault per 4 KiB page, about a twentieth of the ingest's time.
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();

        let stop_ref = &stop;
        let reader =
            scope.spawn(move || read_chunks(path, body_offset, chunk_tx, &spare_rx, stop_ref));
        for _ in 0..workers {
            let rx = Arc::clone(&chunk_rx);
            let tx = result_tx.clone();
            let spare_tx = spare_tx.clone();
            scope.spawn(move || {
                let mut mapped = Vec::new();
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(chunk)) = next else { break };
                    let result = match mapping {
                        None => validate_chunk(
                            rules,
                            &chunk.bytes,
                            chunk.first_line,
                            chunk.last_unterminated,
                        ),
                        Some(m) => m.validate_chunk(
                            rules,
                            &chunk.bytes,
                            chunk.first_line,
                            chunk.last_unterminated,
                            &mut mapped,
                        ),
                    };
                    let bytes = chunk.bytes.len();
                    // The reader may have stopped: then the buffer is simply dropped.
                    let _ = spare_tx.send(chunk.bytes);
                    if tx.send((chunk.index, bytes, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(spare_tx);
        drop(result_tx);
        drop(chunk_rx);

        let fold_repeats = mapping.is_some_and(|m| m.feed.first_per_key);
        let outcome = collect(
            path,
            rules,
            staging,
            keys,
            progress,
            result_rx,
            fold_repeats,
        );
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

/// Reads the body in chunks that end at a line break and sends them on, reusing the buffers
/// that come back on `spare`. Returns the SHA-256 of the whole file, read on the way (empty if
/// stopped early).
fn read_chunks(
    path: &Path,
    body_offset: u64,
    tx: mpsc::SyncSender<Chunk>,
    spare: &mpsc::Receiver<Vec<u8>>,
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
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve(carry.len() + CHUNK_BYTES);
        buf.extend_from_slice(&carry);
        let start = buf.len();
        // `read_to_end` fills the spare capacity without zeroing it first.
        let n = (&mut file)
            .take(CHUNK_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(IngestError::io(path))?;
        hasher.update(&buf[start..]);
        eof = n < CHUNK_BYTES;
        let cut = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(p) => p + 1,
                // No line break in a whole chunk: hand it on, the worker reports the overlong line.
                None => buf.len(),
            }
        };
        carry.clear();
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
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
    let writer = create_parquet(&path, schema, props)?;
    let (tx, rx) = mpsc::sync_channel::<RecordBatch>(4);
    let handle = scope.spawn(move || write_batches(writer, path, quarter, rx));
    Ok(QuarterWriter { tx, handle })
}

/// Writes `batches` to a new Parquet file at `path`, synchronously, and returns it as staged:
/// how the rows a revision keeps of a stored file are written.
pub(super) fn write_parquet(
    path: PathBuf,
    quarter: Option<Quarter>,
    schema: SchemaRef,
    props: WriterProperties,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<StagedData, IngestError> {
    let writer = create_parquet(&path, schema, props)?;
    write_batches(writer, path, quarter, batches)
}

/// A new Parquet file at `path` whose bytes are counted and hashed as they are written.
fn create_parquet(
    path: &Path,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<ArrowWriter<HashingFile>, IngestError> {
    let file = File::create(path).map_err(IngestError::io(path))?;
    let file = HashingFile {
        file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    ArrowWriter::try_new(file, schema, Some(props)).map_err(IngestError::parquet(path))
}

/// Writes `batches` through `writer`, then flushes the file to disk: a staged data file with
/// its rows, size and SHA-256.
fn write_batches(
    mut writer: ArrowWriter<HashingFile>,
    path: PathBuf,
    quarter: Option<Quarter>,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<StagedData, IngestError> {
    let mut rows = 0u64;
    for batch in batches {
        writer.write(&batch).map_err(IngestError::parquet(&path))?;
        rows += batch.num_rows() as u64;
    }
    let mut file = writer.into_inner().map_err(IngestError::parquet(&path))?;
    std::io::Write::flush(&mut file).map_err(IngestError::io(&path))?;
    file.file.sync_all().map_err(IngestError::io(&path))?;
    Ok(StagedData {
        quarter,
        path,
        rows,
        bytes: file.bytes,
        sha256: hex(&file.hasher.finalize()),
    })
}

/// Rows whose key the filter has maybe seen, held back until the key list settles them.
struct Held {
    quarter: Option<Quarter>,
    batch: RecordBatch,
    keys: Vec<(u128, u64)>,
}

/// Suspects are settled once they number an eighth of the keys admitted, so that the scans
/// of the key list add up to a few passes over it, but at least `MIN_HELD` (a scan must be
/// worth it) and at most `MAX_HELD` (held rows take memory: about 100 MiB at most).
const MIN_HELD: usize = 1 << 16;
const MAX_HELD: usize = 1 << 20;

/// The collector's output side: one writer thread per quarter, the file's totals, and the
/// suspects held back.
struct Output<'scope, 'env, 'a> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    rules: &'a RowRules<'a>,
    staging: &'a Path,
    props: WriterProperties,
    pk: usize,
    writers: BTreeMap<Option<Quarter>, QuarterWriter<'scope>>,
    staged: StagedFile,
    held: Vec<Held>,
    held_rows: usize,
    /// A mapping's `first_per_key`: a later row of a key this file already holds is dropped
    /// (and not counted as read), not rejected.
    fold_repeats: bool,
}

impl<'scope, 'env, 'a> Output<'scope, 'env, 'a> {
    /// Admits a chunk's keys in line order, across its buckets: admitted bucket by bucket, a
    /// later line in an earlier quarter would be admitted first and pass as the first of its
    /// key. Writes the rows whose keys are new and holds the suspects back.
    fn take_chunk(
        &mut self,
        buckets: Vec<Bucket>,
        keys: &[(u128, u64)],
        order: &[u32],
        seen: &mut SeenKeys,
        revision: &mut TableRevision<'_>,
    ) -> Result<(), IngestError> {
        revision.note_rows(keys, &buckets);
        let suspect = seen.admit_all(keys);
        if !suspect.contains(&true) {
            for bucket in buckets {
                self.write(bucket.quarter, bucket.batch)?;
            }
            return Ok(());
        }
        // Each bucket's mask and suspects' keys, in its own (line) order.
        let mut masks: Vec<Vec<bool>> = buckets
            .iter()
            .map(|b| Vec::with_capacity(b.batch.num_rows()))
            .collect();
        let mut held_keys: Vec<Vec<(u128, u64)>> = vec![Vec::new(); buckets.len()];
        for ((s, b), k) in suspect.iter().zip(order).zip(keys) {
            masks[*b as usize].push(*s);
            if *s {
                held_keys[*b as usize].push(*k);
            }
        }
        for ((bucket, suspect), keys) in buckets.into_iter().zip(masks).zip(held_keys) {
            self.take(bucket, suspect, keys)?;
        }
        Ok(())
    }

    /// Writes a bucket's rows whose keys are new and holds its suspects back, with their keys.
    fn take(
        &mut self,
        bucket: Bucket,
        suspect: Vec<bool>,
        keys: Vec<(u128, u64)>,
    ) -> Result<(), IngestError> {
        if keys.is_empty() {
            return self.write(bucket.quarter, bucket.batch);
        }
        let new: BooleanArray = suspect.iter().map(|s| Some(!s)).collect();
        let new = filter_record_batch(&bucket.batch, &new).expect("a mask as long as the batch");
        self.write(bucket.quarter, new)?;
        let held = filter_record_batch(&bucket.batch, &BooleanArray::from(suspect))
            .expect("a mask as long as the batch");
        self.held_rows += keys.len();
        self.held.push(Held {
            quarter: bucket.quarter,
            batch: held,
            keys,
        });
        Ok(())
    }

    /// Whether the held suspects should be settled now.
    fn holds_enough(&self, seen: &SeenKeys) -> bool {
        self.held_rows >= (seen.len() / 8).clamp(MIN_HELD, MAX_HELD)
    }

    /// Settles every held suspect against the key list: repeats are rejected with the line
    /// they repeat, a row that re-sends a stored one is skipped, written or rejected as the
    /// revision decides, and false alarms are written. Every line up to the suspects' has been
    /// admitted, since the collector takes chunks in file order.
    fn settle_suspects(
        &mut self,
        seen: &SeenKeys,
        revision: &mut TableRevision<'_>,
    ) -> Result<(), IngestError> {
        let held = std::mem::take(&mut self.held);
        self.held_rows = 0;
        let suspects: Vec<(u128, u64)> = held.iter().flat_map(|h| h.keys.iter().copied()).collect();
        let mut firsts = seen.first_lines(&suspects).into_iter();
        let key_name = &self.rules.table.primary_key;
        for h in held {
            let earlier: Vec<Option<Earlier>> = h
                .keys
                .iter()
                .map(|_| firsts.next().expect("one answer per suspect"))
                .collect();
            // Each row's content, to compare with the stored row, when one re-sends a key.
            let contents = if earlier.contains(&Some(Earlier::Stored)) {
                revision.contents(&h.batch)?
            } else {
                Vec::new()
            };
            let mut keep = Vec::with_capacity(h.keys.len());
            for (i, ((key, line), first)) in h.keys.iter().zip(earlier).enumerate() {
                // The line names the row; the id itself stays out of the quarantine.
                let reason = match first {
                    None => {
                        keep.push(true);
                        continue;
                    }
                    Some(Earlier::Stored) => {
                        match revision.resent(
                            *key,
                            contents[i],
                            h.quarter,
                            self.rules.keep_starts,
                        )? {
                            Resent::Unchanged => {
                                self.staged.rows_unchanged += 1;
                                keep.push(false);
                                continue;
                            }
                            Resent::Corrected => {
                                self.staged.rows_corrected += 1;
                                keep.push(true);
                                continue;
                            }
                            Resent::Refused(reason) => reason,
                        }
                    }
                    Some(Earlier::PriorFile) => {
                        format!("{key_name} is already in an earlier file of this load")
                    }
                    Some(Earlier::Line(_)) if self.fold_repeats => {
                        // A mapping's "first row per key": the repeat is folded, not rejected.
                        self.staged.rows_read -= 1;
                        keep.push(false);
                        continue;
                    }
                    Some(Earlier::Line(first)) => format!("{key_name} repeats line {first}"),
                };
                self.staged.rejects.push(Reject {
                    line: *line,
                    column: key_name.clone(),
                    reason,
                });
                self.staged.rows_rejected += 1;
                keep.push(false);
            }
            let kept = filter_record_batch(&h.batch, &BooleanArray::from(keep))
                .expect("a mask as long as the batch");
            self.write(h.quarter, kept)?;
        }
        Ok(())
    }

    /// Sends rows to their quarter's writer, starting it on the quarter's first rows.
    fn write(&mut self, quarter: Option<Quarter>, batch: RecordBatch) -> Result<(), IngestError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.rules.keep_starts {
            let ids = batch.column(self.pk).as_string::<i32>();
            let starts = self.rules.start_column.map(|sc| {
                batch
                    .column(sc)
                    .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
            });
            for i in 0..batch.num_rows() {
                let start = starts.map_or(i32::MIN, |s| s.value(i));
                self.staged.starts.push((ids.value(i).to_string(), start));
            }
        }
        let rows = batch.num_rows() as u64;
        let w = match self.writers.entry(quarter) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let name = match quarter {
                    Some(q) => format!("{q}.parquet"),
                    None => "all.parquet".to_string(),
                };
                e.insert(spawn_writer(
                    self.scope,
                    self.staging.join(name),
                    quarter,
                    self.rules.schema.clone(),
                    self.props.clone(),
                )?)
            }
        };
        if w.tx.send(batch).is_err() {
            // The writer stopped on an error: report it.
            let w = self.writers.remove(&quarter).expect("present");
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
        self.staged.rows_loaded += rows;
        Ok(())
    }

    /// Waits for every writer to finish its file.
    fn finish(mut self) -> Result<StagedFile, IngestError> {
        for (_, w) in std::mem::take(&mut self.writers) {
            drop(w.tx);
            self.staged
                .data
                .push(w.handle.join().expect("a writer thread does not panic")?);
        }
        self.staged.rejects.sort();
        Ok(self.staged)
    }
}

/// How a table's Parquet files are written, by a load and by a revision alike.
pub(super) fn writer_properties(table: &Table) -> WriterProperties {
    // Ids and free text are nearly unique: dictionary encoding them only costs time. Neither
    // they nor enums (every value shows up in every row group) could ever prune a row group
    // by min and max, and computing those compares every value; dates and booleans keep theirs.
    table
        .columns
        .iter()
        .fold(WriterProperties::builder(), |b, c| {
            let path = ColumnPath::from(c.name.as_str());
            match c.ty {
                ColumnType::Id | ColumnType::Text => b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path, EnabledStatistics::None),
                ColumnType::Enum => b.set_column_statistics_enabled(path, EnabledStatistics::None),
                ColumnType::Date | ColumnType::Bool => b,
            }
        })
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("outreach-warehouse {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Takes chunk results in file order, removes duplicate keys and writes the rest.
fn collect(
    path: &Path,
    rules: &RowRules,
    staging: &Path,
    keys: KeyChecks<'_, '_>,
    progress: &ProgressBar,
    results: mpsc::Receiver<(usize, usize, ChunkResult)>,
    fold_repeats: bool,
) -> Result<StagedFile, IngestError> {
    let KeyChecks { seen, revision } = keys;
    let props = writer_properties(rules.table);
    let pk = rules
        .table
        .column_index(&rules.table.primary_key)
        .expect("the dictionary checks the primary key");

    std::thread::scope(|scope| {
        let mut out = Output {
            scope,
            rules,
            staging,
            props,
            pk,
            writers: BTreeMap::new(),
            staged: StagedFile {
                data: Vec::new(),
                rows_read: 0,
                rows_loaded: 0,
                rows_rejected: 0,
                rows_invalid: 0,
                rows_unchanged: 0,
                rows_corrected: 0,
                rejects: Vec::new(),
                starts: Vec::new(),
                sha256: String::new(),
            },
            held: Vec::new(),
            held_rows: 0,
            fold_repeats,
        };
        let mut pending: BTreeMap<usize, (usize, ChunkResult)> = BTreeMap::new();
        let mut next = 0usize;
        for (index, bytes, result) in results {
            pending.insert(index, (bytes, result));
            while let Some((bytes, result)) = pending.remove(&next) {
                next += 1;
                progress.inc(bytes as u64);
                if let Some(problem) = result.problem {
                    return Err(IngestError::from_problem(path, problem));
                }
                out.staged.rows_read += result.rows_read;
                out.staged.rows_rejected += result.rows_rejected;
                out.staged.rows_invalid += result.rows_rejected;
                out.staged.rejects.extend(result.rejects);
                out.take_chunk(result.buckets, &result.keys, &result.order, seen, revision)?;
                if out.holds_enough(seen) {
                    out.settle_suspects(seen, revision)?;
                }
            }
        }
        out.settle_suspects(seen, revision)?;
        out.finish()
    })
}
