//! The DP inequality end to end, with its negative control. Two warehouses that differ by one
//! survivor are bounded once each; only the noise is drawn again, many times. For events
//! that are likelihood-ratio regions of the mechanism, P(A) ≤ e^ε·P(A′) + δ must hold at
//! ε ≤ 1, and the very same check must catch a mechanism with half the noise.
//!
//! **Why these events and parameters.** Removing one person moves the exact vector by
//! 1 on a set C of coordinates. For discrete Gaussian noise with scale σ the log-likelihood
//! ratio of D′ to D at an output y is (2·T − |C|) / (2σ²) with T = Σ_{i∈C} (y_i − x_i)
//! (x the exact vector of D): it depends on y only through T, so the events {T ≥ t} are the
//! most powerful ones (Neyman–Pearson), at every ε. For discrete Laplace noise with scale b
//! it is (|C| − 2·T) / b with T = #{i ∈ C : y_i ≤ x_i}: again a function of T alone. The
//! check reads only T, on the changed coordinates.
//!
//! Small-δ statements say little about events of moderate probability: at ρ = 0.5 and
//! δ = 1e-7, ε ≈ 5.7 and e^ε ≈ 290, so a half-scale mechanism passes every such event; and with
//! ρ chosen so that ε = 1 at δ = 1e-3 (ρ ≈ 0.06), half-scale Gaussian noise exceeds that
//! bound by about 0.035 at most, far below any affordable sampling tolerance (the DP bound
//! at small δ is loose for likely events). So the Gaussian test checks OpenDP's profile of
//! ρ-zCDP (ρ-zCDP gives (ε, δ(ε))-DP for every ε at once, `make_zCDP_to_approxDP`) at
//! ε ∈ {0, ¼, ½, ¾, 1}: e^ε ≤ e, with the δ each ε implies (δ(1) ≈ 0.247 at ρ = 0.5; at that
//! δ, ε is 1). The Laplace test is pure DP, ε = 1 and δ = 0, on a release where the survivor
//! touches only two cells, so that the event {T = |C|} meets the bound with equality.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use opendp::combinators::ConcentratedMeasure;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use outreach_warehouse::ledger::PrivacyConfig;
use outreach_warehouse::privacy::bounding::{BoundingRules, CellChoiceKey};
use outreach_warehouse::privacy::mechanism::epsilon_at;
use outreach_warehouse::privacy::release::{PreparedRelease, bound, person_rows, prepare};
use outreach_warehouse::privacy::{NoiseKind, ReleaseSpec};

use super::release::engagement_spec;
use crate::common::{
    ATTEMPTS_HEADER, EVENTS_HEADER, csv, event, ingest_files, privacy_session, privacy_warehouse,
    write,
};

// False alarms. Each estimate P̂ is a mean of N independent indicators, so by Hoeffding
// P(|P̂ − P| > TOL) ≤ 2·exp(−2·N·TOL²). With N = 20,000 and TOL = √(ln(2/1e-8)/(2·20,000))
// = √(19.114/40,000) = 0.02186, rounded up to 0.0219: at most 1e-8 per estimate. A run
// estimates two probabilities (under D and D′) per event, and a complement's estimate is
// 1 − P̂, off by exactly as much; the Gaussian test has 10 events (20 estimates), the Laplace
// test 2 (4 estimates). By the union bound every estimate of a run is within TOL of its
// probability except with probability ≤ 20·1e-8 = 2e-7 < 1e-6. When they all are, and the
// true probabilities satisfy P(A) ≤ e^ε·P(A′) + δ, then
// P̂(A) ≤ P(A) + TOL ≤ e^ε·P(A′) + δ + TOL ≤ e^ε·(P̂(A′) + TOL) + δ + TOL,
// which is what `dp_inequality` checks: a correct mechanism fails with probability < 1e-6.
//
// The negative control's power: if the true half-scale probabilities violate the check with
// twice the tolerance, P(A) > e^ε·(P(A′) + 2·TOL) + δ + 2·TOL, then with P̂(A) ≥ P(A) − TOL
// and P̂(A′) ≤ P(A′) + TOL the estimates violate it with TOL. So the control passes only if
// one of the two estimates of that event is off by more than TOL: probability ≤ 2·1e-8, and
// the control fails with probability ≥ 1 − 2e-8 > 1 − 1e-6. Each test checks this premise
// on the exact half-scale probabilities (computed from the pmfs below) before drawing. So a
// test fails with a correct engine with probability at most 2e-7 + 2e-8 < 1e-6.
// Margins, by hand: Gaussian, event T ≥ 7 with D′ against D at ε = 1, δ(1) = 0.2468:
// P = 0.711 against e·(0.074 + 0.044) + 0.247 + 0.044 = 0.610; Laplace, T = 2 with D against
// D′ at ε = 1: P = 0.534 against e·(0.072 + 0.044) + 0.044 = 0.359.
const N: usize = 20_000;
const TOL: f64 = 0.0219;

/// The ε at which the Gaussian test checks OpenDP's privacy profile.
const EPSILONS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// Writes one survivor with many records in several programs and quarters.
fn extra_survivor(dir: &Path) -> Vec<PathBuf> {
    let mut events = Vec::new();
    let mut attempts = Vec::new();
    for (i, (program, date)) in [
        ("P001", "2025-01-03"),
        ("P001", "2025-01-20"),
        ("P002", "2025-02-11"),
        ("P002", "2025-04-02"),
        ("P003", "2025-05-09"),
        ("P001", "2025-06-01"),
    ]
    .iter()
    .enumerate()
    {
        events.push(event(&format!("E9{i}"), "pk99", program, date));
        attempts.push(format!(
            "A9{i},pk99,{program},E9{i},{date},home_visit,engaged_survivor,{},false,false,true,false",
            i % 2 == 0
        ));
    }
    vec![
        write(dir, "overdose_events.csv", csv(EVENTS_HEADER, &events)),
        write(
            dir,
            "outreach_attempts.csv",
            csv(ATTEMPTS_HEADER, &attempts),
        ),
    ]
}

/// Bounds the release once, on a warehouse: the exact bounded vector and the prepared release.
fn bounded(wh: &Path, spec: &ReleaseSpec, noise: NoiseKind) -> (Vec<i64>, PreparedRelease) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = privacy_session(wh).await;
        let config = PrivacyConfig {
            noise,
            ..PrivacyConfig::default()
        };
        let p = prepare(&ctx, spec, "v", &config).await.unwrap();
        let rows = person_rows(&ctx, &p.spec, &p.queries).unwrap();
        let rules = Arc::new(BoundingRules {
            k: p.spec.k as usize,
            cells: p.spec.cells.clone(),
            statistics: p.spec.statistics.clone(),
            exclusive: p.spec.exclusive.clone(),
            key: CellChoiceKey(*b"a fixed test key"),
        });
        let b = bound(rows, rules).await.unwrap();
        (b.values, p)
    })
}

/// The two neighbours, D (the fixture warehouse) and D′ (the same plus pk99: 6 events and 6
/// attempts in 3 programs and 2 quarters), each bounded once: their exact vectors and the
/// prepared release, whose noise may not depend on the data.
fn neighbours(spec: &ReleaseSpec, noise: NoiseKind) -> (Vec<i64>, Vec<i64>, PreparedRelease) {
    let tmp = tempfile::tempdir().unwrap();
    let a = privacy_warehouse(&tmp.path().join("a"));
    let b_dir = tmp.path().join("b");
    let b = privacy_warehouse(&b_dir);
    let extra = b_dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    ingest_files(&b, &extra_survivor(&extra));
    let (va, pa) = bounded(&a, spec, noise);
    let (vb, pb) = bounded(&b, spec, noise);
    assert_eq!(pa.noise, pb.noise, "the noise may not depend on the data");
    assert_eq!(pa.loss, pb.loss, "the loss may not depend on the data");
    (va, vb, pa)
}

/// Attempts per program and quarter, each person in at most `k` cells.
fn attempts_spec(k: u32, rho: f64) -> ReleaseSpec {
    toml::from_str(&format!(
        r#"
name = "persons with an attempt"
k = {k}
rho = {rho}
allocation = "std"

[[queries]]
sql = "SELECT person_key, program_id, quarter_of(attempt_date) AS quarter, true AS attempted FROM outreach_attempts"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "2025Q1", to = "2025Q2" }} }}

[[statistics]]
name = "attempted"
kind = "count"
"#
    ))
    .unwrap()
}

/// The statistic T whose upper sets {T ≥ t} are the events (module docs).
#[derive(Debug, Clone, Copy)]
enum Region {
    /// Σ (y_i − x_i) over the changed coordinates: Gaussian noise.
    Sum,
    /// #{changed coordinates with y_i ≤ x_i}: Laplace noise.
    AtOrBelow,
}

impl Region {
    fn of(kind: NoiseKind) -> Region {
        match kind {
            NoiseKind::DiscreteGaussian => Region::Sum,
            NoiseKind::DiscreteLaplace => Region::AtOrBelow,
        }
    }

    /// T of a noisy vector `y` on the changed coordinates, `x` the exact values of D there.
    fn statistic(self, y: &[i64], x: &[i64]) -> i64 {
        match self {
            Region::Sum => y.iter().zip(x).map(|(y, x)| y - x).sum(),
            Region::AtOrBelow => y.iter().zip(x).filter(|&(y, x)| y <= x).count() as i64,
        }
    }
}

/// One event {T ≥ t}: its probability, or its estimate, under D and under D′.
#[derive(Debug, Clone, Copy)]
struct Event {
    t: i64,
    under_d: f64,
    under_d_prime: f64,
}

/// Whether the DP inequality holds, with sampling tolerance `tol`, for every event and its
/// complement, in both directions (D against D′ and D′ against D) and at every (ε, δ) of
/// `profile`: P(A) ≤ e^ε·(P(A′) + tol) + δ + tol. `Err` names the first violation. The one
/// check of the positive tests and of their negative controls.
fn dp_inequality(events: &[Event], profile: &[(f64, f64)], tol: f64) -> Result<(), String> {
    for e in events {
        let (d, d_prime) = (e.under_d, e.under_d_prime);
        for (what, p, q) in [
            ("T ≥ t, D against D′", d, d_prime),
            ("T ≥ t, D′ against D", d_prime, d),
            ("T < t, D against D′", 1.0 - d, 1.0 - d_prime),
            ("T < t, D′ against D", 1.0 - d_prime, 1.0 - d),
        ] {
            for &(epsilon, delta) in profile {
                let bound = epsilon.exp() * (q + tol) + delta + tol;
                if p > bound {
                    return Err(format!(
                        "{what}, t = {}: P(A) = {p:.4} > e^{epsilon}·(P(A′) = {q:.4} + {tol}) + δ = {delta:.4} + {tol} = {bound:.4}",
                        e.t
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The events' shares among draws of D and of D′ (each draw: the noisy changed coordinates).
fn estimate(
    region: Region,
    thresholds: &[i64],
    x: &[i64],
    draws_d: &[Vec<i64>],
    draws_d_prime: &[Vec<i64>],
) -> Vec<Event> {
    let stats =
        |draws: &[Vec<i64>]| -> Vec<i64> { draws.iter().map(|y| region.statistic(y, x)).collect() };
    let (td, tp) = (stats(draws_d), stats(draws_d_prime));
    let share =
        |ts: &[i64], t: i64| ts.iter().filter(|&&s| s >= t).count() as f64 / ts.len() as f64;
    thresholds
        .iter()
        .map(|&t| Event {
            t,
            under_d: share(&td, t),
            under_d_prime: share(&tp, t),
        })
        .collect()
}

/// The events' exact probabilities, from the pmfs of T under D and D′.
fn exact_events(
    thresholds: &[i64],
    pmf_d: &[(i64, f64)],
    pmf_d_prime: &[(i64, f64)],
) -> Vec<Event> {
    let tail = |pmf: &[(i64, f64)], t: i64| -> f64 {
        pmf.iter().filter(|&&(v, _)| v >= t).map(|&(_, p)| p).sum()
    };
    thresholds
        .iter()
        .map(|&t| Event {
            t,
            under_d: tail(pmf_d, t),
            under_d_prime: tail(pmf_d_prime, t),
        })
        .collect()
}

/// A probability mass function: (value, probability) pairs.
type Pmf = Vec<(i64, f64)>;

/// The pmf of T under D and under D′ when each of `n` changed coordinates moves by +1 and
/// the noise has the given kind and scale.
fn exact_pmfs(kind: NoiseKind, scale: f64, n: usize) -> (Pmf, Pmf) {
    match kind {
        NoiseKind::DiscreteGaussian => {
            // T is the sum of n independent discrete Gaussians under D, shifted by n under D′.
            // Support |x| ≤ 12σ + 10: the mass left out is below e^-72.
            let r = (12.0 * scale).ceil() as i64 + 10;
            let w: Vec<f64> = (-r..=r)
                .map(|x| (-((x * x) as f64) / (2.0 * scale * scale)).exp())
                .collect();
            let z: f64 = w.iter().sum();
            let one: Vec<f64> = w.iter().map(|p| p / z).collect();
            let mut sum = vec![1.0];
            for _ in 0..n {
                let mut next = vec![0.0; sum.len() + one.len() - 1];
                for (i, &a) in sum.iter().enumerate() {
                    for (j, &b) in one.iter().enumerate() {
                        next[i + j] += a * b;
                    }
                }
                sum = next;
            }
            let lowest = -(n as i64) * r;
            let d: Vec<(i64, f64)> = sum
                .iter()
                .enumerate()
                .map(|(i, &p)| (lowest + i as i64, p))
                .collect();
            let d_prime = d.iter().map(|&(v, p)| (v + n as i64, p)).collect();
            (d, d_prime)
        }
        NoiseKind::DiscreteLaplace => {
            // P(Z = z) ∝ q^|z| with q = e^(−1/b): P(Z ≤ 0) = 1/(1 + q) and P(Z ≤ −1) = q/(1 + q).
            // T is binomial: n coordinates, each at or below x_i with probability P(Z ≤ 0)
            // under D and P(1 + Z ≤ 0) under D′.
            let q = (-1.0 / scale).exp();
            let binomial = |p: f64| -> Vec<(i64, f64)> {
                (0..=n)
                    .map(|m| {
                        let choose = (0..m).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64);
                        let pm = choose * p.powi(m as i32) * (1.0 - p).powi((n - m) as i32);
                        (m as i64, pm)
                    })
                    .collect()
            };
            (binomial(1.0 / (1.0 + q)), binomial(q / (1.0 + q)))
        }
    }
}

/// `n` draws of OpenDP's noise at `scale` on `exact`, straight from OpenDP's constructors:
/// the negative control's mechanism.
fn opendp_draws(kind: NoiseKind, scale: f64, exact: &[i64], n: usize) -> Vec<Vec<i64>> {
    let domain = VectorDomain::new(AtomDomain::<i64>::default());
    let exact = exact.to_vec();
    match kind {
        NoiseKind::DiscreteGaussian => {
            let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                domain,
                L2Distance::<f64>::default(),
                scale,
                None,
            )
            .unwrap();
            (0..n).map(|_| m.invoke(&exact).unwrap()).collect()
        }
        NoiseKind::DiscreteLaplace => {
            let m = make_laplace::<_, _, MaxDivergence>(
                domain,
                L1Distance::<i64>::default(),
                scale,
                None,
            )
            .unwrap();
            (0..n).map(|_| m.invoke(&exact).unwrap()).collect()
        }
    }
}

/// The (ε, δ) pairs the test checks: OpenDP's privacy profile of the debited ρ at ε ≤ 1 for
/// zCDP, or the debited ε with δ = 0 for pure DP.
fn profile(p: &PreparedRelease) -> Vec<(f64, f64)> {
    match p.noise.kind {
        NoiseKind::DiscreteGaussian => {
            let curve =
                <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(p.loss.rho()).unwrap();
            EPSILONS
                .iter()
                .map(|&e| (e, curve.delta(e).unwrap()))
                .collect()
        }
        NoiseKind::DiscreteLaplace => vec![(p.loss.epsilon.expect("pure DP has an ε"), 0.0)],
    }
}

/// The whole test for one kind of noise: the engine's noise must pass the check, noise at half
/// its scale must fail it, and the exact probabilities show that both outcomes are all but
/// certain. `scale` and `changed` are the noise scale and the number of coordinates the
/// survivor changes, by hand.
fn dp_inequality_end_to_end(kind: NoiseKind, spec: &ReleaseSpec, scale: f64, changed: usize) {
    assert!(
        2.0 * (-2.0 * N as f64 * TOL * TOL).exp() <= 1e-8,
        "TOL is too small for N"
    );
    let (va, vb, p) = neighbours(spec, kind);
    assert_eq!(p.noise.kind, kind);
    let c: Vec<usize> = (0..va.len()).filter(|&i| va[i] != vb[i]).collect();
    // The survivor is a worst case: each of `changed` coordinates moves by exactly 1, so the
    // distance between the neighbours is the declared sensitivity.
    assert_eq!(c.len(), changed, "changed coordinates: {c:?}");
    for &i in &c {
        assert_eq!(vb[i] - va[i], 1, "coordinate {i}");
    }
    for j in 0..p.noise.m {
        assert!(
            (p.noise.scale_of(j) - scale).abs() < 1e-12,
            "statistic {j}: scale {} instead of {scale}",
            p.noise.scale_of(j)
        );
    }
    let profile = profile(&p);
    for &(epsilon, delta) in &profile {
        assert!(
            epsilon <= 1.0 + 1e-9 && (0.0..1.0).contains(&delta),
            "({epsilon}, {delta})"
        );
    }
    if kind == NoiseKind::DiscreteGaussian {
        // At the largest δ checked, the engine's own conversion shows ε = 1.
        let (_, delta) = profile[profile.len() - 1];
        let e = epsilon_at(p.loss.rho(), delta).unwrap();
        assert!((e - 1.0).abs() < 1e-6, "ε = {e} at δ = {delta}");
    }
    let region = Region::of(kind);
    let thresholds: Vec<i64> = match region {
        Region::Sum => (0..=changed as i64).collect(),
        Region::AtOrBelow => (1..=changed as i64).collect(),
    };
    assert!(
        2 * thresholds.len() <= 20,
        "more estimates than the union bound allows for"
    );
    let on_c = |v: &[i64]| -> Vec<i64> { c.iter().map(|&i| v[i]).collect() };
    let (xa, xb) = (on_c(&va), on_c(&vb));

    // The exact probabilities: the claimed scale meets the inequality (no tolerance but
    // rounding), and half the scale violates it by more than twice the tolerance.
    let (d, d_prime) = exact_pmfs(kind, scale, changed);
    if let Err(v) = dp_inequality(&exact_events(&thresholds, &d, &d_prime), &profile, 1e-12) {
        panic!("the exact probabilities at the claimed scale violate the inequality: {v}");
    }
    let (d, d_prime) = exact_pmfs(kind, scale / 2.0, changed);
    let half_exact = exact_events(&thresholds, &d, &d_prime);
    assert!(
        dp_inequality(&half_exact, &profile, 2.0 * TOL).is_err(),
        "the control would have no power: {half_exact:?}"
    );

    // The engine's noise, end to end: N draws on each bounded vector.
    let draws =
        |v: &[i64]| -> Vec<Vec<i64>> { (0..N).map(|_| on_c(&p.noise.draw(v).unwrap())).collect() };
    let (da, db) = std::thread::scope(|s| {
        let a = s.spawn(|| draws(&va));
        let b = draws(&vb);
        (a.join().unwrap(), b)
    });
    let events = estimate(region, &thresholds, &xa, &da, &db);
    if let Err(v) = dp_inequality(&events, &profile, TOL) {
        panic!("one survivor changes the output by more than the loss debited: {v}\n{events:?}");
    }

    // The negative control: OpenDP's noise at half the scale, on the same bounded values (the
    // changed coordinates: the others' noise is independent of them and never read), through
    // the same check. It must report a violation.
    let (ha, hb) = std::thread::scope(|s| {
        let a = s.spawn(|| opendp_draws(kind, scale / 2.0, &xa, N));
        let b = opendp_draws(kind, scale / 2.0, &xb, N);
        (a.join().unwrap(), b)
    });
    let events = estimate(region, &thresholds, &xa, &ha, &hb);
    assert!(
        dp_inequality(&events, &profile, TOL).is_err(),
        "the half-scale control passed the check: {events:?}"
    );
}

#[test]
fn one_survivor_changes_the_output_distribution_by_at_most_epsilon_gaussian() {
    // k = 3; attempted, engaged and the police group are three blocks with B = 1, so
    // L2 = √(3·3) = 3 and ρ = 0.5 gives σ = 3 / √(2·0.5) = 3. The survivor keeps 3 cells and
    // moves 3 coordinates in each (attempted, engaged, one side of the group): 9 coordinates
    // by 1, an L2 distance of 3, the declared sensitivity.
    dp_inequality_end_to_end(NoiseKind::DiscreteGaussian, &engagement_spec(0.5), 3.0, 9);
}

#[test]
fn one_survivor_changes_the_output_distribution_by_at_most_epsilon_laplace() {
    // k = 2, one count: L1 = 2, and ρ = 0.5 is ε = √(2·0.5) = 1, so b = 2 / 1 = 2. The survivor
    // keeps 2 of their 5 cells: 2 coordinates by 1, an L1 distance of 2.
    dp_inequality_end_to_end(NoiseKind::DiscreteLaplace, &attempts_spec(2, 0.5), 2.0, 2);
}

#[test]
fn the_inequality_check_catches_a_violation_of_each_kind() {
    // Pure DP at ε = 1: e·0.1 = 0.27 < 0.5.
    let profile = [(1.0, 0.0)];
    let event = |d: f64, d_prime: f64| Event {
        t: 0,
        under_d: d,
        under_d_prime: d_prime,
    };
    assert!(dp_inequality(&[event(0.25, 0.1)], &profile, 0.0).is_ok());
    for e in [
        event(0.5, 0.1),
        event(0.1, 0.5),
        event(0.95, 0.5),
        event(0.5, 0.95),
    ] {
        assert!(dp_inequality(&[e], &profile, 0.0).is_err(), "{e:?}");
    }
    // The tolerance widens the bound on both sides: 0.5 ≤ e·(0.1 + 0.1) + 0.1 = 0.64.
    assert!(dp_inequality(&[event(0.5, 0.1)], &profile, 0.1).is_ok());
    // δ adds to the bound.
    assert!(dp_inequality(&[event(0.5, 0.1)], &[(1.0, 0.3)], 0.0).is_ok());
}
