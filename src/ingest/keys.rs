//! Unique primary keys across a file, the earlier files of a load and the warehouse.
//!
//! Every key's 128-bit hash is kept with its line in one flat list, in file order, and a
//! blocked Bloom filter over the same hashes answers "new or maybe seen" for each row. The
//! collector admits keys in line order (chunks in file order, and within a chunk across its
//! quarter buckets, never bucket by bucket), so a row the filter calls new is the first of its
//! key, and its rows go straight to the writer. A row the filter calls maybe seen is a *suspect*: it
//! is held back until the list is scanned for the smallest line holding its key. A suspect is
//! then either a real repeat (rejected, naming that line), the re-sending of a row already
//! stored (which [`super::revision`] compares with the stored row: unchanged, a correction, or
//! a reject), or a false alarm of the filter (kept).
//!
//! Lines tell where a key was taken: [`STORED`] for a row in the warehouse, [`EARLIER_FILE`]
//! for a row of an earlier file of this load, and the line itself (2 and on) in this file.
//!
//! The filter costs about 12 bits a key and mostly stays in the cache, where a hash map of
//! every key cost a cache miss or two per row; the list is only appended to.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are already uniform 128-bit hashes.
#[derive(Default)]
struct PassThroughHasher(u64);

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

/// A 128-bit key hash as two words, so a list entry with its line is 24 bytes, not 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct KeyHash(u64, u64);

impl From<u128> for KeyHash {
    fn from(h: u128) -> Self {
        KeyHash((h >> 64) as u64, h as u64)
    }
}

/// Filter bits per key of capacity: a false alarm rate of about 0.5%.
const BITS_PER_KEY: usize = 12;
/// The salts of Parquet's split-block Bloom filter: one bit in each of a block's eight words.
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A split-block Bloom filter: each key sets one bit in each word of one 32-byte block, so a
/// test touches one cache line.
struct KeyFilter {
    blocks: Vec<[u32; 8]>,
    /// Keys the filter is sized for; it is rebuilt twice as large past that.
    capacity: usize,
}

impl KeyFilter {
    fn with_capacity(keys: usize) -> Self {
        let capacity = keys.max(1024);
        let blocks = (capacity * BITS_PER_KEY).div_ceil(256);
        Self {
            blocks: vec![[0; 8]; blocks],
            capacity,
        }
    }

    fn block(&self, k: KeyHash) -> usize {
        ((u128::from(k.0) * self.blocks.len() as u128) >> 64) as usize
    }

    /// Asks the CPU to fetch the key's block ahead of its use.
    #[inline]
    fn prefetch(&self, k: KeyHash) {
        #[cfg(target_arch = "x86_64")]
        {
            let block = self.blocks[self.block(k)].as_ptr();
            // SAFETY: a prefetch is a hint: it reads nothing into the program, cannot fault,
            // and SSE is part of the x86_64 baseline. The pointer is in bounds besides.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(block.cast())
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = k;
    }

    /// Sets the key's bits; true if they were all set already (the key may have been seen).
    fn test_and_set(&mut self, k: KeyHash) -> bool {
        let b = self.block(k);
        let block = &mut self.blocks[b];
        let x = k.1 as u32;
        let mut all = true;
        for (word, salt) in block.iter_mut().zip(SALT) {
            let bit = 1u32 << (x.wrapping_mul(salt) >> 27);
            all &= *word & bit != 0;
            *word |= bit;
        }
        all
    }
}

/// The line of a key stored in the warehouse.
pub const STORED: u64 = 0;
/// The line of a key taken by an earlier file of this load (line 1 is a header, never a row).
pub const EARLIER_FILE: u64 = 1;

/// Where a suspect's key was taken before its own line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// A row stored in the warehouse, and nowhere before in this load.
    Stored,
    /// A row of an earlier file of this load.
    PriorFile,
    /// An earlier line of this file.
    Line(u64),
}

/// Primary-key hashes already taken, with the line that took each ([`STORED`],
/// [`EARLIER_FILE`], or a line of this file). Owned by the collector of one table.
pub struct SeenKeys {
    filter: KeyFilter,
    keys: Vec<(KeyHash, u64)>,
}

impl Default for SeenKeys {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl SeenKeys {
    /// A set sized for about `n` keys; it grows past that.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            filter: KeyFilter::with_capacity(n),
            keys: Vec::with_capacity(n),
        }
    }

    /// Makes room for about `n` more keys.
    pub fn reserve(&mut self, n: usize) {
        self.keys.reserve(n);
        let wanted = self.keys.len() + n;
        if wanted > self.filter.capacity {
            self.rebuild(wanted);
        }
    }

    fn rebuild(&mut self, capacity: usize) {
        self.filter = KeyFilter::with_capacity(capacity);
        for (k, _) in &self.keys {
            self.filter.test_and_set(*k);
        }
    }

    /// Records the keys of consecutive lines, in line order ([`STORED`] for a stored key). Each is
    /// `true` if its key may have been taken before: the row is a suspect until
    /// [`SeenKeys::first_lines`] settles it. The filter blocks are fetched a few keys ahead,
    /// since each is a likely cache miss and the keys' blocks are known up front.
    pub fn admit_all(&mut self, keys: &[(u128, u64)]) -> Vec<bool> {
        /// Keys fetched ahead: enough to cover a memory latency.
        const AHEAD: usize = 16;
        if self.keys.len() + keys.len() > self.filter.capacity {
            self.rebuild((self.keys.len() + keys.len()).max(self.filter.capacity * 2));
        }
        for (hash, _) in keys.iter().take(AHEAD) {
            self.filter.prefetch(KeyHash::from(*hash));
        }
        let mut suspect = Vec::with_capacity(keys.len());
        for (i, (hash, line)) in keys.iter().enumerate() {
            if let Some((ahead, _)) = keys.get(i + AHEAD) {
                self.filter.prefetch(KeyHash::from(*ahead));
            }
            let k = KeyHash::from(*hash);
            self.keys.push((k, *line));
            suspect.push(self.filter.test_and_set(k));
        }
        suspect
    }

    /// Keys admitted so far, stored ones included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// For each suspect `(hash, line)`: where its key was taken before that line. A repeat
    /// within this load wins over a stored row: the first line of the key in this load is
    /// the row that re-sends the stored one, and every later line repeats that line. `None`:
    /// the suspect is the first of its key (a false alarm of the filter). Every line before
    /// the suspects' must have been admitted.
    pub fn first_lines(&self, suspects: &[(u128, u64)]) -> Vec<Option<Earlier>> {
        // Per key: whether it is stored, and its smallest line in this load.
        let mut found: HashMap<KeyHash, (bool, u64), BuildHasherDefault<PassThroughHasher>> =
            suspects
                .iter()
                .map(|(h, _)| (KeyHash::from(*h), (false, u64::MAX)))
                .collect();
        for (k, line) in &self.keys {
            if let Some((stored, smallest)) = found.get_mut(k) {
                if *line == STORED {
                    *stored = true;
                } else {
                    *smallest = (*smallest).min(*line);
                }
            }
        }
        suspects
            .iter()
            .map(|(h, line)| {
                let (stored, smallest) = found[&KeyHash::from(*h)];
                if smallest < *line {
                    Some(if smallest == EARLIER_FILE {
                        Earlier::PriorFile
                    } else {
                        Earlier::Line(smallest)
                    })
                } else if stored {
                    Some(Earlier::Stored)
                } else {
                    None
                }
            })
            .collect()
    }

    /// After a file is staged, its keys count as an earlier file's for the next file.
    pub fn end_file(&mut self) {
        for (_, line) in &mut self.keys {
            if *line != STORED {
                *line = EARLIER_FILE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SeenKeys {
        fn admit(&mut self, hash: u128, line: u64) -> bool {
            self.admit_all(&[(hash, line)])[0]
        }
    }

    #[test]
    fn a_repeat_is_a_suspect_that_resolves_to_the_smallest_line() {
        let mut seen = SeenKeys::default();
        assert!(!seen.admit(7, 10));
        assert!(!seen.admit(8, 11));
        assert!(seen.admit(7, 50));
        assert!(seen.admit(7, 60));
        assert_eq!(
            seen.first_lines(&[(7, 50), (7, 60), (8, 11)]),
            [Some(Earlier::Line(10)), Some(Earlier::Line(10)), None]
        );
        // Keys of a staged file count as an earlier file's for the next file.
        seen.end_file();
        assert!(seen.admit(7, 2));
        assert_eq!(seen.first_lines(&[(7, 2)]), [Some(Earlier::PriorFile)]);
        seen.admit(9, STORED);
        assert!(seen.admit(9, 3));
        assert_eq!(seen.first_lines(&[(9, 3)]), [Some(Earlier::Stored)]);
    }

    #[test]
    fn a_stored_key_is_re_sent_by_its_first_line_and_repeated_by_every_later_one() {
        let mut seen = SeenKeys::default();
        seen.admit_all(&[(5, STORED), (6, STORED)]);
        // In this file: key 5 on lines 4 and 9, key 6 on line 7.
        assert!(seen.admit(5, 4));
        assert!(seen.admit(6, 7));
        assert!(seen.admit(5, 9));
        assert_eq!(
            seen.first_lines(&[(5, 4), (6, 7), (5, 9)]),
            [
                Some(Earlier::Stored),
                Some(Earlier::Stored),
                Some(Earlier::Line(4))
            ]
        );
        // In the next file of the load, a stored key re-sent by the earlier file repeats it.
        seen.end_file();
        assert!(seen.admit(6, 2));
        assert_eq!(seen.first_lines(&[(6, 2)]), [Some(Earlier::PriorFile)]);
    }

    #[test]
    fn admitting_a_batch_marks_the_same_suspects_as_one_by_one() {
        let keys: Vec<(u128, u64)> = (0..5_000u64)
            .map(|i| {
                (
                    u128::from(i % 3_000).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    i + 2,
                )
            })
            .collect();
        let mut one = SeenKeys::default();
        let singly: Vec<bool> = keys.iter().map(|(h, l)| one.admit(*h, *l)).collect();
        let mut batch = SeenKeys::default();
        let mut batched = batch.admit_all(&keys[..1_000]);
        batched.extend(batch.admit_all(&keys[1_000..]));
        assert_eq!(batched, singly);
        // Every repeat (the last 2,000 keys) is a suspect and resolves to its first line.
        assert!(batched[3_000..].iter().all(|s| *s));
        let firsts = batch.first_lines(&keys[3_000..]);
        assert!(
            firsts
                .iter()
                .zip(3_000u64..)
                .all(|(f, i)| *f == Some(Earlier::Line(i - 3_000 + 2)))
        );
    }

    #[test]
    fn a_false_alarm_of_the_filter_resolves_as_first() {
        // Far past its capacity the filter says "maybe" to new keys; the list does not.
        let mut seen = SeenKeys {
            filter: KeyFilter {
                blocks: vec![[u32::MAX; 8]; 1],
                capacity: usize::MAX,
            },
            keys: Vec::new(),
        };
        assert!(seen.admit(1, 2));
        assert!(seen.admit(2, 3));
        assert_eq!(seen.first_lines(&[(1, 2), (2, 3)]), [None, None]);
    }

    #[test]
    fn the_filter_grows_and_keeps_every_key() {
        let mut seen = SeenKeys::with_capacity(0);
        let hash = |i: u64| u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        let n = 100_000u64;
        let mut suspects = 0;
        for i in 0..n {
            suspects += usize::from(seen.admit(hash(i), i + 2));
        }
        // Distinct keys: only false alarms, at about 0.5% of a filter that doubled as it went.
        assert!(suspects < 2_000, "{suspects} false alarms in {n} keys");
        assert!(seen.filter.capacity >= n as usize);
        // After growing, every earlier key is still in the filter: no false "new".
        for i in 0..n {
            assert!(seen.filter.test_and_set(KeyHash::from(hash(i))), "key {i}");
        }
    }
}
