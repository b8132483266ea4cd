//! Contribution bounding (`src/privacy/bounding.rs`): for random person-level rows, no person
//! keeps more than `k` cells, no value leaves its bounds, and removing one person changes the
//! statistic vector by at most the L1 and L2 that the engine declares; rows are folded as they
//! arrive, so a self-join that multiplies each person's rows holds `k` cells a person.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::privacy::ReleaseSpec;
use outreach_warehouse::privacy::bounding::{Bounder, BoundingRules, CellChoiceKey};
use outreach_warehouse::privacy::mechanism::sensitivity;
use outreach_warehouse::privacy::spec::{CellKey, Statistic, StatisticKind};
use proptest::prelude::*;

use super::run;
use crate::common::releases::{PERSONS_STAT, budget, spec_toml};
use crate::common::{
    ATTEMPTS_HEADER, csv, ingest_files, privacy_session, warehouse_with_programs, write,
};

/// A person-level row: person, program, quarter, flag a, flag b, amount.
type Row = (u8, u8, u8, Option<i64>, Option<i64>, Option<i64>);

const PROGRAMS: [&str; 4] = ["P1", "P2", "P3", "PX"]; // PX is outside the domain
const QUARTERS: [&str; 3] = ["2025Q1", "2025Q2", "2025Q3"];

fn rules(k: usize, exclusive: bool) -> BoundingRules {
    let stat = |name: &str, kind, lower, upper| Statistic {
        name: name.into(),
        column: name.into(),
        kind,
        lower,
        upper,
    };
    BoundingRules {
        k,
        cells: vec![
            CellKey {
                column: "program_id".into(),
                values: PROGRAMS[..3].iter().map(|s| s.to_string()).collect(),
                private: false,
                filter_in_plan: false,
            },
            CellKey {
                column: "quarter".into(),
                values: QUARTERS.iter().map(|s| s.to_string()).collect(),
                private: false,
                filter_in_plan: false,
            },
        ],
        statistics: vec![
            stat("a", StatisticKind::Count, 0, 1),
            stat("b", StatisticKind::Count, 0, 1),
            stat("amount", StatisticKind::Sum, -3, 5),
        ],
        exclusive: if exclusive { vec![vec![0, 1]] } else { vec![] },
        key: CellChoiceKey(*b"0123456789abcdef"),
    }
}

/// Block bounds as the engine declares them: with the group, a and b count once.
fn block_bounds(exclusive: bool) -> Vec<i64> {
    if exclusive { vec![1, 5] } else { vec![1, 1, 5] }
}

fn batch(rows: &[Row]) -> RecordBatch {
    let col = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    };
    RecordBatch::try_from_iter(vec![
        (
            "person_key",
            Arc::new(
                rows.iter()
                    .map(|r| Some(format!("person-{}", r.0)))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "program_id",
            Arc::new(
                rows.iter()
                    .map(|r| Some(PROGRAMS[r.1 as usize % 4]))
                    .collect::<StringArray>(),
            ),
        ),
        (
            "quarter",
            Arc::new(
                rows.iter()
                    .map(|r| Some(QUARTERS[r.2 as usize % 3]))
                    .collect::<StringArray>(),
            ),
        ),
        ("a", col(&|r| r.3)),
        ("b", col(&|r| r.4)),
        ("amount", col(&|r| r.5)),
    ])
    .unwrap()
}

/// The same rules with `program_id` as a private key: its values come from the data, and
/// `PX`, outside the public domain, is a value like any other.
fn private_rules(k: usize) -> BoundingRules {
    let mut r = rules(k, false);
    r.cells[0].values.clear();
    r.cells[0].private = true;
    r
}

/// The index of a cell of the public domain (program × quarter).
fn cell_index(rules: &BoundingRules, labels: &[String]) -> usize {
    labels.iter().zip(&rules.cells).fold(0, |acc, (l, c)| {
        acc * c.values.len() + c.values.iter().position(|v| v == l).unwrap()
    })
}

fn labelled_rows(rules: &BoundingRules, rows: &[Row]) -> Vec<(String, Vec<String>, Vec<i64>)> {
    // Three shards and two batches, to cover persons spread over batches.
    let b = Bounder::new(rules, 3);
    let (x, y) = rows.split_at(rows.len() / 2);
    b.push(&batch(x)).unwrap();
    b.push(&batch(y)).unwrap();
    b.into_rows()
}

fn bounded_rows(rules: &BoundingRules, rows: &[Row]) -> Vec<(String, usize, Vec<i64>)> {
    labelled_rows(rules, rows)
        .into_iter()
        .map(|(p, labels, v)| (p, cell_index(rules, &labels), v))
        .collect()
}

/// The bounded sums of a release with a private key, by cell labels; absent cells are 0.
fn sparse_vector(rules: &BoundingRules, rows: &[Row]) -> BTreeMap<Vec<String>, Vec<i64>> {
    let b = Bounder::new(rules, 2);
    b.push(&batch(rows)).unwrap();
    let out = b.finish();
    let d = out
        .discovered
        .expect("a private key gives discovered cells");
    let labelled = rules.with_private_values(d.values);
    let m = rules.statistics.len();
    d.cells
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let labels = labelled
                .cell_values(c as usize)
                .into_iter()
                .map(str::to_string)
                .collect();
            (labels, out.values[i * m..(i + 1) * m].to_vec())
        })
        .collect()
}

fn vector(rules: &BoundingRules, rows: &[Row]) -> Vec<i64> {
    let b = Bounder::new(rules, 2);
    b.push(&batch(rows)).unwrap();
    b.finish().values
}

fn row_strategy() -> impl Strategy<Value = Row> {
    (
        0u8..6,
        0u8..4,
        0u8..3,
        proptest::option::of(-2i64..4),
        proptest::option::of(-2i64..4),
        proptest::option::of(-20i64..20),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_person_exceeds_k_cells_and_no_value_leaves_its_bounds(
        rows in proptest::collection::vec(row_strategy(), 0..60),
        k in 1usize..4,
        exclusive in any::<bool>(),
    ) {
        let r = rules(k, exclusive);
        let kept = bounded_rows(&r, &rows);
        let mut per_person: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for (person, cell, values) in &kept {
            prop_assert!(per_person.entry(person).or_default().insert(*cell), "a (person, cell) twice");
            for (v, st) in values.iter().zip(&r.statistics) {
                prop_assert!(*v >= st.lower && *v <= st.upper, "{} = {v} outside its bounds", st.name);
            }
            if exclusive {
                prop_assert!(values[0] + values[1] <= 1, "exclusive group not one-hot: {values:?}");
            }
        }
        for (person, cells) in &per_person {
            prop_assert!(cells.len() <= k, "{person} keeps {} cells with k = {k}", cells.len());
        }
        // Rows outside the domain never produce a kept cell; every kept cell was touched.
        for (person, cell, _) in &kept {
            let (p, q) = (cell / 3, cell % 3);
            let touched = rows.iter().any(|row| format!("person-{}", row.0) == *person
                && row.1 as usize % 4 == p && row.2 as usize % 3 == q);
            prop_assert!(touched, "a kept cell that the person never touched");
        }
    }

    #[test]
    fn removing_one_person_moves_the_vector_by_at_most_the_declared_sensitivity(
        rows in proptest::collection::vec(row_strategy(), 1..80),
        k in 1usize..4,
        exclusive in any::<bool>(),
        victim in 0u8..6,
    ) {
        let r = rules(k, exclusive);
        let with = vector(&r, &rows);
        let without_rows: Vec<Row> = rows.iter().copied().filter(|row| row.0 != victim).collect();
        let without = vector(&r, &without_rows);
        let s = sensitivity(k as u32, &block_bounds(exclusive)).unwrap();
        let l1: u64 = with.iter().zip(&without).map(|(a, b)| (a - b).unsigned_abs()).sum();
        let l2sq: u64 = with.iter().zip(&without).map(|(a, b)| (a - b).unsigned_abs().pow(2)).sum();
        prop_assert!(l1 <= s.l1, "L1 change {l1} > declared {}", s.l1);
        prop_assert!(l2sq <= s.l2_squared, "L2² change {l2sq} > declared {}", s.l2_squared);
    }

    #[test]
    fn a_persons_cells_do_not_depend_on_other_persons(
        rows in proptest::collection::vec(row_strategy(), 1..60),
        k in 1usize..3,
        who in 0u8..6,
    ) {
        let r = rules(k, false);
        let alone: Vec<Row> = rows.iter().copied().filter(|row| row.0 == who).collect();
        let name = format!("person-{who}");
        let in_crowd: Vec<_> = bounded_rows(&r, &rows).into_iter().filter(|x| x.0 == name).collect();
        prop_assert_eq!(in_crowd, bounded_rows(&r, &alone));
    }

    /// A private key keeps exactly the cells that a public domain holding its values would:
    /// the choice hashes values, not the order in which the data showed them.
    #[test]
    fn a_private_key_keeps_the_cells_a_public_domain_would(
        rows in proptest::collection::vec(row_strategy(), 0..60),
        k in 1usize..4,
    ) {
        let mut public = rules(k, false);
        public.cells[0].values = PROGRAMS.iter().map(|s| s.to_string()).collect();
        prop_assert_eq!(labelled_rows(&private_rules(k), &rows), labelled_rows(&public, &rows));
    }

    /// With a private key, removing one person changes at most k cells (a cell may vanish,
    /// which counts as going to 0), each statistic by at most its bound.
    #[test]
    fn removing_one_person_moves_a_private_key_release_by_at_most_the_declared_sensitivity(
        rows in proptest::collection::vec(row_strategy(), 1..80),
        k in 1usize..4,
        victim in 0u8..6,
    ) {
        let r = private_rules(k);
        let with = sparse_vector(&r, &rows);
        let without_rows: Vec<Row> = rows.iter().copied().filter(|row| row.0 != victim).collect();
        let without = sparse_vector(&r, &without_rows);
        let zero = vec![0i64; r.statistics.len()];
        let keys: BTreeSet<&Vec<String>> = with.keys().chain(without.keys()).collect();
        let mut changed = 0;
        for key in keys {
            let (a, b) = (with.get(key).unwrap_or(&zero), without.get(key).unwrap_or(&zero));
            if a != b {
                changed += 1;
            }
            for ((x, y), st) in a.iter().zip(b).zip(&r.statistics) {
                let bound = st.lower.unsigned_abs().max(st.upper.unsigned_abs());
                prop_assert!((x - y).unsigned_abs() <= bound, "{} moved by {} > {bound}", st.name, x - y);
            }
        }
        prop_assert!(changed <= k, "{changed} cells changed with k = {k}");
        // Every discovered cell was touched by a kept row of some person.
        for key in with.keys() {
            prop_assert!(PROGRAMS.contains(&key[0].as_str()) && QUARTERS.contains(&key[1].as_str()));
        }
    }
}

/// No value yet for a sum, as the bounder marks it (the identity of MAX).
const NO_VALUE: i64 = i64::MIN;

/// What collapsing at the end keeps, with its exclusive conflicts and persons over `k`.
type Collapsed = (Vec<(String, Vec<String>, Vec<i64>)>, u64, u64);

/// The bounder's result, computed plainly: every row of a person is gathered first, then each (person, cell) is the MAX of its clamped values (a NULL count is 0, a
/// NULL sum no value), the person keeps the `k` cells with the smallest (keyed hash, cell),
/// a sum with no value becomes 0 clamped, and an exclusive group is made one-hot, the first
/// side listed winning. Gives what `Bounder::into_rows` gives.
fn collapse_at_the_end(rules: &BoundingRules, rows: &[Row]) -> Collapsed {
    // Every program a row can name gets an index, so that a private key's cells have one.
    let labelled = if rules.cells[0].private {
        rules.with_private_values(PROGRAMS.iter().map(|s| s.to_string()).collect())
    } else {
        rules.clone()
    };
    let m = rules.statistics.len();
    let mut gathered: BTreeMap<String, BTreeMap<usize, Vec<i64>>> = BTreeMap::new();
    for r in rows {
        let program = PROGRAMS[r.1 as usize % 4];
        let Some(p) = labelled.cells[0].values.iter().position(|v| v == program) else {
            continue; // outside the public domain
        };
        let cell = p * QUARTERS.len() + r.2 as usize % 3;
        let values = gathered
            .entry(format!("person-{}", r.0))
            .or_default()
            .entry(cell)
            .or_insert_with(|| vec![NO_VALUE; m]);
        for ((v, x), st) in values
            .iter_mut()
            .zip([r.3, r.4, r.5])
            .zip(&rules.statistics)
        {
            let x = match (x, st.kind) {
                (None, StatisticKind::Count) => 0,
                (None, StatisticKind::Sum) => NO_VALUE,
                (Some(x), _) => x.clamp(st.lower, st.upper),
            };
            *v = (*v).max(x);
        }
    }
    let (mut out, mut conflicts, mut over_k) = (Vec::new(), 0, 0);
    for (person, cells) in gathered {
        let mut by_hash: Vec<(u64, usize)> = cells
            .keys()
            .map(|&c| (labelled.choice_hash(person.as_bytes(), c), c))
            .collect();
        by_hash.sort();
        over_k += u64::from(by_hash.len() > rules.k);
        for &(_, c) in by_hash.iter().take(rules.k) {
            let mut row: Vec<i64> = cells[&c]
                .iter()
                .zip(&rules.statistics)
                .map(|(&v, st)| {
                    if v == NO_VALUE {
                        0i64.clamp(st.lower, st.upper)
                    } else {
                        v
                    }
                })
                .collect();
            for group in &rules.exclusive {
                let mut on = false;
                for &j in group {
                    if row[j] != 0 {
                        if on {
                            row[j] = 0;
                            conflicts += 1;
                        }
                        on = true;
                    }
                }
            }
            let labels = labelled
                .cell_values(c)
                .into_iter()
                .map(str::to_string)
                .collect();
            out.push((person.clone(), labels, row));
        }
    }
    out.sort();
    (out, conflicts, over_k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Each row is folded into its person's record as it arrives, instead of every row being
    /// kept until the end. For random rows in a random order, cut into random
    /// batches over a random number of shards, the fold keeps exactly what collapsing all of
    /// a person's rows at the end keeps, for a public and a private key, with and without an
    /// exclusive group, down to the sums and the diagnostics; and after every batch it holds
    /// at most `k` cells a person.
    #[test]
    fn folding_rows_as_they_arrive_keeps_what_collapsing_them_at_the_end_keeps(
        rows in proptest::collection::vec(row_strategy(), 0..200),
        k in 1usize..4,
        exclusive in any::<bool>(),
        private in any::<bool>(),
        order in any::<u64>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        shards in 1usize..5,
    ) {
        let mut r = rules(k, exclusive);
        if private {
            r.cells[0].values.clear();
            r.cells[0].private = true;
        }
        let (expected, conflicts, over_k) = collapse_at_the_end(&r, &rows);
        // The arrival order, from `order` (not privacy noise), and where batches end.
        let mut shuffled: Vec<(usize, Row)> = rows.iter().copied().enumerate().collect();
        shuffled.sort_by_key(|&(i, _)| (order ^ i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let shuffled: Vec<Row> = shuffled.into_iter().map(|(_, row)| row).collect();
        let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(shuffled.len() + 1)).collect();
        ends.extend([0, shuffled.len()]);
        ends.sort_unstable();
        ends.dedup();
        let push_all = |b: &Bounder| -> Result<(), TestCaseError> {
            for w in ends.windows(2) {
                b.push(&batch(&shuffled[w[0]..w[1]])).unwrap();
                let held = b.retained();
                prop_assert!(held.cells <= held.persons * k, "{held:?} with k = {k}");
            }
            Ok(())
        };
        let b = Bounder::new(&r, shards);
        push_all(&b)?;
        prop_assert_eq!(b.into_rows(), expected.clone());
        let b = Bounder::new(&r, shards);
        push_all(&b)?;
        let out = b.finish();
        let persons: BTreeSet<&String> = expected.iter().map(|x| &x.0).collect();
        prop_assert_eq!(out.diagnostics.rows, rows.len() as u64);
        prop_assert_eq!(out.diagnostics.persons, persons.len() as u64);
        prop_assert_eq!(out.diagnostics.person_cells, expected.len() as u64);
        prop_assert_eq!(out.diagnostics.persons_over_k, over_k);
        prop_assert_eq!(out.diagnostics.exclusive_conflicts, conflicts);
        if !private {
            let m = r.statistics.len();
            let mut sums = vec![0i64; r.n_cells() * m];
            for (_, labels, row) in &expected {
                let c = cell_index(&r, labels);
                for (s, v) in sums[c * m..(c + 1) * m].iter_mut().zip(row) {
                    *s += v;
                }
            }
            prop_assert_eq!(out.values, sums);
        }
    }
}

/// One cell key with 600 values and one count: room for persons with hundreds of cells.
fn wide_rules(k: usize) -> BoundingRules {
    BoundingRules {
        k,
        cells: vec![CellKey {
            column: "cell".into(),
            values: (0..600).map(|i| format!("c{i:03}")).collect(),
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

/// Rows (person, cell index) with the flag set.
fn wide_batch(rows: &[(usize, u16)]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "person_key",
            Arc::new(
                rows.iter()
                    .map(|r| Some(format!("person-{}", r.0)))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        (
            "cell",
            Arc::new(
                rows.iter()
                    .map(|r| Some(format!("c{:03}", r.1)))
                    .collect::<StringArray>(),
            ),
        ),
        (
            "a",
            Arc::new(rows.iter().map(|_| Some(1i64)).collect::<Int64Array>()),
        ),
    ])
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// At k ≥ 256 (past what an 8-bit per-person count holds) a person still keeps exactly the min(k, touched) cells with the smallest keyed hash,
    /// whatever the order in which the rows arrive.
    #[test]
    fn with_k_of_256_or_more_a_person_keeps_the_k_cells_with_the_smallest_keyed_hash(
        k in 256usize..=320,
        touched in proptest::collection::vec(
            proptest::sample::subsequence((0u16..600).collect::<Vec<_>>(), 0..=600),
            1..4,
        ),
        order in any::<u64>(),
    ) {
        let r = wide_rules(k);
        let mut rows: Vec<(usize, u16)> = touched
            .iter()
            .enumerate()
            .flat_map(|(p, cells)| cells.iter().map(move |&c| (p, c)))
            .collect();
        // Arrival order from `order`: sort by a mix of it with the row (not privacy noise).
        rows.sort_by_key(|&(p, c)| {
            (order ^ (((p as u64) << 16) | u64::from(c))).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        });
        let b = Bounder::new(&r, 3);
        let (x, y) = rows.split_at(rows.len() / 2);
        b.push(&wide_batch(x)).unwrap();
        b.push(&wide_batch(y)).unwrap();
        let kept = b.into_rows();
        for (p, cells) in touched.iter().enumerate() {
            let name = format!("person-{p}");
            let mut by_hash: Vec<(u64, usize)> = cells
                .iter()
                .map(|&c| (r.choice_hash(name.as_bytes(), c as usize), c as usize))
                .collect();
            by_hash.sort();
            let expected: BTreeSet<String> = by_hash
                .iter()
                .take(k)
                .map(|&(_, c)| format!("c{c:03}"))
                .collect();
            let got: BTreeSet<String> = kept
                .iter()
                .filter(|row| row.0 == name)
                .map(|row| row.1[0].clone())
                .collect();
            let n_got = kept.iter().filter(|row| row.0 == name).count();
            prop_assert_eq!(n_got, expected.len(), "{} kept {} cells, touched {}, k = {}", name, n_got, cells.len(), k);
            prop_assert_eq!(&got, &expected, "{} kept other cells than the k smallest hashes", name);
        }
        // The diagnostics count who lost cells to k.
        let b = Bounder::new(&r, 2);
        b.push(&wide_batch(&rows)).unwrap();
        let out = b.finish();
        let over = touched.iter().filter(|c| c.len() > k).count() as u64;
        prop_assert_eq!(out.diagnostics.persons_over_k, over);
        let kept_total: i64 = out.values.iter().sum();
        let expected_total: usize = touched.iter().map(|c| c.len().min(k)).sum();
        prop_assert_eq!(kept_total, expected_total as i64);
    }
}

#[test]
fn the_kept_cells_are_those_with_the_smallest_keyed_hash() {
    let r = rules(2, false);
    // One person in all 9 cells of the domain.
    let rows: Vec<Row> = (0..3u8)
        .flat_map(|p| (0..3u8).map(move |q| (1, p, q, Some(1), None, Some(1))))
        .collect();
    let kept: BTreeSet<usize> = bounded_rows(&r, &rows).into_iter().map(|x| x.1).collect();
    let mut by_hash: Vec<(u64, usize)> =
        (0..9).map(|c| (r.choice_hash(b"person-1", c), c)).collect();
    by_hash.sort();
    let expected: BTreeSet<usize> = by_hash[..2].iter().map(|x| x.1).collect();
    assert_eq!(kept, expected);
    // Another secret chooses differently for some person (the choice is keyed).
    let mut other = r.clone();
    other.key = CellChoiceKey(*b"fedcba9876543210");
    let differs = (0..40).any(|i| {
        let p = format!("person-{i}");
        let pick = |rules: &BoundingRules| {
            let mut v: Vec<(u64, usize)> = (0..9)
                .map(|c| (rules.choice_hash(p.as_bytes(), c), c))
                .collect();
            v.sort();
            v[0].1
        };
        pick(&r) != pick(&other)
    });
    assert!(differs, "the cell choice does not depend on the secret");
}

#[test]
fn rows_outside_the_domain_or_without_a_key_are_dropped_and_counted() {
    let r = rules(4, false);
    let b = Bounder::new(&r, 1);
    b.push(&batch(&[
        (1, 3, 0, Some(1), None, None),
        (1, 0, 0, Some(1), None, None),
    ]))
    .unwrap();
    let nulls = RecordBatch::try_from_iter(vec![
        (
            "person_key",
            Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef,
        ),
        ("program_id", Arc::new(StringArray::from(vec![Some("P1")]))),
        ("quarter", Arc::new(StringArray::from(vec![Some("2025Q1")]))),
        ("a", Arc::new(Int64Array::from(vec![Some(1)]))),
        ("b", Arc::new(Int64Array::from(vec![None::<i64>]))),
        ("amount", Arc::new(Int64Array::from(vec![None::<i64>]))),
    ])
    .unwrap();
    b.push(&nulls).unwrap();
    let out = b.finish();
    assert_eq!(out.diagnostics.outside_domain.get("program_id"), Some(&1));
    assert_eq!(out.diagnostics.null_person_key, 1);
    assert_eq!(out.diagnostics.rows, 3);
    // Only the in-domain row counts: cell (P1, 2025Q1) = index 0, statistic a.
    assert_eq!(out.values[0], 1);
    assert_eq!(out.values.iter().sum::<i64>(), 1);
}

#[test]
fn batches_from_several_threads_meet_per_person() {
    // The same rows pushed as many small batches from four threads give the same bounded
    // vector as one batch on one thread: a person's rows meet in one shard.
    let r = rules(2, true);
    let rows: Vec<Row> = (0..400u32)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (
                (x % 7) as u8,
                ((x >> 8) % 4) as u8,
                ((x >> 16) % 3) as u8,
                Some(((x >> 24) % 2) as i64),
                Some(((x >> 32) % 2) as i64),
                Some(((x >> 40) % 30) as i64 - 10),
            )
        })
        .collect();
    let one = vector(&r, &rows);
    let b = Arc::new(Bounder::new(&r, 3));
    std::thread::scope(|s| {
        for part in rows.chunks(100) {
            let b = b.clone();
            s.spawn(move || {
                for small in part.chunks(7) {
                    b.push(&batch(small)).unwrap();
                }
            });
        }
    });
    let many = Arc::try_unwrap(b).ok().unwrap().finish().values;
    assert_eq!(one, many);
}

/// A person-local self-join multiplies one person's rows (`a JOIN b JOIN c ON person_key`: n
/// attempts give n³ rows; one survivor with 400 attempts gives 6.4e7), all after the debit.
/// Rows are folded into each person's record as they arrive: for 500 survivors with 12
/// attempts each (864,000 rows), what the bounder holds after every batch is at most k cells a
/// person and fewer bytes than rows pushed, and the release itself finishes.
#[test]
fn a_self_join_that_multiplies_each_persons_rows_is_bounded_in_persons_times_k() {
    use futures::StreamExt;
    use outreach_warehouse::privacy::bounding::{
        Bounder, BoundingRules, CellChoiceKey, Retained, record_words,
    };
    use outreach_warehouse::privacy::release::{person_rows, prepare};

    const SURVIVORS: usize = 500;
    const ATTEMPTS: usize = 12;
    const K: usize = 2;
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    // Three programs and two quarters: each survivor touches six cells, and keeps k = 2.
    let attempts: Vec<String> = (0..SURVIVORS)
        .flat_map(|p| {
            (0..ATTEMPTS).map(move |j| {
                let program = ["P001", "P002", "P003"][j % 3];
                let date = if j % 2 == 0 { "2025-02-10" } else { "2025-05-10" };
                format!(
                    "A{p:03}x{j:02},pk{p:04},{program},E{p:04},{date},home_visit,engaged_survivor,false,false,false,true,false"
                )
            })
        })
        .collect();
    let file = write(
        tmp.path(),
        "outreach_attempts.csv",
        csv(ATTEMPTS_HEADER, &attempts),
    );
    ingest_files(&wh, &[file]);
    budget(&wh, 1.0);
    let sql = "SELECT a.person_key, a.program_id, quarter_of(a.attempt_date) AS quarter, true AS persons \
               FROM outreach_attempts a \
               JOIN outreach_attempts b ON b.person_key = a.person_key \
               JOIN outreach_attempts c ON c.person_key = a.person_key";
    let spec: ReleaseSpec = toml::from_str(&spec_toml(K as u32, 0.5, sql, PERSONS_STAT)).unwrap();

    // The release's own plan and rows, into a bounder read after every batch.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (pushed, most, bounded) = rt.block_on(async {
        let ctx = privacy_session(&wh).await;
        let config = Ledger::open(&wh).unwrap().config().unwrap();
        let prepared = prepare(&ctx, &spec, "v1", &config).await.unwrap();
        let rules = BoundingRules {
            k: prepared.spec.k as usize,
            cells: prepared.spec.cells.clone(),
            statistics: prepared.spec.statistics.clone(),
            exclusive: prepared.spec.exclusive.clone(),
            key: CellChoiceKey(*b"0123456789abcdef"),
        };
        let rows = person_rows(&ctx, &prepared.spec, &prepared.queries).unwrap();
        let bounder = Bounder::new(&rules, 256);
        let (mut pushed, mut most) = (0usize, Retained::default());
        let mut stream = rows.execute_stream().await.unwrap();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            pushed += batch.num_rows();
            bounder.push(&batch).unwrap();
            let now = bounder.retained();
            assert!(now.cells <= now.persons * K, "{now:?} after {pushed} rows");
            most = Retained {
                persons: most.persons.max(now.persons),
                cells: most.cells.max(now.cells),
                bytes: most.bytes.max(now.bytes),
            };
        }
        (pushed, most, bounder.finish())
    });
    assert_eq!(pushed, SURVIVORS * ATTEMPTS.pow(3));
    assert_eq!(most.persons, SURVIVORS);
    assert_eq!(most.cells, SURVIVORS * K);
    // One record of 5 + 2k + k·m words a person (Vec growth at most doubles it), a few bytes
    // of index a person and per shard, whatever the rows: here under one byte a row.
    let record = 8 * record_words(K, 1);
    assert!(
        most.bytes <= SURVIVORS * (2 * record + 64) + 256 * 64,
        "{most:?}: more than the persons' records"
    );
    assert!(most.bytes < pushed, "{most:?} for {pushed} rows");
    let d = &bounded.diagnostics;
    assert_eq!(d.rows, pushed as u64);
    assert_eq!(d.persons, SURVIVORS as u64);
    assert_eq!(d.person_cells, (SURVIVORS * K) as u64);
    assert_eq!(d.persons_over_k, SURVIVORS as u64);
    assert_eq!(bounded.values.iter().sum::<i64>(), (SURVIVORS * K) as i64);

    // The release finishes, with one debit.
    let out = run(&wh, &spec).unwrap();
    assert!(out.fresh);
    assert_eq!(Ledger::open(&wh).unwrap().releases().unwrap().len(), 1);
}
