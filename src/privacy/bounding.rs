//! Contribution bounding, enforced by the engine before any noise (privacy model §2).
//!
//! The person-level rows of every query of a release arrive as DataFusion's Arrow streams,
//! one per partition, read on parallel tasks. The bounder does not rely on DataFusion's
//! partitioning (its physical optimizer may remove a repartition it finds unneeded): every
//! row goes to a shard chosen by a fixed hash of its `person_key`, so all of a person's rows
//! meet in one shard. Each row is folded into its person's record as it arrives, under its
//! shard's lock (a shard gathers rows and folds them together, which keeps its person table in the CPU's
//! cache: [`fold_at`]); no other row is kept. A person's record holds at most `k` cells, so
//! the bounder's memory grows with the persons and `k`, never with the rows (the rows waiting
//! to be folded are at most one per person held, plus 512 per shard): a person-local self-join
//! that multiplies one person's rows (400 attempts joined with themselves twice is 6.4e7
//! rows) costs that person no more than one record ([`Bounder::retained`]). The fold gives
//! exactly what collapsing all of a person's rows at the end gave, in any order of rows:
//!
//! 1. A row whose person key is NULL, or whose cell key is NULL or outside the cell's public
//!    domain, is dropped and counted in the steward-only [`Diagnostics`].
//! 2. Rows collapse to one per (person, cell): flags with OR, numbers with MAX; each value
//!    is clamped to its statistic's bounds.
//! 3. A person keeps at most `k` cells in the whole release: the `k` whose keyed hash of
//!    (`person_key`, cell) under the warehouse secret is smallest. The choice is
//!    deterministic, independent of other persons and cannot be steered without the secret.
//!    It is made as rows arrive: a cell that is not among a person's `k` smallest so far can
//!    never be chosen later, and a cell that is among the final `k` is never displaced once
//!    held (only a cell with `k` smaller ones is), so every row of a kept cell is folded into
//!    it whatever the order. Only `k` cells per person are held.
//! 4. Exclusive groups are made one-hot: a person on several sides of a group in a cell is
//!    put on the first side listed in the spec.
//!
//! Steps 1 to 3 run on every row as it arrives; step 4 and the sums over persons run at
//! [`Bounder::finish`], over the records.
//!
//! The result is the exact, bounded statistic vector: `m` values per cell, cell-major.
//!
//! A private cell key (no public domain) gets its values from the data: each new value gets
//! the next id as rows arrive, the cell index puts that id above the public keys' mixed
//! radix, and the result lists only the cells that some kept row touched, sparsely. Those
//! values are private until partition selection has thresholded them.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::Mutex;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher24;

use super::spec::{CellKey, Statistic, StatisticKind};

/// The 128-bit key of the keyed hash that chooses a person's `k` cells.
#[derive(Clone, Copy)]
pub struct CellChoiceKey(pub [u8; 16]);

impl std::fmt::Debug for CellChoiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellChoiceKey(..)")
    }
}

/// Steward-only counts from bounding. They are exact figures about private data: they never
/// leave the steward's view (not in a public release, the API or a report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Person-level rows read from the queries.
    pub rows: u64,
    /// Rows dropped for a NULL `person_key`.
    pub null_person_key: u64,
    /// Rows dropped for a cell key that is NULL or outside its domain, per cell column. The
    /// release path filters public domains in the query plan, so there these count only
    /// what reaches the bounder (private keys' NULLs).
    pub outside_domain: BTreeMap<String, u64>,
    /// Persons with at least one row in the domain.
    pub persons: u64,
    /// (person, cell) pairs kept after the `k` bound.
    pub person_cells: u64,
    /// Persons who touched more than `k` cells and lost some.
    pub persons_over_k: u64,
    /// Persons put on one side of an exclusive group although their rows said several.
    pub exclusive_conflicts: u64,
    /// Distinct values of a private cell key seen in the data.
    #[serde(default)]
    pub private_values: u64,
}

impl Diagnostics {
    fn merge(&mut self, other: Diagnostics) {
        self.rows += other.rows;
        self.null_person_key += other.null_person_key;
        for (k, v) in other.outside_domain {
            *self.outside_domain.entry(k).or_default() += v;
        }
        self.persons += other.persons;
        self.person_cells += other.person_cells;
        self.persons_over_k += other.persons_over_k;
        self.exclusive_conflicts += other.exclusive_conflicts;
        self.private_values += other.private_values;
    }
}

/// What the bounding needs to know about a release.
#[derive(Debug, Clone)]
pub struct BoundingRules {
    pub k: usize,
    pub cells: Vec<CellKey>,
    pub statistics: Vec<Statistic>,
    pub exclusive: Vec<Vec<usize>>,
    pub key: CellChoiceKey,
}

impl BoundingRules {
    /// Number of cells of the public keys: the product of their domains. A cell's index is
    /// `private value id × n_cells() + mixed-radix index of its public keys`.
    pub fn n_cells(&self) -> usize {
        super::spec::public_cells(&self.cells)
    }

    /// The index of the private cell key, if any.
    pub fn private_cell(&self) -> Option<usize> {
        super::spec::private_cell(&self.cells)
    }

    /// These rules with the private key's values filled in, in the order of their ids.
    pub fn with_private_values(&self, values: Vec<String>) -> BoundingRules {
        let mut rules = self.clone();
        if let Some(p) = rules.private_cell() {
            rules.cells[p].values = values;
        }
        rules
    }

    /// Calls `f` with the key values of cell `index`, in the order of `cells`. A private
    /// key's values must have been filled in ([`BoundingRules::with_private_values`]).
    fn visit_values<'a>(&'a self, index: u64, mut f: impl FnMut(&'a str)) {
        let public = self.n_cells() as u64;
        let id = (index / public) as usize;
        let mut rest = index % public;
        let mut stride = public;
        for c in &self.cells {
            if c.private {
                f(&c.values[id]);
                continue;
            }
            stride /= c.values.len() as u64;
            f(&c.values[(rest / stride) as usize]);
            rest %= stride;
        }
    }

    /// The cell keys of cell `index`, in the order of `cells`.
    pub fn cell_values(&self, index: usize) -> Vec<&str> {
        let mut out = Vec::with_capacity(self.cells.len());
        self.visit_values(index as u64, |v| out.push(v));
        out
    }

    /// The keyed hash of (person, cell): SipHash-2-4 under the warehouse secret, over the
    /// length-prefixed person key and the cell's key values (not its index, so the choice
    /// does not depend on the order of domains or of discovery).
    pub fn choice_hash(&self, person: &[u8], cell: usize) -> u64 {
        let mut h = self.choice_hasher(person);
        self.visit_values(cell as u64, |v| write_value(&mut h, v));
        h.finish()
    }

    /// [`BoundingRules::choice_hash`] of a cell given by its key values, in the order of
    /// `cells`: the same hash, for a cell named by the text of a row (a private key's value
    /// needs no id for it).
    pub fn choice_hash_of<'a>(
        &self,
        person: &[u8],
        values: impl IntoIterator<Item = &'a str>,
    ) -> u64 {
        let mut h = self.choice_hasher(person);
        for v in values {
            write_value(&mut h, v);
        }
        h.finish()
    }

    /// SipHash-2-4 under the secret, having read the length-prefixed person key.
    fn choice_hasher(&self, person: &[u8]) -> SipHasher24 {
        let mut h = SipHasher24::new_with_key(&self.key.0);
        write_value(&mut h, person);
        h
    }
}

/// Writes one length-prefixed value into the choice hash.
fn write_value(h: &mut SipHasher24, v: impl AsRef<[u8]>) {
    let v = v.as_ref();
    h.write(&(v.len() as u64).to_le_bytes());
    h.write(v);
}

/// The exact bounded statistic vector of a release and the steward's diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    /// Public keys only: `n_cells × m` values, cell-major: `values[cell * m + j]`. With a
    /// private key: `m` values for each cell of `discovered.cells`, in that order.
    pub values: Vec<i64>,
    /// With a private key: what the data showed. Private until thresholded.
    pub discovered: Option<Discovered>,
    pub diagnostics: Diagnostics,
}

/// The cells of a release with a private key that some kept row touched.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    /// The private key's values, by id.
    pub values: Vec<String>,
    /// The touched cells' indices, ascending.
    pub cells: Vec<u64>,
}

/// No value seen yet for a sum (MAX identity); becomes 0, clamped, at the end.
const NONE: i64 = i64::MIN;

/// Bytes of a person key kept inside its record; longer keys live in the arena.
const INLINE_KEY_WORDS: usize = 3;
/// Words before the entries: hash, meta, inline key.
const HEAD: usize = 2 + INLINE_KEY_WORDS;
/// Bits of a record's meta word that count its entries.
const USED_MASK: u64 = 0x7fff;
/// The meta bit set when a person lost cells to the `k` bound.
const OVER_K: u64 = 0x8000;
/// The largest `k` the bounder's records can hold (the spec allows far less,
/// [`super::spec::MAX_K`]).
pub const MAX_BOUNDED_K: usize = USED_MASK as usize;

/// The persons of one shard, each folded into one record as their rows arrive. Each person
/// is one fixed-size record of `u64` words, so that finding and updating a person touches
/// one or two cache lines:
///
/// `[hash, meta, key × 3, cell × k, (choice hash × k), values × k·m]`
///
/// The choice hashes are kept only where working them out again is not cheap (a private
/// cell key, whose values are discovered as rows arrive, or a large `k`: [`Shard::stored`]).
/// Otherwise a person's choice hashes are worked out only when a cell arrives at a record that
/// already holds `k`: most persons touch fewer than `k` cells and never need one, and the
/// record is `k` words shorter.
///
/// where meta holds the number of entries used (bits 0–14, so `k` up to
/// [`MAX_BOUNDED_K`]), whether cells were dropped by the `k` bound (bit 15), the key's length
/// (bits 16–31) and, for a key longer than 24 bytes, its offset in the arena (bits 32–63).
/// The count has 15 bits so that no `k` the spec accepts can wrap into the flag.
struct Shard {
    index: hashbrown::HashTable<u32>,
    records: Vec<u64>,
    stride: usize,
    k: usize,
    m: usize,
    /// Whether the records keep each held cell's choice hash ([`Shard::stored`]).
    stored: bool,
    /// Offset of a record's values: after the cells and the stored choice hashes.
    values_at: usize,
    arena: Vec<u8>,
    /// Rows not yet folded into the records, at most [`fold_at`] (public cell keys only).
    pending: RowBuffer,
    /// [`fold_at`] of the persons held since the last fold: only a fold adds persons to a
    /// shard that gathers, so the limit is worked out once a fold, not once a row.
    fold_after: usize,
}

/// Rows a shard gathers at least before it folds them into its records.
const FOLD_ROWS: usize = 512;

/// Rows a shard gathers per person it already holds before it folds them.
const FOLD_ROWS_PER_PERSON: usize = 1;

/// How many rows a shard holding `persons` gathers before folding them: [`FOLD_ROWS`], or
/// [`FOLD_ROWS_PER_PERSON`] for each person it holds if that is more.
///
/// A 1M-person release keeps about 100 MiB of person records, far more than the CPU's cache,
/// so a row folded on its own fetches its person's record from memory. A shard that folds
/// many rows at once brings its few thousand records into the cache once for all of them:
/// folding every 512 rows made a 4.3M-row release (4.3 rows a person) about a fifth slower
/// than gathering one row per person held. Eight rows per person were no faster, and held
/// nearly every row until the end: 400 MiB at the peak against 262 MiB
/// (`cargo bench --bench release_vs_exact`). The buffer follows the persons, never one
/// person's rows: at most one row per person held plus 512 rows a shard, each row its key,
/// its cell and its statistics.
fn fold_at(persons: usize) -> usize {
    FOLD_ROWS.max(FOLD_ROWS_PER_PERSON.saturating_mul(persons))
}

/// Rows gathered by a shard, in arrival order, until it folds them ([`Shard::fold`]).
#[derive(Default)]
struct RowBuffer {
    hashes: Vec<u64>,
    cells: Vec<u64>,
    /// `m` values per row.
    values: Vec<i64>,
    key_ends: Vec<usize>,
    keys: Vec<u8>,
}

impl RowBuffer {
    fn clear(&mut self) {
        self.hashes.clear();
        self.cells.clear();
        self.values.clear();
        self.key_ends.clear();
        self.keys.clear();
    }
}

/// Words of one person's record for `k` cells and `m` statistics, at most: `5 + 2k + k·m`
/// (with the choice hashes stored). The spec refuses a release whose record passes
/// [`super::spec::MAX_RECORD_BYTES`], since the bounder allocates one per person after the
/// debit.
pub const fn record_words(k: usize, m: usize) -> usize {
    HEAD + 2 * k + k * m
}

/// The largest `k` for which a record does not keep its choice hashes: a cell arriving at a
/// full record then works out at most this many hashes again.
const RECOMPUTE_UP_TO_K: usize = 8;

impl Shard {
    /// A shard of records for `k` cells and `m` statistics; `stored` keeps each held cell's
    /// choice hash in the record (needed for a private cell key, whose held cells cannot be
    /// hashed again from their index alone).
    fn new(k: usize, m: usize, stored: bool) -> Shard {
        let values_at = HEAD + k + if stored { k } else { 0 };
        Shard {
            index: hashbrown::HashTable::new(),
            records: Vec::new(),
            stride: values_at + k * m,
            k,
            m,
            stored,
            values_at,
            arena: Vec::new(),
            pending: RowBuffer::default(),
            fold_after: fold_at(0),
        }
    }

    /// Gathers one row (see [`Shard::add`]) and folds the gathered rows once there are
    /// [`fold_at`] of them. Only for public cell keys: the choice hash of a gathered row is made
    /// from its cell's index with `rules`.
    fn gather(&mut self, rules: &BoundingRules, hash: u64, person: &[u8], cell: u64, row: &[i64]) {
        let b = &mut self.pending;
        b.hashes.push(hash);
        b.cells.push(cell);
        b.values.extend_from_slice(row);
        b.keys.extend_from_slice(person);
        b.key_ends.push(b.keys.len());
        if b.hashes.len() >= self.fold_after {
            self.fold(rules);
        }
    }

    /// Folds the gathered rows into the records, in the order they came, and empties the
    /// buffer (keeping its capacity). The fold gives the same records in any order of rows.
    fn fold(&mut self, rules: &BoundingRules) {
        let mut buf = std::mem::take(&mut self.pending);
        let m = self.m;
        let mut start = 0;
        for (i, &end) in buf.key_ends.iter().enumerate() {
            let person = &buf.keys[start..end];
            let cell = buf.cells[i];
            self.add(
                buf.hashes[i],
                person,
                cell,
                &buf.values[i * m..(i + 1) * m],
                || rules.choice_hash(person, cell as usize),
                |held| rules.choice_hash(person, held as usize),
            );
            start = end;
        }
        buf.clear();
        self.pending = buf;
        self.fold_after = fold_at(self.persons());
    }

    fn persons(&self) -> usize {
        self.records.len() / self.stride
    }

    /// Persons, kept (person, cell) entries, and bytes allocated for them.
    fn retained(&self) -> Retained {
        Retained {
            persons: self.persons(),
            cells: (0..self.persons()).map(|slot| self.used(slot)).sum(),
            bytes: self.records.capacity() * 8
                + self.arena.capacity()
                + self.index.capacity() * std::mem::size_of::<u32>(),
        }
    }

    fn rec(&self, slot: usize) -> &[u64] {
        &self.records[slot * self.stride..(slot + 1) * self.stride]
    }

    fn used(&self, slot: usize) -> usize {
        (self.rec(slot)[1] & USED_MASK) as usize
    }

    fn over_k(&self, slot: usize) -> bool {
        self.rec(slot)[1] & OVER_K != 0
    }

    fn cell(&self, slot: usize, e: usize) -> u64 {
        self.rec(slot)[HEAD + e]
    }

    fn values(&self, slot: usize, e: usize, out: &mut [i64]) {
        let base = self.values_at + e * self.m;
        for (o, w) in out.iter_mut().zip(&self.rec(slot)[base..base + self.m]) {
            *o = *w as i64;
        }
    }

    fn key_of(rec: &[u64], arena: &[u8]) -> Vec<u8> {
        let len = ((rec[1] >> 16) & 0xffff) as usize;
        if len <= INLINE_KEY_WORDS * 8 {
            rec[2..HEAD]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(len)
                .collect()
        } else {
            let off = (rec[1] >> 32) as usize;
            arena[off..off + len].to_vec()
        }
    }

    fn key(&self, slot: usize) -> Vec<u8> {
        Self::key_of(self.rec(slot), &self.arena)
    }

    fn key_eq(rec: &[u64], arena: &[u8], person: &[u8]) -> bool {
        let len = ((rec[1] >> 16) & 0xffff) as usize;
        if len != person.len() {
            return false;
        }
        if len <= INLINE_KEY_WORDS * 8 {
            let mut words = [0u64; INLINE_KEY_WORDS];
            pack(person, &mut words);
            rec[2..HEAD] == words
        } else {
            let off = (rec[1] >> 32) as usize;
            &arena[off..off + len] == person
        }
    }

    fn slot(&mut self, hash: u64, person: &[u8]) -> usize {
        let (records, arena, stride) = (&self.records, &self.arena, self.stride);
        // A short key is packed once, not once per record it is compared with.
        let inline = person.len() <= INLINE_KEY_WORDS * 8;
        let mut words = [0u64; INLINE_KEY_WORDS];
        if inline {
            pack(person, &mut words);
        }
        let meta_len = (person.len() as u64) << 16;
        let found = self.index.find(hash, |&s| {
            let rec = &records[s as usize * stride..(s as usize + 1) * stride];
            rec[0] == hash
                && if inline {
                    rec[1] & 0xffff_0000 == meta_len && rec[2..HEAD] == words
                } else {
                    Self::key_eq(rec, arena, person)
                }
        });
        if let Some(&s) = found {
            return s as usize;
        }
        let s = self.persons();
        let records = &self.records;
        self.index
            .insert_unique(hash, s as u32, |&x| records[x as usize * stride]);
        let start = self.records.len();
        self.records.resize(start + stride, 0);
        let len = person.len().min(0xffff);
        let mut meta = (len as u64) << 16;
        if len <= INLINE_KEY_WORDS * 8 {
            pack(person, &mut self.records[start + 2..start + HEAD]);
        } else {
            meta |= (self.arena.len() as u64) << 32;
            self.arena.extend_from_slice(&person[..len]);
        }
        self.records[start] = hash;
        self.records[start + 1] = meta;
        s
    }

    /// Folds one row into its person's record: `hash` is the person's fixed hash, `cell` the
    /// row's cell index, `row` its clamped values (a NULL sum as [`NONE`]), `choice` the keyed
    /// hash of (person, cell), and `held` the keyed hash of (person, a cell the record holds).
    /// Neither is worked out unless needed: `choice` when the cell is not held and either the
    /// record keeps its hashes or it is full; `held` only when a record that does not keep its
    /// hashes is full.
    fn add(
        &mut self,
        hash: u64,
        person: &[u8],
        cell: u64,
        row: &[i64],
        choice: impl FnOnce() -> u64,
        held: impl Fn(u64) -> u64,
    ) {
        let (k, m, stored, values_at) = (self.k, self.m, self.stored, self.values_at);
        let slot = self.slot(hash, person);
        let stride = self.stride;
        let rec = &mut self.records[slot * stride..(slot + 1) * stride];
        let used = (rec[1] & USED_MASK) as usize;
        let at = match rec[HEAD..HEAD + used].iter().position(|&c| c == cell) {
            Some(at) => at,
            None => {
                let at = if used < k {
                    rec[1] += 1;
                    if stored {
                        rec[HEAD + k + used] = choice();
                    }
                    used
                } else {
                    // A cell that is not among the k smallest (hash, cell) so far can never
                    // be chosen; a smaller one replaces the largest kept.
                    rec[1] |= OVER_K;
                    let h = choice();
                    let (worst_hash, worst_cell, worst) = (0..k)
                        .map(|e| {
                            let c = rec[HEAD + e];
                            let eh = if stored { rec[HEAD + k + e] } else { held(c) };
                            (eh, c, e)
                        })
                        .max()
                        .expect("k >= 1");
                    if (h, cell) >= (worst_hash, worst_cell) {
                        return;
                    }
                    if stored {
                        rec[HEAD + k + worst] = h;
                    }
                    worst
                };
                rec[HEAD + at] = cell;
                let base = values_at + at * m;
                rec[base..base + m].fill(NONE as u64);
                at
            }
        };
        let base = values_at + at * m;
        for (w, r) in rec[base..base + m].iter_mut().zip(row) {
            *w = (*w as i64).max(*r) as u64;
        }
    }
}

/// Packs up to 24 key bytes into little-endian words (the rest zero).
fn pack(bytes: &[u8], words: &mut [u64]) {
    for (i, w) in words.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        let chunk = bytes.get(i * 8..).unwrap_or(&[]);
        let n = chunk.len().min(8);
        b[..n].copy_from_slice(&chunk[..n]);
        *w = u64::from_le_bytes(b);
    }
}

/// What a [`Bounder`] holds: its persons, their kept (person, cell) entries, and the bytes
/// allocated for their records, key arena and index. No row is held (each is folded as it
/// arrives), so `cells ≤ persons × k` and `bytes` grows with the persons, whatever the number
/// of rows pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub persons: usize,
    pub cells: usize,
    pub bytes: usize,
}

/// The engine's bounder. Batches may arrive from several threads at once and in any
/// partitioning: each row goes to the shard of its person (a fixed hash of `person_key`),
/// so all of a person's rows meet in one shard whatever DataFusion's partitioning, and is
/// folded there into its person's record at once (each shard has its own lock, so tasks
/// seldom wait for each other). [`Bounder::finish`] sums the records.
pub struct Bounder {
    rules: BoundingRules,
    /// Value → index, per public cell key (empty for the private key), for values longer
    /// than 15 bytes.
    lookups: Vec<HashMap<String, u32, ahash::RandomState>>,
    /// The same for the values of up to 15 bytes, keyed by [`short_key`]: a cell key such as
    /// a program id or a quarter is looked up by one integer, not by hashing its text.
    short_lookups: Vec<HashMap<u128, u32, ahash::RandomState>>,
    /// The private key's values as they arrive: value → id, and id → value.
    discovered: Mutex<(HashMap<String, u64, ahash::RandomState>, Vec<String>)>,
    shards: Vec<Mutex<Shard>>,
    diagnostics: Mutex<Diagnostics>,
}

/// Column order of the person-level batches the bounder reads: `person_key`, then the cell
/// keys as text, then the statistics as integers or booleans (NULL allowed).
impl Bounder {
    /// A bounder for `rules`. `rules.k` must be in 1..=[`MAX_BOUNDED_K`]; `spec::check`
    /// refuses larger `k` long before the debit.
    pub fn new(rules: &BoundingRules, shards: usize) -> Bounder {
        assert!(
            (1..=MAX_BOUNDED_K).contains(&rules.k),
            "internal: k = {} outside 1..={MAX_BOUNDED_K} reached the bounder",
            rules.k
        );
        let stored = rules.private_cell().is_some() || rules.k > RECOMPUTE_UP_TO_K;
        let (lookups, short_lookups) = rules
            .cells
            .iter()
            .map(|c| {
                let mut long = HashMap::with_hasher(fixed_state());
                let mut short = HashMap::with_hasher(fixed_state());
                for (i, v) in c.values.iter().enumerate() {
                    match short_key(v.as_bytes()) {
                        Some(key) => short.insert(key, i as u32),
                        None => long.insert(v.clone(), i as u32),
                    };
                }
                (long, short)
            })
            .unzip();
        Bounder {
            rules: rules.clone(),
            lookups,
            short_lookups,
            discovered: Mutex::new((HashMap::with_hasher(fixed_state()), Vec::new())),
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::new(rules.k, rules.statistics.len(), stored)))
                .collect(),
            diagnostics: Mutex::new(Diagnostics::default()),
        }
    }

    /// Adds one batch. Safe to call from several threads.
    pub fn push(&self, batch: &RecordBatch) -> Result<(), String> {
        let n = batch.num_rows();
        let ncell = self.rules.cells.len();
        let m = self.rules.statistics.len();
        if batch.num_columns() != 1 + ncell + m {
            return Err(format!(
                "internal: bounding expects {} columns, got {}",
                1 + ncell + m,
                batch.num_columns()
            ));
        }
        let mut diag = Diagnostics {
            rows: n as u64,
            ..Diagnostics::default()
        };
        let persons = as_strings(batch.column(0))?;
        // The cell keys as text: looked up in the domains, and hashed for the choice of a
        // person's cells (the same text as the domain value the look-up matched).
        let texts: Vec<StringArray> = (0..ncell)
            .map(|c| as_strings(batch.column(1 + c)))
            .collect::<Result<_, _>>()?;
        let mut cell = vec![0u64; n];
        let mut dropped = vec![false; n];
        let mut stride = 1u64;
        let public = self.rules.n_cells() as u64;
        for c in (0..ncell).rev() {
            let private = self.rules.cells[c].private;
            let ids = if private {
                self.discover(&texts[c])?
            } else {
                self.lookup(c, &texts[c])
            };
            // The private key's id sits above the public keys' mixed radix.
            let weight = if private { public } else { stride };
            let mut outside = 0;
            for (i, id) in ids.iter().enumerate() {
                match id {
                    Some(id) => cell[i] += *id * weight,
                    None => {
                        if !dropped[i] && !persons.is_null(i) {
                            outside += 1;
                        }
                        dropped[i] = true;
                    }
                }
            }
            if outside > 0 {
                diag.outside_domain
                    .insert(self.rules.cells[c].column.clone(), outside);
            }
            if !private {
                stride *= self.rules.cells[c].values.len() as u64;
            }
        }
        let stats: Vec<Int64Array> = (0..m)
            .map(|j| as_i64(batch.column(1 + ncell + j)))
            .collect::<Result<_, _>>()?;
        let nshards = self.shards.len();
        // The batch's kept rows, grouped by shard (a counting sort): (row, person hash).
        let mut shard_of: Vec<(u32, u32, u64)> = Vec::with_capacity(n);
        let mut counts = vec![0usize; nshards + 1];
        let state = fixed_state();
        for (i, &dropped) in dropped.iter().enumerate() {
            if persons.is_null(i) {
                diag.null_person_key += 1;
                continue;
            }
            if dropped {
                continue;
            }
            let h = state.hash_one(persons.value(i).as_bytes());
            // The shard comes from a remix of the hash, so that it does not correlate with
            // the bits the shard's own table uses.
            let s = ((h.rotate_left(23).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % nshards as u64)
                as u32;
            counts[s as usize + 1] += 1;
            shard_of.push((s, i as u32, h));
        }
        for s in 0..nshards {
            counts[s + 1] += counts[s];
        }
        let mut grouped = vec![(0u32, 0u64); shard_of.len()];
        let mut next = counts.clone();
        for &(s, i, h) in &shard_of {
            grouped[next[s as usize]] = (i, h);
            next[s as usize] += 1;
        }
        let mut row = vec![0i64; m];
        // Public keys only: a gathered row's cell is hashed from its index, which a private
        // key's values (still being discovered) cannot give; those rows are folded at once.
        let gather = self.rules.private_cell().is_none();
        for s in 0..nshards {
            let rows = &grouped[counts[s]..counts[s + 1]];
            if rows.is_empty() {
                continue;
            }
            let mut shard = self.shards[s]
                .lock()
                .map_err(|_| "internal: a bounding shard panicked")?;
            for &(i, h) in rows {
                let i = i as usize;
                for (j, st) in self.rules.statistics.iter().enumerate() {
                    row[j] = if stats[j].is_null(i) {
                        match st.kind {
                            StatisticKind::Count => 0,
                            StatisticKind::Sum => NONE,
                        }
                    } else {
                        stats[j].value(i).clamp(st.lower, st.upper)
                    };
                }
                let person = persons.value(i).as_bytes();
                if gather {
                    shard.gather(&self.rules, h, person, cell[i], &row);
                    continue;
                }
                let choice = || {
                    self.rules
                        .choice_hash_of(person, texts.iter().map(|t| t.value(i)))
                };
                shard.add(h, person, cell[i], &row, choice, |_| {
                    unreachable!("a private key's records keep their choice hashes")
                });
            }
        }
        self.diagnostics
            .lock()
            .map_err(|_| "internal: diagnostics lock")?
            .merge(diag);
        Ok(())
    }

    fn lookup(&self, c: usize, strings: &StringArray) -> Vec<Option<u64>> {
        let (map, short) = (&self.lookups[c], &self.short_lookups[c]);
        // Consecutive rows often share a value (a program's file, a quarter's rows).
        let mut last: Option<(u128, Option<u64>)> = None;
        strings
            .iter()
            .map(|v| {
                let v = v?;
                match short_key(v.as_bytes()) {
                    Some(key) => {
                        if let Some((k, id)) = last
                            && k == key
                        {
                            return id;
                        }
                        let id = short.get(&key).map(|&i| u64::from(i));
                        last = Some((key, id));
                        id
                    }
                    None => map.get(v).map(|&i| u64::from(i)),
                }
            })
            .collect()
    }

    /// Ids of the private key's values, giving each new value the next id. NULL is outside
    /// every domain.
    fn discover(&self, strings: &StringArray) -> Result<Vec<Option<u64>>, String> {
        let mut guard = self
            .discovered
            .lock()
            .map_err(|_| "internal: a bounding task panicked")?;
        let (map, values) = &mut *guard;
        Ok(strings
            .iter()
            .map(|v| {
                let v = v?;
                Some(match map.get(v) {
                    Some(&id) => id,
                    None => {
                        let id = values.len() as u64;
                        map.insert(v.to_string(), id);
                        values.push(v.to_string());
                        id
                    }
                })
            })
            .collect())
    }

    /// The rules with the private key's discovered values filled in, and those values.
    fn resolved(&self) -> (BoundingRules, Option<Vec<String>>) {
        match self.rules.private_cell() {
            None => (self.rules.clone(), None),
            Some(_) => {
                let values = self.discovered.lock().expect("no other user").1.clone();
                (self.rules.with_private_values(values.clone()), Some(values))
            }
        }
    }

    /// What the bounder holds now, summed over its shards: persons, kept (person, cell)
    /// entries and the bytes of their records. A test of the memory bound reads it between
    /// batches; it never depends on how many rows were pushed.
    pub fn retained(&self) -> Retained {
        let mut total = Retained::default();
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // What it holds once its gathered rows are folded (at most `fold_at` rows a
            // shard wait to be).
            shard.fold(&self.rules);
            let r = shard.retained();
            total.persons += r.persons;
            total.cells += r.cells;
            total.bytes += r.bytes;
        }
        total
    }

    /// Every kept (person, cell) with its bounded values, sorted, for tests and audits. The
    /// rows are private: they never leave the process.
    /// A private key's cells are named by their key values, so the rows do not depend on
    /// the order in which values were discovered.
    pub fn into_rows(self) -> Vec<(String, Vec<String>, Vec<i64>)> {
        let (rules, _) = self.resolved();
        let m = rules.statistics.len();
        let mut out = Vec::new();
        let mut conflicts = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().expect("no other user");
            shard.fold(&rules);
            for slot in 0..shard.persons() {
                let name = String::from_utf8_lossy(&shard.key(slot)).into_owned();
                for e in 0..shard.used(slot) {
                    let cell = shard.cell(slot, e);
                    let mut vals = vec![0i64; m];
                    shard.values(slot, e, &mut vals);
                    let mut row = vec![0i64; m];
                    finalize(&rules, &vals, &mut row, &mut conflicts);
                    let labels = rules
                        .cell_values(cell as usize)
                        .into_iter()
                        .map(str::to_string)
                        .collect();
                    out.push((name.clone(), labels, row));
                }
            }
        }
        out.sort();
        out
    }

    /// The exact bounded vector and the diagnostics; shards are summed in parallel.
    pub fn finish(self) -> Bounded {
        let (rules, private_values) = self.resolved();
        let Bounder {
            shards,
            diagnostics,
            ..
        } = self;
        if let Some(values) = private_values {
            return finish_sparse(rules, values, shards, diagnostics);
        }
        let mut shards: Vec<Shard> = shards
            .into_iter()
            .map(|m| m.into_inner().expect("no other user"))
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(shards.len());
        // Each thread folds the rows its shards still gather, then sums their records: the
        // rows left in the shards' buffers at the end are a few hundred per shard, and
        // folding them all on one thread left the other cores idle.
        let per_thread = shards.len().div_ceil(threads);
        let parts: Vec<(Vec<i64>, Diagnostics)> = std::thread::scope(|scope| {
            let handles: Vec<_> = shards
                .chunks_mut(per_thread)
                .map(|part| {
                    let rules = &rules;
                    scope.spawn(move || {
                        let mut values = vec![0i64; rules.n_cells() * rules.statistics.len()];
                        let mut diag = Diagnostics::default();
                        for shard in part.iter_mut() {
                            shard.fold(rules);
                            let (v, d) = finish_shard(rules, shard);
                            for (a, b) in values.iter_mut().zip(&v) {
                                *a += b;
                            }
                            diag.merge(d);
                        }
                        (values, diag)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a bounding shard panicked"))
                .collect()
        });
        let mut values = vec![0i64; rules.n_cells() * rules.statistics.len()];
        let mut diagnostics = diagnostics.into_inner().expect("no other user");
        for (v, d) in parts {
            for (a, b) in values.iter_mut().zip(&v) {
                *a += b;
            }
            diagnostics.merge(d);
        }
        Bounded {
            values,
            discovered: None,
            diagnostics,
        }
    }
}

/// [`Bounder::finish`] for a release with a private key: the sums of the touched cells only.
fn finish_sparse(
    rules: BoundingRules,
    private_values: Vec<String>,
    shards: Vec<Mutex<Shard>>,
    diagnostics: Mutex<Diagnostics>,
) -> Bounded {
    let m = rules.statistics.len();
    let mut sums: HashMap<u64, Vec<i64>, ahash::RandomState> = HashMap::with_hasher(fixed_state());
    let mut diagnostics = diagnostics.into_inner().expect("no other user");
    for shard in shards {
        let mut shard = shard.into_inner().expect("no other user");
        shard.fold(&rules);
        visit_kept(&rules, &shard, &mut diagnostics, |cell, row| {
            let sum = sums.entry(cell).or_insert_with(|| vec![0; m]);
            for (a, b) in sum.iter_mut().zip(row) {
                *a += b;
            }
        });
    }
    diagnostics.private_values = private_values.len() as u64;
    let mut cells: Vec<u64> = sums.keys().copied().collect();
    cells.sort_unstable();
    let values = cells.iter().flat_map(|c| sums[c].iter().copied()).collect();
    Bounded {
        values,
        discovered: Some(Discovered {
            values: private_values,
            cells,
        }),
        diagnostics,
    }
}

/// The bounded values of one kept (person, cell) entry: sums with no value become 0
/// clamped, and exclusive groups are made one-hot (first listed side wins).
fn finalize(rules: &BoundingRules, vals: &[i64], row: &mut [i64], conflicts: &mut u64) {
    for (j, st) in rules.statistics.iter().enumerate() {
        row[j] = if vals[j] == NONE {
            0i64.clamp(st.lower, st.upper)
        } else {
            vals[j]
        };
    }
    for group in &rules.exclusive {
        let mut on = false;
        for &j in group {
            if row[j] != 0 {
                if on {
                    row[j] = 0;
                    *conflicts += 1;
                }
                on = true;
            }
        }
    }
}

/// The bounded vector and counts of one shard.
fn finish_shard(rules: &BoundingRules, shard: &Shard) -> (Vec<i64>, Diagnostics) {
    let m = rules.statistics.len();
    let mut out = vec![0i64; rules.n_cells() * m];
    let mut diag = Diagnostics::default();
    visit_kept(rules, shard, &mut diag, |cell, row| {
        let base = cell as usize * m;
        for (o, v) in out[base..base + m].iter_mut().zip(row) {
            *o += v;
        }
    });
    (out, diag)
}

/// Calls `f(cell, bounded values)` for every (person, cell) a shard kept, and counts its
/// persons, kept cells, persons over `k` and exclusive conflicts in `diag`.
fn visit_kept(
    rules: &BoundingRules,
    shard: &Shard,
    diag: &mut Diagnostics,
    mut f: impl FnMut(u64, &[i64]),
) {
    let m = rules.statistics.len();
    let mut row = vec![0i64; m];
    let mut vals = vec![0i64; m];
    for slot in 0..shard.persons() {
        let used = shard.used(slot);
        diag.persons += 1;
        diag.person_cells += used as u64;
        diag.persons_over_k += u64::from(shard.over_k(slot));
        for e in 0..used {
            shard.values(slot, e, &mut vals);
            finalize(rules, &vals, &mut row, &mut diag.exclusive_conflicts);
            f(shard.cell(slot, e), &row);
        }
    }
}

fn fixed_state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

/// A text of up to 15 bytes as one integer: its bytes, then its length in the last byte
/// (so texts that differ only in trailing NUL bytes differ). `None` for a longer text.
fn short_key(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    b[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(b))
}

fn as_strings(array: &ArrayRef) -> Result<StringArray, String> {
    let utf8 = if array.data_type() == &DataType::Utf8 {
        array.clone()
    } else {
        cast(array, &DataType::Utf8).map_err(|e| format!("internal: key as text: {e}"))?
    };
    Ok(utf8.as_string::<i32>().clone())
}

fn as_i64(array: &ArrayRef) -> Result<Int64Array, String> {
    if let Some(b) = array.as_any().downcast_ref::<BooleanArray>() {
        return Ok(b.iter().map(|v| v.map(i64::from)).collect());
    }
    let v = cast(array, &DataType::Int64).map_err(|e| format!("internal: value as Int64: {e}"))?;
    Ok(v.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BoundingRules {
        BoundingRules {
            k: 2,
            cells: vec![CellKey {
                column: "cell".into(),
                values: (0..10).map(|i| format!("c{i}")).collect(),
                private: false,
                filter_in_plan: false,
            }],
            statistics: vec![Statistic {
                name: "a".into(),
                column: "a".into(),
                kind: StatisticKind::Count,
                lower: 0,
                upper: 1,
            }],
            exclusive: vec![],
            key: CellChoiceKey(*b"0123456789abcdef"),
        }
    }

    /// The rows waiting to be folded follow the persons a shard holds, never one person's
    /// rows: a survivor with 100,000 rows leaves at most 512 waiting, and a shard of 4,000
    /// persons folds after 4,000 rows.
    #[test]
    fn rows_waiting_to_be_folded_follow_the_persons_not_the_rows() {
        assert_eq!(fold_at(0), 512);
        assert_eq!(fold_at(64), 512);
        assert_eq!(fold_at(4_000), 4_000);
        assert_eq!(fold_at(usize::MAX), usize::MAX);
        let rules = rules();
        let mut shard = Shard::new(rules.k, 1, false);
        let mut most = 0;
        for i in 0..100_000u64 {
            shard.gather(&rules, 7, b"survivor-1", i % 10, &[1]);
            most = most.max(shard.pending.hashes.len());
        }
        assert!(most <= FOLD_ROWS, "{most} rows waited for one person");
        shard.fold(&rules);
        assert_eq!(shard.persons(), 1);
        assert_eq!(shard.used(0), 2);
        assert!(shard.over_k(0));
    }

    /// A person's key, their kept (cell, value) entries, and whether they lost cells to `k`.
    type Kept = (Vec<u8>, Vec<(u64, i64)>, bool);

    /// The kept cells and values of every person of `rows` (person, cell, value), folded in
    /// that order into a shard that keeps its choice hashes or works them out again.
    fn fold_all(rules: &BoundingRules, stored: bool, rows: &[(usize, u64, i64)]) -> Vec<Kept> {
        let mut shard = Shard::new(rules.k, 1, stored);
        for &(p, cell, v) in rows {
            let person = format!("survivor-{p}").into_bytes();
            shard.add(
                p as u64,
                &person,
                cell,
                &[v],
                || rules.choice_hash(&person, cell as usize),
                |held| rules.choice_hash(&person, held as usize),
            );
        }
        let mut out: Vec<_> = (0..shard.persons())
            .map(|slot| {
                let mut cells: Vec<(u64, i64)> = (0..shard.used(slot))
                    .map(|e| {
                        let mut v = [0i64];
                        shard.values(slot, e, &mut v);
                        (shard.cell(slot, e), v[0])
                    })
                    .collect();
                cells.sort();
                (shard.key(slot), cells, shard.over_k(slot))
            })
            .collect();
        out.sort();
        out
    }

    /// A record that works its choice hashes out again when full keeps exactly the cells and
    /// values of one that stores them, and both keep each person's `k` cells of smallest
    /// (choice hash, cell), for any order of rows: the bound, and so every released number's
    /// distribution, does not depend on how the record is laid out.
    #[test]
    fn working_choice_hashes_out_again_keeps_the_same_k_cells_as_storing_them() {
        let mut rules = rules();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for k in 1..=4 {
            rules.k = k;
            for _ in 0..50 {
                let rows: Vec<(usize, u64, i64)> = (0..200)
                    .map(|_| ((next() % 7) as usize, next() % 10, (next() % 2) as i64))
                    .collect();
                let lazy = fold_all(&rules, false, &rows);
                assert_eq!(lazy, fold_all(&rules, true, &rows), "k = {k}");
                for (person, cells, over) in &lazy {
                    let mut touched: Vec<u64> = rows
                        .iter()
                        .filter(|r| format!("survivor-{}", r.0).as_bytes() == person.as_slice())
                        .map(|r| r.1)
                        .collect();
                    touched.sort();
                    touched.dedup();
                    let mut by_hash: Vec<(u64, u64)> = touched
                        .iter()
                        .map(|&c| (rules.choice_hash(person, c as usize), c))
                        .collect();
                    by_hash.sort();
                    let mut chosen: Vec<u64> = by_hash.iter().take(k).map(|x| x.1).collect();
                    chosen.sort();
                    let kept: Vec<u64> = cells.iter().map(|c| c.0).collect();
                    assert_eq!(kept, chosen, "k = {k}");
                    assert_eq!(*over, touched.len() > k);
                    for &(c, v) in cells {
                        let most = rows
                            .iter()
                            .filter(|r| {
                                format!("survivor-{}", r.0).as_bytes() == person.as_slice()
                                    && r.1 == c
                            })
                            .map(|r| r.2)
                            .max()
                            .unwrap();
                        assert_eq!(v, most);
                    }
                }
            }
        }
    }

    /// Every value of a cell's domain is found at its own index, whether it is looked up as
    /// one integer (up to 15 bytes) or by its text, and a value outside the domain is found
    /// nowhere: values that differ only past the 15th byte, by a trailing NUL, or by length
    /// across the two kinds of look-up, in runs and alone.
    #[test]
    fn every_domain_value_is_found_at_its_index_and_nothing_else_is() {
        let mut values: Vec<String> = (0..=20).map(|n| "q".repeat(n)).collect();
        values.extend([
            "P1".into(),
            "P1\0".into(),
            "a".repeat(15) + "b",
            "a".repeat(15) + "c",
        ]);
        let mut r = rules();
        r.cells[0].values = values.clone();
        let b = Bounder::new(&r, 1);
        let mut asked: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
        asked.extend(values.iter().rev().map(|v| Some(v.as_str())));
        asked.extend(values.iter().map(|v| Some(v.as_str())));
        let outside = [
            "q".repeat(21),
            "P1\0\0".into(),
            "a".repeat(15) + "d",
            "P".into(),
        ];
        asked.extend(outside.iter().map(|v| Some(v.as_str())));
        asked.extend([None, Some("P1"), Some("P1"), None]);
        let found = b.lookup(0, &StringArray::from(asked.clone()));
        for (v, id) in asked.iter().zip(&found) {
            let expected = v.and_then(|v| values.iter().position(|x| x == v).map(|i| i as u64));
            assert_eq!(*id, expected, "{v:?}");
        }
    }
}
