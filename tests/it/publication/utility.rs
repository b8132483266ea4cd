//! Utility of the standard publication on seeded synthetic data with known truth: the
//! published 95% intervals cover the exact values as often as they claim, and the
//! police-present minus police-absent arrest-rate difference, pooled over the demo's quarters,
//! finds the effect the generator plants and stays near 0 when none is.
//!
//! The tests go through the publication's own code: the standard spec, [`prepare`],
//! [`person_rows`] and [`bound`] for the exact bounded vector, OpenDP's noise through the
//! prepared [`NoisePlan`](outreach_warehouse::privacy::NoisePlan), [`build_result`] and
//! [`figures`] for the counts, rates and sums that `publish` stores; the detection tests
//! call [`publish`] itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};
use outreach_warehouse::metrics::Catalog;
use outreach_warehouse::metrics::exact::exact;
use outreach_warehouse::privacy::PublicRelease;
use outreach_warehouse::privacy::bounding::{BoundingRules, CellChoiceKey};
use outreach_warehouse::privacy::mechanism::noise_variance;
use outreach_warehouse::privacy::release::{
    PreparedRelease, bound, build_result, person_rows, prepare,
};
use outreach_warehouse::publication::figures::{
    CountFigure, DifferenceFigure, Noisy, RateEstimate, RateFigure, Z95, rate,
};
use outreach_warehouse::publication::rate_variance;
use outreach_warehouse::publication::{
    Completeness, EQUITY_NOISE, ProgramInfo, Publication, PublishOptions, STANDARD_ALLOCATION,
    StandardNoise, completeness, figures, programs, publish, standard_spec,
};
use outreach_warehouse::quarter::Quarter;
use outreach_warehouse::synth::{SynthConfig, SynthParams, synth};
use outreach_warehouse::warehouse::Warehouse;

use crate::common::privacy_session;

// ---------------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------------
//
// **What is tested.** One quarter of a small synthetic warehouse is bounded once; only the
// noise is drawn again, DRAWS times. Each draw goes through `build_result` and `figures`, as
// `publish` does, and every published interval is checked against the exact value: for each
// program and each group of programs (team model, police on visits, warrant policy, region,
// statewide), every count (target: the exact count of `metrics::exact`, summed over the
// group's programs) and every rate whose exact denominator is at least MIN_DEN (target: the
// exact ratio of exact counts). A *quantity* is one (program or group, count or rate). Its
// coverage p̂ is the share of draws whose interval holds the target; the test fails when
// some p̂ < 0.95 − TOL.
//
// **Rates with small denominators are left out** (and counted): the delta-method interval is
// a large-denominator approximation. Computed exactly (below), with σ = 5.5 it covers the
// exact ratio 92.7% of the time at d = 25 and r = 1 (given sufficient data), but 94.4–95.4%
// for every d ≥ 100 and r in [0, 1]. Rates shown as "insufficient data" in a draw are not a
// miss and not a hit; they are counted (with d ≥ 100 the noisy denominator would have to fall
// by 78 = 14σ, probability < 1e-40, so the count is 0 and the test asserts it).
//
// **Whole-number noise.** A single program's count uses OpenDP's half-width h (|noise| ≤ h
// with probability ≥ 95%). With integer noise, the normal quantile on the noise variance
// itself under-covers: a rate near 0 would cover only 94.41% (|Z| ≤ 10 for 1.96·σ ≈ 10.78)
// and a sum of 3 (19) programs 94.80% (94.76%). So publish rounds a sum's half-width up to a
// whole number and lets a count enter a rate with variance max(σ², (h/1.96)²)
// (`rate_variance`); the exact coverages the test computes are what the published intervals
// give, and the tolerance below is set by the sampling arithmetic alone.
//
// **False alarms (a correct implementation fails with probability < 1e-6).** p̂ is a mean
// of DRAWS independent indicators, so by Hoeffding P(p̂ ≤ p − t) ≤ exp(−2·DRAWS·t²). The
// test fails on a quantity with true coverage p only if p̂ < 0.95 − TOL, i.e. t = p − 0.95 +
// TOL. With DRAWS = 10,000 and TOL = 0.04 (0.95 − TOL = 0.91):
//   p ≥ 0.95 (the claim):             exp(−2·10,000·0.04²)   = exp(−32)   = 1.3e-14;
//   p ≥ 0.9441 (a rate near 0 above): exp(−2·10,000·0.0341²) = exp(−23.2) = 8.1e-11;
// per quantity, and by the union bound over at most MAX_QUANTITIES = 1,000 quantities the
// test fails with probability ≤ 1,000·8.1e-11 = 8.1e-8 < 1e-6 even for intervals that
// under-cover that much. (On this data every exact coverage is at least 0.9537.) The test
// also computes each quantity's exact coverage p_q (the discrete Gaussian pmf, convolved over a group's programs, pushed through
// the very `CountFigure`/`rate`/`RateFigure` code, with the bounded value as centre and the
// exact value as target) and asserts Σ_q exp(−2·DRAWS·(p_q − 0.95 + TOL)²) < 1e-6 before it
// looks at a single draw. (DRAWS is limited by OpenDP's exact sampler, about 16 µs per
// value: 10,000 draws of 60 values take about 10 s of CPU, split over two threads.)
//
// **Negative control.** The same check on intervals with half the published half-width
// (same centre, same clipping) must fail. Half of h = 11 is 5.5, and P(|Z| ≤ 5) = 0.683 for
// σ = 5.5 (a rate's half-width interval covers about P(|N| ≤ 0.98) ≈ 0.67; a count whose
// exact value is 0 covers P(Z ≤ 5) = 0.842): far below 0.91. The control passes only if
// *every* quantity passes, so at most as likely as its weakest quantity passing:
// exp(−2·10,000·(0.91 − 0.683)²) = exp(−1,030) ≈ 0. The test computes the exact half-width
// coverage of every quantity and asserts this bound (< 1e-6) too.

/// Noise draws per run.
const DRAWS: usize = 10_000;
/// The sampling tolerance on each coverage proportion.
const TOL: f64 = 0.04;
/// The claimed coverage.
const TARGET: f64 = 0.95;
/// The largest probability of a false alarm (or of a control that passes) allowed.
const FAIL_BUDGET: f64 = 1e-6;
/// Rates are tested where the exact denominator is at least this.
const MIN_DEN: i64 = 100;
/// The union bound of the comment above assumes no more quantities than this.
const MAX_QUANTITIES: usize = 1_000;

/// A small synthetic data set: 4 programs, 4 quarters of 2024, known seed.
fn small_config() -> SynthConfig {
    SynthConfig {
        programs: 4,
        persons: 6_000,
        start: Quarter::new(2024, 1).unwrap(),
        quarters: 4,
        seed: 1_010,
        as_of: Some(NaiveDate::from_ymd_opt(2024, 12, 31).unwrap()),
        params: SynthParams::default(),
    }
}

/// Synthesises `cfg` into `dir/exports` and ingests it into `dir/wh`, every table declared
/// complete through the last synthetic day; nothing depends on today's date.
fn synthetic_warehouse(dir: &Path, cfg: &SynthConfig) -> PathBuf {
    let exports = dir.join("exports");
    synth(&exports, cfg, false).unwrap();
    let wh = dir.join("wh");
    let opts = IngestOptions {
        complete_through: Some(cfg.last_day()),
        max_date: cfg.last_day(),
        ..IngestOptions::default()
    };
    let report = ingest(&wh, &[exports], &opts).unwrap();
    for f in &report.files {
        assert!(
            matches!(
                f.outcome,
                FileOutcome::Loaded {
                    rows_rejected: 0,
                    ..
                }
            ),
            "{report}"
        );
    }
    wh
}

/// The discrete Gaussian pmf of scale σ, as (value, probability), trimmed where the
/// probability is below 1e-16 of the mode (the mass left out is below 1e-14).
fn discrete_gaussian(sigma: f64) -> Vec<(i64, f64)> {
    let r = (12.0 * sigma).ceil() as i64 + 10;
    let w: Vec<(i64, f64)> = (-r..=r)
        .map(|x| (x, (-((x * x) as f64) / (2.0 * sigma * sigma)).exp()))
        .collect();
    let z: f64 = w.iter().map(|(_, p)| p).sum();
    w.into_iter()
        .map(|(x, p)| (x, p / z))
        .filter(|(_, p)| *p > 1e-16)
        .collect()
}

/// The pmf of a sum of independent noises.
fn convolve(a: &[(i64, f64)], b: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out: BTreeMap<i64, f64> = BTreeMap::new();
    for &(x, p) in a {
        for &(y, q) in b {
            *out.entry(x + y).or_default() += p * q;
        }
    }
    out.into_iter().filter(|(_, p)| *p > 1e-16).collect()
}

/// Whether a published count covers `x`.
fn count_covers(c: &CountFigure, x: f64) -> bool {
    c.lower <= x && x <= c.upper
}

/// Whether a published rate covers `t`; `None` when it says "insufficient data".
fn rate_covers(r: &RateFigure, t: f64) -> Option<bool> {
    (!r.insufficient_data).then(|| r.lower.unwrap() <= t && t <= r.upper.unwrap())
}

/// A rate's figure with its interval shrunk by `shrink` (1: as published; 0.5: the
/// negative control), from the noisy counts, through the publication's own code.
fn rate_figure(num: Noisy, den: Noisy, shrink: f64) -> RateFigure {
    let e = rate(num, den).map(|e| RateEstimate {
        raw: e.raw,
        variance: e.variance * shrink * shrink,
    });
    RateFigure::new("", "", "", e, true)
}

/// What one quantity's interval is checked against.
#[derive(Debug)]
struct Quantity {
    /// `P001 identified`, `statewide=statewide reach_7d (n = .., d = ..)`, ...
    label: String,
    /// Index of the unit (program, then group) in a draw's figures.
    unit: usize,
    kind: QuantityKind,
    /// The exact value (count) or exact ratio (rate).
    target: f64,
    /// Exact coverage of the published interval and of the control's, from the pmfs.
    exact: f64,
    exact_half: f64,
}

#[derive(Debug, Clone, Copy)]
enum QuantityKind {
    /// Index into the unit's counts, and the half-width of its interval.
    Count { i: usize, half: f64 },
    /// Index into the unit's rates, and the counts of its numerator and denominator.
    Rate { i: usize, num: usize, den: usize },
}

/// How often one quantity's interval covered its target over the draws.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    covered: usize,
    covered_half: usize,
    drawn: usize,
    insufficient: usize,
}

/// A program or a group of programs: its programs, counts and rates as published.
type Unit = (Vec<String>, Vec<CountFigure>, Vec<RateFigure>);

/// Everything a draw needs: the bounded vector is fixed, only the noise is drawn.
struct Drawer<'a> {
    prepared: &'a PreparedRelease,
    bounded: &'a [i64],
    catalog: &'a Catalog,
    programs: &'a [ProgramInfo],
    completeness: &'a [Completeness],
}

impl Drawer<'_> {
    /// One fresh noise draw, through `build_result` and `figures` as `publish` does: each
    /// program, then each group, in the publication's order.
    fn draw(&self, public: &mut PublicRelease) -> Vec<Unit> {
        let noisy = self.prepared.noise.draw(self.bounded).unwrap();
        public.result = build_result(self.prepared, &noisy).unwrap();
        let (per_program, groups) =
            figures(self.catalog, public, self.programs, self.completeness).unwrap();
        per_program
            .into_iter()
            .map(|p| (vec![p.program.program_id], p.counts, p.rates))
            .chain(groups.into_iter().map(|g| (g.programs, g.counts, g.rates)))
            .collect()
    }
}

/// Adds one draw's hits to the tallies: the published interval, and the control's (same
/// centre, half the half-width).
fn tally(units: &[Unit], quantities: &[Quantity], var: f64, tallies: &mut [Tally]) {
    for (q, t) in quantities.iter().zip(tallies.iter_mut()) {
        let (ids, counts, rates) = &units[q.unit];
        match q.kind {
            QuantityKind::Count { i, half } => {
                let c = &counts[i];
                t.drawn += 1;
                t.covered += count_covers(c, q.target) as usize;
                let control = CountFigure::new("", c.raw, half / 2.0, true);
                t.covered_half += count_covers(&control, q.target) as usize;
            }
            QuantityKind::Rate { i, num, den } => match rate_covers(&rates[i], q.target) {
                Some(hit) => {
                    t.drawn += 1;
                    t.covered += hit as usize;
                    let noisy = |k: usize| Noisy {
                        raw: counts[k].raw,
                        variance: ids.len() as f64 * var,
                    };
                    let control = rate_figure(noisy(num), noisy(den), 0.5);
                    t.covered_half += (rate_covers(&control, q.target) == Some(true)) as usize;
                }
                // The control has the same denominator: insufficient too.
                None => t.insufficient += 1,
            },
        }
    }
}

/// The quantities that fail the check: p̂ < TARGET − TOL.
fn failures(qs: &[Quantity], tallies: &[Tally], half: bool) -> Vec<String> {
    qs.iter()
        .zip(tallies)
        .filter_map(|(q, t)| {
            let (hits, exact) = if half {
                (t.covered_half, q.exact_half)
            } else {
                (t.covered, q.exact)
            };
            let p = hits as f64 / t.drawn as f64;
            (p < TARGET - TOL).then(|| format!("{}: {p:.4} (exact {exact:.4})", q.label))
        })
        .collect()
}

#[test]
fn published_intervals_cover_the_exact_values_and_half_width_intervals_do_not() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let wh = synthetic_warehouse(tmp.path(), &cfg);
    let quarter = Quarter::new(2024, 2).unwrap();
    let catalog = Catalog::standard().unwrap();
    let spec = standard_spec(&catalog, quarter, StandardNoise::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let (exact_values, prepared, bounded, rules, program_info) = rt.block_on(async {
        let ctx = privacy_session(&wh).await;
        let exact_values = exact(&ctx, &catalog, quarter).await.unwrap();
        // Bound once, as `release` does after its debit (nothing is debited here).
        let p = prepare(
            &ctx,
            &spec,
            &manifest.version().to_string(),
            &PrivacyConfig::default(),
        )
        .await
        .unwrap();
        let rules = Arc::new(BoundingRules {
            k: p.spec.k as usize,
            cells: p.spec.cells.clone(),
            statistics: p.spec.statistics.clone(),
            exclusive: p.spec.exclusive.clone(),
            key: CellChoiceKey(*b"coverage testkey"),
        });
        let rows = person_rows(&ctx, &p.spec, &p.queries).unwrap();
        let b = bound(rows, rules.clone()).await.unwrap();
        let info = programs(&ctx).await.unwrap();
        (exact_values, p, b, rules, info)
    });
    let m = prepared.spec.statistics.len();
    let stat_index = |name: &str| {
        prepared
            .spec
            .statistics
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no statistic {name}"))
    };
    // Exact and bounded values per (program, statistic index).
    let mut exact_of: BTreeMap<(String, usize), i64> = BTreeMap::new();
    for v in &exact_values {
        exact_of.insert((v.program_id.clone(), stat_index(&v.statistic)), v.value);
    }
    let mut bounded_of: BTreeMap<(String, usize), i64> = BTreeMap::new();
    for c in 0..prepared.spec.n_cells() {
        let keys = rules.cell_values(c);
        assert_eq!(keys[1], quarter.to_string());
        for j in 0..m {
            bounded_of.insert((keys[0].to_string(), j), bounded.values[c * m + j]);
        }
    }
    assert_eq!(exact_of.len(), bounded_of.len());
    assert_eq!(exact_of.len(), program_info.len() * m);
    // Bounding (k = 2 cells per person) may drop a survivor in three programs' cohorts: the
    // intervals are then centred on a value below the exact one, and the exact coverages
    // below take that into account.
    let differing: Vec<_> = exact_of
        .iter()
        .filter(|(k, v)| bounded_of[*k] != **v)
        .map(|((p, j), v)| {
            format!(
                "{p} {}: exact {v}, bounded {}",
                prepared.spec.statistics[*j].name,
                bounded_of[&(p.clone(), *j)]
            )
        })
        .collect();
    eprintln!(
        "coverage: {} programs, {quarter}: {} of {} exact counts differ from the bounded ones {differing:?}",
        program_info.len(),
        differing.len(),
        exact_of.len(),
    );

    let completeness = completeness(&catalog, &manifest, quarter);
    let drawer = Drawer {
        prepared: &prepared,
        bounded: &bounded.values,
        catalog: &catalog,
        programs: &program_info,
        completeness: &completeness,
    };
    let mut public = PublicRelease {
        id: 0,
        name: prepared.spec.name.clone(),
        dataset_version: prepared.dataset_version.clone(),
        published_at: String::new(),
        approver: "utility test".into(),
        measure: "zCDP".into(),
        query_hashes: Vec::new(),
        spec: serde_json::Value::Null,
        d_in: serde_json::Value::Null,
        d_out: serde_json::Value::Null,
        result: build_result(&prepared, &bounded.values).unwrap(),
    };
    let unit_labels: Vec<String> = {
        let (_, groups) = figures(&catalog, &public, &program_info, &completeness).unwrap();
        program_info
            .iter()
            .map(|p| p.program_id.clone())
            .chain(groups.iter().map(|g| format!("{}={}", g.by, g.group)))
            .collect()
    };

    // The quantities, from the layout of one draw (not counted in the tallies).
    let layout = drawer.draw(&mut public);
    let sigma = prepared.noise.scale_of(0);
    for j in 0..m {
        assert_eq!(
            prepared.noise.scale_of(j),
            sigma,
            "one σ for every statistic"
        );
    }
    let var = noise_variance(prepared.noise.kind, sigma);
    let h1 = prepared.noise.half_width(0).unwrap() as f64;
    // The noise pmf of a sum of g programs' counts, g = 1, 2, ...
    let mut pmfs: Vec<Vec<(i64, f64)>> = vec![discrete_gaussian(sigma)];
    let mut quantities: Vec<Quantity> = Vec::new();
    let mut small_denominators = 0;
    for (u, (ids, counts, rates)) in layout.iter().enumerate() {
        let g = ids.len();
        while pmfs.len() < g {
            let next = convolve(pmfs.last().unwrap(), &pmfs[0]);
            pmfs.push(next);
        }
        let pmf = &pmfs[g - 1];
        let sum_of = |map: &BTreeMap<(String, usize), i64>, j: usize| -> i64 {
            ids.iter().map(|p| map[&(p.clone(), j)]).sum()
        };
        // One program: OpenDP's half-width; a sum: the normal approximation rounded up to a
        // whole number (as `figures`).
        let half = if g == 1 {
            h1
        } else {
            (Z95 * (g as f64 * var).sqrt()).ceil()
        };
        let count_pos = |name: &str| counts.iter().position(|c| c.statistic == name).unwrap();
        for (i, c) in counts.iter().enumerate() {
            // The interval is the one this test thinks it is: clamped at zero, never
            // narrower than the half-width (`shown_interval`).
            assert!(
                (c.upper - (c.raw + half).max(half)).abs() < 1e-9,
                "{c:?} {half}"
            );
            let j = stat_index(&c.statistic);
            let (x, b) = (sum_of(&exact_of, j), sum_of(&bounded_of, j));
            let exact_cov = |shrink: f64| -> f64 {
                pmf.iter()
                    .filter(|&&(z, _)| {
                        let f = CountFigure::new("", (b + z) as f64, half * shrink, true);
                        count_covers(&f, x as f64)
                    })
                    .map(|(_, p)| p)
                    .sum()
            };
            quantities.push(Quantity {
                label: format!("{} {} (x = {x})", unit_labels[u], c.statistic),
                unit: u,
                kind: QuantityKind::Count { i, half },
                target: x as f64,
                exact: exact_cov(1.0),
                exact_half: exact_cov(0.5),
            });
        }
        for (i, r) in rates.iter().enumerate() {
            let (jn, jd) = (stat_index(&r.numerator), stat_index(&r.denominator));
            let (xn, xd) = (sum_of(&exact_of, jn), sum_of(&exact_of, jd));
            if xd < MIN_DEN {
                small_denominators += 1;
                continue;
            }
            let (bn, bd) = (sum_of(&bounded_of, jn), sum_of(&bounded_of, jd));
            let t = xn as f64 / xd as f64;
            // As publish: the larger of the noise variance and (h/1.96)² (`rate_variance`).
            let v = rate_variance(g, g as f64 * var, h1);
            let (num, den) = (count_pos(&r.numerator), count_pos(&r.denominator));
            // The published rate is the one this test recomputes for the control.
            let noisy = |k: usize| Noisy {
                raw: counts[k].raw,
                variance: v,
            };
            let again = rate_figure(noisy(num), noisy(den), 1.0);
            assert_eq!((again.lower, again.upper), (r.lower, r.upper), "{r:?}");
            // Exact coverage given sufficient data: over both noises, through `rate` and
            // `RateFigure`.
            let exact_cov = |shrink: f64| -> f64 {
                let (mut hit, mut sufficient) = (0.0, 0.0);
                for &(zd, pd) in pmf {
                    let den = Noisy {
                        raw: (bd + zd) as f64,
                        variance: v,
                    };
                    for &(zn, pn) in pmf {
                        let num = Noisy {
                            raw: (bn + zn) as f64,
                            variance: v,
                        };
                        match rate_covers(&rate_figure(num, den, shrink), t) {
                            Some(true) => {
                                hit += pn * pd;
                                sufficient += pn * pd;
                            }
                            Some(false) => sufficient += pn * pd,
                            None => {}
                        }
                    }
                }
                hit / sufficient
            };
            quantities.push(Quantity {
                label: format!("{} {} (n = {xn}, d = {xd})", unit_labels[u], r.name),
                unit: u,
                kind: QuantityKind::Rate { i, num, den },
                target: t,
                exact: exact_cov(1.0),
                exact_half: exact_cov(0.5),
            });
        }
    }
    let n_counts = quantities
        .iter()
        .filter(|q| matches!(q.kind, QuantityKind::Count { .. }))
        .count();
    let n_rates = quantities.len() - n_counts;
    assert!(n_rates > 0 && quantities.len() <= MAX_QUANTITIES);

    // The arithmetic, on the exact coverages: false alarms and the control's power.
    let n = DRAWS as f64;
    let false_alarm: f64 = quantities
        .iter()
        .map(|q| (-2.0 * n * (q.exact - (TARGET - TOL)).max(0.0).powi(2)).exp())
        .sum();
    let control_passes = quantities
        .iter()
        .map(|q| (-2.0 * n * ((TARGET - TOL) - q.exact_half).max(0.0).powi(2)).exp())
        .fold(1.0, f64::min);
    let worst = |rates: bool| {
        quantities
            .iter()
            .filter(|q| matches!(q.kind, QuantityKind::Rate { .. }) == rates)
            .min_by(|a, b| a.exact.total_cmp(&b.exact))
            .map(|q| format!("{} = {:.4}", q.label, q.exact))
            .unwrap_or_default()
    };
    // Which quantities' exact coverage falls short of the claimed 95% (for the lead): by
    // single program or group, count or rate.
    let below_claim = |rates: bool, group: bool| {
        quantities
            .iter()
            .filter(|q| {
                matches!(q.kind, QuantityKind::Rate { .. }) == rates
                    && (layout[q.unit].0.len() > 1) == group
                    && q.exact < TARGET
            })
            .count()
    };
    let below_claim = format!(
        "program counts {}, group counts {}, program rates {}, group rates {}",
        below_claim(false, false),
        below_claim(false, true),
        below_claim(true, false),
        below_claim(true, true)
    );
    eprintln!(
        "coverage: {} quantities ({n_counts} counts, {n_rates} rates; {small_denominators} rates \
         left out, exact denominator < {MIN_DEN}); σ = {sigma}, OpenDP half-width {h1}; exact \
         coverage below {TARGET}: {below_claim}; lowest: count {}, rate {}; \
         P(false alarm) ≤ {false_alarm:.2e}; P(control passes) ≤ {control_passes:.2e}",
        quantities.len(),
        worst(false),
        worst(true),
    );
    assert!(
        false_alarm < FAIL_BUDGET,
        "the exact coverages do not support DRAWS and TOL: P(false alarm) ≤ {false_alarm:.2e}"
    );
    assert!(
        control_passes < FAIL_BUDGET,
        "the negative control would have no power: {control_passes:.2e}"
    );

    // The draws: DRAWS fresh noise vectors on the one bounded vector, on two threads.
    let setup = started.elapsed().as_secs_f64();
    let drawing = Instant::now();
    let threads = 2;
    assert_eq!(DRAWS % threads, 0);
    let parts: Vec<Vec<Tally>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut public = public.clone();
                let (drawer, quantities) = (&drawer, &quantities);
                s.spawn(move || {
                    let mut tallies = vec![Tally::default(); quantities.len()];
                    for _ in 0..DRAWS / threads {
                        tally(&drawer.draw(&mut public), quantities, var, &mut tallies);
                    }
                    tallies
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut tallies = vec![Tally::default(); quantities.len()];
    for part in parts {
        for (t, p) in tallies.iter_mut().zip(part) {
            t.covered += p.covered;
            t.covered_half += p.covered_half;
            t.drawn += p.drawn;
            t.insufficient += p.insufficient;
        }
    }
    let drawing = drawing.elapsed().as_secs_f64();
    let insufficient: usize = tallies.iter().map(|t| t.insufficient).sum();
    let share = |t: &Tally| t.covered as f64 / t.drawn as f64;
    let (lowest, lowest_tally) = quantities
        .iter()
        .zip(&tallies)
        .min_by(|a, b| share(a.1).total_cmp(&share(b.1)))
        .unwrap();
    eprintln!(
        "coverage: {DRAWS} draws in {drawing:.1} s (setup {setup:.1} s); lowest observed \
         coverage {} = {:.4} (exact {:.4}); insufficient-data rates: {insufficient}",
        lowest.label,
        share(lowest_tally),
        lowest.exact
    );
    // With d ≥ MIN_DEN a rate is insufficient only if its denominator's noise is below −78
    // (14σ): never, in practice; every quantity has DRAWS draws.
    assert_eq!(
        insufficient, 0,
        "a rate with d ≥ {MIN_DEN} was insufficient data"
    );
    assert!(tallies.iter().all(|t| t.drawn == DRAWS));
    let missed = failures(&quantities, &tallies, false);
    assert!(
        missed.is_empty(),
        "published 95% intervals cover less than {}: {missed:#?}",
        TARGET - TOL
    );
    let control = failures(&quantities, &tallies, true);
    assert!(
        !control.is_empty(),
        "the negative control (half-width intervals) passed the coverage check"
    );
    eprintln!(
        "coverage: the half-width control fails on {} of {} quantities, as it must ({:.1} s)",
        control.len(),
        quantities.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------
//
// The demo's data (SynthConfig::default(): 20 programs, 40,000 persons, 8 quarters from
// 2024Q3, exported as of 2026-06-30), published quarter by quarter with the default budget
// through `publish` itself. The statewide counts of survivors with and without police at
// the first attempt, and of those arrested 1–90 days after it, are summed over the quarters
// whose arrest windows are complete by the declared dates (2024Q3–2025Q4: the window reaches
// 120 days past the quarter): a sum of published raw noisy counts, post-processing. Each
// summed count's noise variance is (programs × quarters)·σ². The pooled difference
// (present rate − absent rate) and its interval come from the publication's own `rate` and
// `DifferenceFigure`: the interval covers the noise only.
//
// - With the generator's default effect (arrest hazard ×2 after a first attempt with police,
//   ×1.8 more where programs arrest on warrants) the interval must exclude 0.
// - With no planted effect (both multipliers 1.0: police change nothing), the estimate must
//   stay within ±5 standard errors of 0. Here the noise is not the only variation: the
//   synthetic survivors are a random sample, and the exact difference itself scatters around
//   0 by about √(p(1−p)/n₁ + p(1−p)/n₀). So this SE adds, per side, the binomial sampling
//   variance p̂(1−p̂)/n̂ (from the noisy counts) to the noise variance of the delta method.
//   Under the null the pooled estimate is approximately normal with at most this SE (the
//   sampling term uses person-cells as if independent; a person in two quarters' cohorts
//   adds a little correlation, which the ±5 SE margin absorbs), so |estimate| > 5 SE has
//   probability about 5.7e-7.
//
// For the report (never published) both tests also print the exact pooled difference, from
// the steward's exact mode. On this seed it is +0.0603 with the default effect, about 9.9
// noise SEs (0.0061) from 0, so the interval misses 0 only if the noise pulls the estimate
// down by 7.9 SE; and +0.0002 without an effect, so the null test fails only if the noise
// alone exceeds 5·0.0066 − 0.0002 ≈ 5.4 noise SE (probability about 7e-8).

/// The statistics of the police comparison.
const ARRESTED_PRESENT: &str = "arrested_90d_after_attempt_police_present";
const PRESENT: &str = "first_attempt_police_present";
const ARRESTED_ABSENT: &str = "arrested_90d_after_attempt_police_absent";
const ABSENT: &str = "first_attempt_police_absent";

/// The normal quantile of 80% power at a two-sided 5% level: z_0.8.
const Z80: f64 = 0.841_621_233_572_914_3;

/// The demo's data set, exported as of its last day, with the given effects.
fn demo_config(params: SynthParams) -> SynthConfig {
    let cfg = SynthConfig {
        as_of: Some(NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        params,
        ..SynthConfig::default()
    };
    assert_eq!(cfg.last_day(), cfg.as_of.unwrap());
    cfg
}

/// Every quarter of `cfg` published with the default budget, oldest first.
fn publish_every_quarter(dir: &Path, cfg: &SynthConfig) -> Vec<Publication> {
    let wh = synthetic_warehouse(dir, cfg);
    // A budget that is not under test: ρ = 2 per quarter, more than a publication spends
    // (its standard release spends 2·13/(2·5.5²) ≈ 0.43, plus the equity release).
    let total = 2.0 * cfg.quarters as f64;
    let mut ledger = Ledger::init(
        &wh,
        &BudgetInit {
            total_rho: total,
            total_delta: 0.0,
            horizon_days: 730,
            config: PrivacyConfig::default(),
        },
    )
    .unwrap();
    ledger.allocate(STANDARD_ALLOCATION, total).unwrap();
    drop(ledger);
    let rt = tokio::runtime::Runtime::new().unwrap();
    cfg.start
        .range(cfg.quarters)
        .into_iter()
        .map(|quarter| {
            let p = rt
                .block_on(publish(
                    &wh,
                    &PublishOptions {
                        quarter,
                        approver: "utility test".into(),
                        republish: false,
                        allow_incomplete: true,
                        noise: StandardNoise::default(),
                        equity_noise: EQUITY_NOISE,
                    },
                ))
                .unwrap();
            assert!(p.fresh);
            p.publication
        })
        .collect()
}

/// The statewide police comparison summed over the quarters with complete arrest windows.
#[derive(Debug)]
struct Pooled {
    quarters: Vec<String>,
    /// Arrested and denominator, with police present and absent.
    present: (Noisy, Noisy),
    absent: (Noisy, Noisy),
    sigma: f64,
    programs: usize,
}

impl Pooled {
    fn from(pubs: &[Publication]) -> Pooled {
        let mut quarters = Vec::new();
        let zero = Noisy {
            raw: 0.0,
            variance: 0.0,
        };
        let mut sums = [zero; 4];
        let (mut sigma, mut programs) = (f64::NAN, 0);
        for p in pubs {
            let complete = [ARRESTED_PRESENT, PRESENT, ARRESTED_ABSENT, ABSENT]
                .iter()
                .all(|s| {
                    p.completeness
                        .iter()
                        .any(|c| c.statistic == *s && c.complete)
                });
            if !complete {
                continue;
            }
            quarters.push(p.quarter.clone());
            let kind = match p.distribution.as_str() {
                "discrete_gaussian" => outreach_warehouse::privacy::NoiseKind::DiscreteGaussian,
                other => panic!("the standard publication uses {other}"),
            };
            let statewide = p.groups.iter().find(|g| g.by == "statewide").unwrap();
            (sigma, programs) = (p.scale, statewide.programs.len());
            // Each statewide count is the sum of every program's noisy count.
            let variance = programs as f64 * noise_variance(kind, p.scale);
            for (sum, name) in
                sums.iter_mut()
                    .zip([ARRESTED_PRESENT, PRESENT, ARRESTED_ABSENT, ABSENT])
            {
                let c = statewide
                    .counts
                    .iter()
                    .find(|c| c.statistic == name)
                    .unwrap();
                *sum = Noisy::sum([
                    *sum,
                    Noisy {
                        raw: c.raw,
                        variance,
                    },
                ]);
            }
        }
        Pooled {
            quarters,
            present: (sums[0], sums[1]),
            absent: (sums[2], sums[3]),
            sigma,
            programs,
        }
    }

    /// Present rate, absent rate and their difference, as the publication computes them.
    fn difference(&self) -> (RateEstimate, RateEstimate, DifferenceFigure) {
        let a = rate(self.present.0, self.present.1).expect("enough survivors with police");
        let b = rate(self.absent.0, self.absent.1).expect("enough survivors without police");
        let d = DifferenceFigure::new(
            "pooled police difference",
            "present",
            "absent",
            Some(a),
            Some(b),
            true,
        );
        (a, b, d)
    }

    /// The noise SE plus the binomial sampling variance of each side (module comment).
    fn total_se(&self) -> f64 {
        let (a, b, d) = self.difference();
        let binomial = |r: f64, n: f64| {
            let p = r.clamp(0.0, 1.0);
            p * (1.0 - p) / n
        };
        let noise = d.standard_error.unwrap();
        (noise * noise + binomial(a.raw, self.present.1.raw) + binomial(b.raw, self.absent.1.raw))
            .sqrt()
    }
}

/// The exact statewide counts of the police comparison summed over `quarters`, and the exact
/// difference of rates (steward-only exact mode: for the report, never published).
fn exact_difference(wh: &Path, quarters: &[String]) -> (i64, i64, i64, i64, f64) {
    let catalog = Catalog::standard().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sums = [0i64; 4];
    rt.block_on(async {
        let ctx = privacy_session(wh).await;
        for q in quarters {
            for v in exact(&ctx, &catalog, q.parse().unwrap()).await.unwrap() {
                let names = [ARRESTED_PRESENT, PRESENT, ARRESTED_ABSENT, ABSENT];
                if let Some(i) = names.iter().position(|s| *s == v.statistic) {
                    sums[i] += v.value;
                }
            }
        }
    });
    let [n1, d1, n0, d0] = sums;
    (
        n1,
        d1,
        n0,
        d0,
        n1 as f64 / d1 as f64 - n0 as f64 / d0 as f64,
    )
}

#[test]
fn the_pooled_police_difference_detects_the_planted_effect_at_the_default_budget() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(SynthParams::default());
    assert!(cfg.params.police_arrest_multiplier > 1.0);
    let pubs = publish_every_quarter(tmp.path(), &cfg);
    let pooled = Pooled::from(&pubs);
    assert_eq!(
        pooled.quarters,
        ["2024Q3", "2024Q4", "2025Q1", "2025Q2", "2025Q3", "2025Q4"]
    );
    let (a, b, d) = pooled.difference();
    let (est, se) = (d.raw.unwrap(), d.standard_error.unwrap());
    eprintln!(
        "detection (default effect, σ = {}, k = 2, {} programs): pooled over {} quarters: \
         present {:.4} (n̂ = {:.0}), absent {:.4} (n̂ = {:.0}), difference {est:+.4}, noise SE \
         {se:.4}, 95% interval [{:.4}, {:.4}], z = {:.1}; total SE with sampling {:.4}",
        pooled.sigma,
        pooled.programs,
        pooled.quarters.len(),
        a.raw,
        pooled.present.1.raw,
        b.raw,
        pooled.absent.1.raw,
        d.lower.unwrap(),
        d.upper.unwrap(),
        est / se,
        pooled.total_se(),
    );
    let published_quarters: Vec<String> = pubs
        .iter()
        .filter(|p| pooled.quarters.contains(&p.quarter))
        .map(|p| {
            let statewide = p.groups.iter().find(|g| g.by == "statewide").unwrap();
            let f = statewide
                .differences
                .iter()
                .find(|d| d.name == "arrest_after_attempt_police_difference")
                .unwrap();
            let excludes = f.lower.unwrap() > 0.0;
            format!(
                "{} {:+.4} ± {:.4}{}",
                p.quarter,
                f.raw.unwrap(),
                Z95 * f.standard_error.unwrap(),
                if excludes { " (excludes 0)" } else { "" }
            )
        })
        .collect();
    eprintln!("detection: each quarter's published statewide difference: {published_quarters:?}");
    assert!(
        d.lower.unwrap() > 0.0,
        "the pooled interval [{:?}, {:?}] does not exclude 0",
        d.lower,
        d.upper
    );

    // What detection needs at the default budget, for the README: from the exact pooled
    // counts (steward-only exact mode; fixed by the seed, so the figures are the same every
    // run), never from the noisy ones.
    let (en1, ed1, en0, ed0, exact_d) = exact_difference(&tmp.path().join("wh"), &pooled.quarters);
    // Each pooled count's noise, in noise SDs (a check of the sums).
    let z = |noisy: Noisy, exact: i64| (noisy.raw - exact as f64) / noisy.variance.sqrt();
    eprintln!(
        "detection: exact pooled counts {en1}/{ed1} (present) vs {en0}/{ed0} (absent), exact \
         difference {exact_d:+.4}; published estimate − exact = {:+.2} noise SE; pooled counts' \
         noise in SDs: {:+.2} {:+.2} {:+.2} {:+.2}",
        (est - exact_d) / se,
        z(pooled.present.0, en1),
        z(pooled.present.1, ed1),
        z(pooled.absent.0, en0),
        z(pooled.absent.1, ed0),
    );
    let (p1, p0) = (en1 as f64 / ed1 as f64, en0 as f64 / ed0 as f64);
    let (sigma, programs) = (pooled.sigma, pooled.programs as f64);
    let q = pooled.quarters.len() as f64;
    // One quarter statewide: every count a sum of `programs` noisy counts; the delta method
    // at the exact rates and the average quarter's denominators.
    let (d1, d0) = (ed1 as f64 / q, ed0 as f64 / q);
    let se_quarter =
        sigma * (programs * ((1.0 + p1 * p1) / (d1 * d1) + (1.0 + p0 * p0) / (d0 * d0))).sqrt();
    // Pooling Q quarters divides the noise SE by √Q (variances and denominators grow with Q).
    let quarters_for = |z: f64| ((z * se_quarter / exact_d).powi(2)).ceil();
    // A sum over `cells` program-quarters with n survivors on each side in all: noise SE
    // σ·√(cells·(2 + p₁² + p₀²))/n; with sampling, + (p₁(1−p₁) + p₀(1−p₀))/n in the
    // variance. The smallest n with d ≥ z·SE solves (d/z)² = s/n + c/n², s the sampling and
    // c the noise numerator.
    let s = p1 * (1.0 - p1) + p0 * (1.0 - p0);
    let per_side = |z: f64, cells: f64, sampling: bool| {
        let c = cells * sigma * sigma * (2.0 + p1 * p1 + p0 * p0);
        let t = (exact_d / z).powi(2);
        if sampling {
            ((s + (s * s + 4.0 * t * c).sqrt()) / (2.0 * t)).ceil()
        } else {
            (c / t).sqrt().ceil()
        }
    };
    eprintln!(
        "detection: statewide, one quarter has {d1:.0} survivors with and {d0:.0} without \
         police at the first attempt; the noise SE of the difference is {se_quarter:.4} \
         (z = {:.1} at d = {exact_d:.4}): the interval excludes 0 with 50% power from {} \
         quarter(s), with 80% power from {} quarter(s)",
        exact_d / se_quarter,
        quarters_for(Z95),
        quarters_for(Z95 + Z80),
    );
    eprintln!(
        "detection: survivors needed with and without police at the first attempt (n each), for \
         the interval to exclude 0 with 50% / 80% power at d = {exact_d:.4}, p₁ = {p1:.4}, \
         p₀ = {p0:.4}: one program-quarter: noise only n ≥ {} / {}, noise and sampling \
         n ≥ {} / {}; statewide ({programs} programs' noise), one quarter: noise only \
         n ≥ {} / {}, with sampling n ≥ {} / {}",
        per_side(Z95, 1.0, false),
        per_side(Z95 + Z80, 1.0, false),
        per_side(Z95, 1.0, true),
        per_side(Z95 + Z80, 1.0, true),
        per_side(Z95, programs, false),
        per_side(Z95 + Z80, programs, false),
        per_side(Z95, programs, true),
        per_side(Z95 + Z80, programs, true),
    );
    eprintln!(
        "detection (default effect): {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn without_a_planted_effect_the_pooled_difference_stays_within_five_standard_errors() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = demo_config(SynthParams {
        police_arrest_multiplier: 1.0,
        warrant_arrest_multiplier: 1.0,
        ..SynthParams::default()
    });
    let pubs = publish_every_quarter(tmp.path(), &cfg);
    let pooled = Pooled::from(&pubs);
    assert_eq!(pooled.quarters.len(), 6, "{:?}", pooled.quarters);
    let (a, b, d) = pooled.difference();
    let est = d.raw.unwrap();
    let se = pooled.total_se();
    let (en1, ed1, en0, ed0, exact_d) = exact_difference(&tmp.path().join("wh"), &pooled.quarters);
    eprintln!(
        "detection (no effect): present {:.4}, absent {:.4}, difference {est:+.4}, noise SE \
         {:.4}, total SE {se:.4}: {:+.2} SE; exact pooled counts {en1}/{ed1} vs {en0}/{ed0}, \
         exact difference {exact_d:+.4} ({:+.2} total SE); {:.1} s",
        a.raw,
        b.raw,
        d.standard_error.unwrap(),
        est / se,
        exact_d / se,
        started.elapsed().as_secs_f64()
    );
    assert!(
        est.abs() <= 5.0 * se,
        "no effect was planted, yet the pooled difference is {est:+.4}, {:+.1} SE",
        est / se
    );
}
