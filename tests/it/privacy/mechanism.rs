//! Sensitivity, noise scales and privacy loss against hand computations, and the noise's
//! spread against the claimed scale (with a negative control at half the scale).

use outreach_warehouse::privacy::PrivacyError;
use outreach_warehouse::privacy::mechanism::{
    MAX_SENSITIVITY, NoiseKind, NoisePlan, Threshold, epsilon_at, half_width, sensitivity, sqrt_up,
};
use outreach_warehouse::privacy::spec::{CellKey, CheckedSpec, Statistic, StatisticKind};

fn count(name: &str) -> Statistic {
    Statistic {
        name: name.into(),
        column: name.into(),
        kind: StatisticKind::Count,
        lower: 0,
        upper: 1,
    }
}

fn sum(name: &str, lower: i64, upper: i64) -> Statistic {
    Statistic {
        name: name.into(),
        column: name.into(),
        kind: StatisticKind::Sum,
        lower,
        upper,
    }
}

fn spec(
    k: u32,
    cells: usize,
    statistics: Vec<Statistic>,
    exclusive: Vec<Vec<usize>>,
    rho: Option<f64>,
    scales: Option<Vec<f64>>,
) -> CheckedSpec {
    CheckedSpec {
        name: "test".into(),
        queries: vec![],
        cells: vec![CellKey {
            column: "cell".into(),
            values: (0..cells).map(|i| format!("c{i}")).collect(),
            private: false,
            filter_in_plan: false,
        }],
        statistics,
        exclusive,
        k,
        rho,
        scales,
        allocation: "a".into(),
        ratios: vec![],
        delta: None,
    }
}

/// A release of one count over a private key, with δ target `delta`.
fn private_spec(k: u32, rho: Option<f64>, scale: Option<f64>, delta: f64) -> CheckedSpec {
    let mut s = spec(k, 1, vec![count("n")], vec![], rho, scale.map(|x| vec![x]));
    s.cells = vec![CellKey {
        column: "key".into(),
        values: vec![],
        private: true,
        filter_in_plan: false,
    }];
    s.delta = Some(delta);
    s
}

/// P(Z ≥ t) for the discrete Gaussian with scale σ, summed exactly.
fn dg_tail(sigma: f64, t: i64) -> f64 {
    let (r, pmf) = dg_pmf(sigma);
    (t.max(-r)..=r).map(|x| pmf[(x + r) as usize]).sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn sensitivity_formulas_match_hand_computation() {
    // One count, k = 4: L1 = 4, L2 = √4 = 2.
    let s = sensitivity(4, &[1]).unwrap();
    assert_eq!((s.l1, s.l2_squared, s.l2), (4, 4, 2.0));
    // Two counts, k = 4: L1 = 4·2 = 8, L2 = √(4·2) = √8, rounded up.
    let s = sensitivity(4, &[1, 1]).unwrap();
    assert_eq!((s.l1, s.l2_squared), (8, 8));
    assert!(s.l2 * s.l2 >= 8.0 && s.l2.next_down() * s.l2.next_down() < 8.0);
    // A count and a sum clamped to [-3, 5] (B = 5), k = 3: L1 = 3·6 = 18, L2² = 3·26 = 78.
    let s = sensitivity(3, &[1, 5]).unwrap();
    assert_eq!((s.l1, s.l2_squared), (18, 78));
    assert!(s.l2 >= 78f64.sqrt() && s.l2 - 78f64.sqrt() < 1e-14);
    // sqrt_up never rounds down.
    for x in [2u64, 3, 5, 7, 8, 78, 1_000_003, (1 << 52) + 1] {
        let r = sqrt_up(x);
        assert!(r.mul_add(r, -(x as f64)) >= 0.0, "{x}");
    }
}

#[test]
fn an_exclusive_group_counts_once_in_the_sensitivity() {
    let plain = spec(4, 3, vec![count("a"), count("b")], vec![], Some(0.5), None);
    let grouped = spec(
        4,
        3,
        vec![count("a"), count("b")],
        vec![vec![0, 1]],
        Some(0.5),
        None,
    );
    let p = NoisePlan::choose(&plain, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    let g = NoisePlan::choose(&grouped, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    assert_eq!(p.sensitivity().unwrap().l2_squared, 8);
    assert_eq!(g.sensitivity().unwrap().l2_squared, 4);
    // σ = √(k·ΣB² / 2ρ): √8 and 2.
    assert!(close(p.scale_of(0), 8f64.sqrt()));
    assert!(close(g.scale_of(1), 2.0));
}

#[test]
fn gaussian_scale_from_rho_and_the_debit_from_opendp() {
    // k = 4, a count and a sum in [0, 3]: ΣB² = 1 + 9 = 10, L2² = 40; ρ = 0.25 →
    // σ = √(40 / 0.5) = √80.
    let s = spec(
        4,
        10,
        vec![count("a"), sum("b", 0, 3)],
        vec![],
        Some(0.25),
        None,
    );
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    assert!(close(plan.scale_of(0), 80f64.sqrt()) && close(plan.scale_of(1), 80f64.sqrt()));
    let loss = plan.loss().unwrap();
    assert!(
        loss.rho() >= 0.25 && loss.rho() - 0.25 < 1e-12,
        "{}",
        loss.rho()
    );
    assert_eq!(loss.delta(), 0.0);
}

#[test]
fn per_statistic_scales_compose_by_the_formula() {
    // ρ = k·Σ B_j² / (2σ_j²) = 4·(1/(2·4) + 1/(2·16)) = 0.625.
    let s = spec(
        4,
        5,
        vec![count("a"), count("b")],
        vec![],
        None,
        Some(vec![2.0, 4.0]),
    );
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    let rho = plan.loss().unwrap().rho();
    assert!(rho >= 0.625 && rho - 0.625 < 1e-12, "{rho}");
    // A sum with B = 5 and σ = 10, k = 2, with a count at σ = 1: 2·(25/200 + 1/2) = 1.25.
    let s = spec(
        2,
        5,
        vec![sum("s", -5, 2), count("c")],
        vec![],
        None,
        Some(vec![10.0, 1.0]),
    );
    let rho = NoisePlan::choose(&s, NoiseKind::DiscreteGaussian, 1.0)
        .unwrap()
        .loss()
        .unwrap()
        .rho();
    assert!(rho >= 1.25 && rho - 1.25 < 1e-12, "{rho}");
}

#[test]
fn rho_and_scales_must_agree_and_scales_respect_the_minimum() {
    let agree = spec(
        4,
        5,
        vec![count("a"), count("b")],
        vec![],
        Some(0.625),
        Some(vec![2.0, 4.0]),
    );
    assert!(NoisePlan::choose(&agree, NoiseKind::DiscreteGaussian, 1.0).is_ok());
    let disagree = spec(
        4,
        5,
        vec![count("a"), count("b")],
        vec![],
        Some(1.0),
        Some(vec![2.0, 4.0]),
    );
    let e = NoisePlan::choose(&disagree, NoiseKind::DiscreteGaussian, 1.0).unwrap_err();
    assert!(e.to_string().contains("agree"), "{e}");
    let small = spec(4, 5, vec![count("a")], vec![], None, Some(vec![0.5]));
    let e = NoisePlan::choose(&small, NoiseKind::DiscreteGaussian, 1.0).unwrap_err();
    assert!(
        e.to_string().contains("below the configured minimum"),
        "{e}"
    );
    // ρ = 8 with k = 1 asks for σ = √(1/16) = 0.25: below a minimum of 1.
    let greedy = spec(1, 5, vec![count("a")], vec![], Some(8.0), None);
    assert!(NoisePlan::choose(&greedy, NoiseKind::DiscreteGaussian, 1.0).is_err());
}

#[test]
fn bounds_near_the_specs_limit_are_a_spec_error_not_a_panic() {
    // B = 2^32 + 1: B² overflows 64 bits. Unchecked, it would panic (or, without overflow
    // checks, wrap to a tiny L2 and noise about 46,000 times too small).
    let e = sensitivity(1, &[(1i64 << 32) + 1]).unwrap_err();
    assert!(matches!(e, PrivacyError::Spec { .. }), "{e}");
    assert!(e.to_string().contains("2^53"), "{e}");
    // The spec's own limit, ±2^40, and i64::MIN (whose |B| is 2^63) are refused the same way.
    assert!(sensitivity(1, &[1i64 << 40]).is_err());
    assert!(sensitivity(u32::MAX, &[i64::MIN, i64::MAX]).is_err());
    // k · ΣB² up to 2^53 is fine and exact; one more is not.
    let s = sensitivity(2, &[1 << 26]).unwrap();
    assert_eq!(s.l2_squared, MAX_SENSITIVITY);
    assert!(s.l2.mul_add(s.l2, -(MAX_SENSITIVITY as f64)) >= 0.0);
    assert!(sensitivity(2, &[1 << 26, 1]).is_err());
    assert!(sensitivity(3, &[1 << 26]).is_err());
    // Through the plan: a sum bounded by ±2^40 is refused as a spec error, before any debit.
    for kind in [NoiseKind::DiscreteGaussian, NoiseKind::DiscreteLaplace] {
        for (rho, scales) in [(Some(1.0), None), (None, Some(vec![1e12]))] {
            let s = spec(
                1,
                2,
                vec![sum("s", -(1 << 40), 1 << 40)],
                vec![],
                rho,
                scales,
            );
            let e = NoisePlan::choose(&s, kind, 1.0).unwrap_err();
            assert!(matches!(e, PrivacyError::Spec { .. }), "{kind:?}: {e}");
        }
    }
}

/// The exact rounding error of a + b: a + b = fl(a + b) + err exactly (TwoSum).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

#[test]
fn per_block_losses_compose_without_rounding_below_the_true_sum() {
    // Two blocks with their own scales: the total must be at least the exact sum of the
    // blocks' losses. A plain f64 sum rounds to nearest, below the exact sum whenever the
    // rounding error is positive; pick such pairs and check the plan's total is above it.
    let block = |kind: NoiseKind, scale: f64| {
        let s = spec(3, 2, vec![count("a")], vec![], None, Some(vec![scale]));
        let loss = NoisePlan::choose(&s, kind, 1.0).unwrap().loss().unwrap();
        match kind {
            NoiseKind::DiscreteGaussian => loss.rho(),
            NoiseKind::DiscreteLaplace => loss.epsilon.unwrap(),
        }
    };
    for kind in [NoiseKind::DiscreteGaussian, NoiseKind::DiscreteLaplace] {
        let scales: Vec<f64> = (0..80).map(|i| 1.0 + i as f64 * 0.173).collect();
        let mut rounded_down = 0;
        for pair in scales.windows(2) {
            let (a, b) = (block(kind, pair[0]), block(kind, pair[1]));
            let (sum, err) = two_sum(a, b);
            let s = spec(
                3,
                2,
                vec![count("a"), count("b")],
                vec![],
                None,
                Some(vec![pair[0], pair[1]]),
            );
            let loss = NoisePlan::choose(&s, kind, 1.0).unwrap().loss().unwrap();
            let total = match kind {
                NoiseKind::DiscreteGaussian => loss.rho(),
                NoiseKind::DiscreteLaplace => loss.epsilon.unwrap(),
            };
            assert!(total >= sum, "{kind:?}: {total} below {a} + {b}");
            if err > 0.0 {
                rounded_down += 1;
                assert!(
                    total > sum,
                    "{kind:?}: {a} + {b} composed to {total}, below the exact sum {sum} + {err}"
                );
            }
            if kind == NoiseKind::DiscreteLaplace {
                // ρ = ε²/2, rounded up, from the composed ε.
                assert!(
                    loss.rho() >= total * total / 2.0,
                    "{kind:?}: rho {}",
                    loss.rho()
                );
            }
        }
        // The test means something only if plain addition rounds down for some pairs.
        assert!(
            rounded_down >= 5,
            "{kind:?}: only {rounded_down} pairs round down"
        );
    }
}

#[test]
fn laplace_is_pure_dp_debited_as_half_epsilon_squared() {
    // k = 4, one count: L1 = 4. ρ = 0.5 → ε = 1 → b = 4.
    let s = spec(4, 5, vec![count("a")], vec![], Some(0.5), None);
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteLaplace, 1.0).unwrap();
    assert!(close(plan.scale_of(0), 4.0));
    let loss = plan.loss().unwrap();
    assert!(close(loss.epsilon.unwrap(), 1.0));
    assert!(loss.rho() >= 0.5 && loss.rho() - 0.5 < 1e-12);
    // Scales 4 and 8, k = 2: ε = 2/4 + 2/8 = 0.75, ρ = 0.28125.
    let s = spec(
        2,
        5,
        vec![count("a"), count("b")],
        vec![],
        None,
        Some(vec![4.0, 8.0]),
    );
    let loss = NoisePlan::choose(&s, NoiseKind::DiscreteLaplace, 1.0)
        .unwrap()
        .loss()
        .unwrap();
    assert!(close(loss.epsilon.unwrap(), 0.75));
    assert!(loss.rho() >= 0.28125 && loss.rho() - 0.28125 < 1e-12);
}

#[test]
fn epsilon_at_delta_is_within_the_classic_bound() {
    // OpenDP's conversion is at least as tight as ε = ρ + 2√(ρ·ln(1/δ)).
    for (rho, delta) in [(0.1, 1e-7), (0.5, 1e-6), (2.0, 1e-9)] {
        let e = epsilon_at(rho, delta).unwrap();
        let classic = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
        assert!(e > rho && e <= classic, "rho {rho}: {e} vs {classic}");
    }
    assert_eq!(epsilon_at(0.0, 1e-7).unwrap(), 0.0);
}

/// P(X = x) of the discrete Gaussian with scale σ, for |x| ≤ 60σ + 10.
fn dg_pmf(sigma: f64) -> (i64, Vec<f64>) {
    let r = (60.0 * sigma) as i64 + 10;
    let w: Vec<f64> = (-r..=r)
        .map(|x| (-(x as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let z: f64 = w.iter().sum();
    (r, w.into_iter().map(|p| p / z).collect())
}

/// P(X = x) of the discrete Laplace with scale b.
fn dl_pmf(b: f64) -> (i64, Vec<f64>) {
    let r = (60.0 * b) as i64 + 10;
    let w: Vec<f64> = (-r..=r).map(|x| (-(x as f64).abs() / b).exp()).collect();
    let z: f64 = w.iter().sum();
    (r, w.into_iter().map(|p| p / z).collect())
}

/// The Kolmogorov–Smirnov distance between the empirical CDF of integer `samples` and the
/// CDF of `pmf` (support -r..=r), taken at every integer.
fn ks_distance(samples: &mut [i64], (r, pmf): &(i64, Vec<f64>)) -> f64 {
    samples.sort_unstable();
    let n = samples.len() as f64;
    let mut cdf = 0.0;
    let mut i = 0usize;
    let mut worst: f64 = 0.0;
    for (x, p) in (-*r..=*r).zip(pmf) {
        cdf += p;
        while i < samples.len() && samples[i] <= x {
            i += 1;
        }
        worst = worst.max((i as f64 / n - cdf).abs());
    }
    worst
}

/// Noise samples from `plan` over a fixed bounded vector: the vector is fixed once, only the
/// noise step repeats.
fn noise_samples(plan: &NoisePlan, exact: &[i64], draws: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(exact.len() * draws);
    for _ in 0..draws {
        let noisy = plan.draw(exact).unwrap();
        out.extend(noisy.iter().zip(exact).map(|(y, x)| y - x));
    }
    out
}

// False alarms. With n independent samples, the Dvoretzky–Kiefer–Wolfowitz inequality
// (Massart's constant) gives P(sup|F_n − F| > t) ≤ 2·exp(−2·n·t²); for a discrete F the
// statistic is stochastically smaller, so the bound still holds. With n = 250 cells × 800
// draws = 200,000 and t = 0.0068: 2·exp(−2·200000·0.0068²) = 2·exp(−18.5) ≈ 1.9e-8 < 1e-6.
// The negative control at half the scale is at KS distance ≈ 0.13 from the claimed CDF
// (σ = 6: P(X ≤ −6) is 0.16 at σ and 0.02 at σ/2), twenty times the threshold.
const CELLS: usize = 250;
const DRAWS: usize = 800;
const KS_THRESHOLD: f64 = 0.0068;

fn exact_vector(m: usize) -> Vec<i64> {
    (0..CELLS * m).map(|i| (i as i64 * 37) % 500).collect()
}

#[test]
fn gaussian_noise_has_the_claimed_scale_and_half_scale_fails() {
    // k = 2, one count, ρ = 1/36: σ = √(2 / (2/36)) = 6, by hand.
    let sigma = 6.0;
    let s = spec(2, CELLS, vec![count("a")], vec![], Some(1.0 / 36.0), None);
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    let exact = exact_vector(1);
    let mut samples = noise_samples(&plan, &exact, DRAWS);
    let d = ks_distance(&mut samples, &dg_pmf(sigma));
    assert!(
        d < KS_THRESHOLD,
        "KS distance {d} at the claimed σ = {sigma}"
    );

    let half = spec(
        2,
        CELLS,
        vec![count("a")],
        vec![],
        None,
        Some(vec![sigma / 2.0]),
    );
    let under = NoisePlan::choose(&half, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    let mut samples = noise_samples(&under, &exact, DRAWS);
    let d = ks_distance(&mut samples, &dg_pmf(sigma));
    assert!(
        d >= KS_THRESHOLD,
        "the half-scale control passed: KS distance {d}"
    );
}

#[test]
fn laplace_noise_has_the_claimed_scale_and_half_scale_fails() {
    // k = 3, one count: L1 = 3; ρ = 1/32 → ε = 1/4 → b = 12, by hand.
    let b = 12.0;
    let s = spec(3, CELLS, vec![count("a")], vec![], Some(1.0 / 32.0), None);
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteLaplace, 1.0).unwrap();
    let exact = exact_vector(1);
    let mut samples = noise_samples(&plan, &exact, DRAWS);
    let d = ks_distance(&mut samples, &dl_pmf(b));
    assert!(d < KS_THRESHOLD, "KS distance {d} at the claimed b = {b}");

    let half = spec(
        3,
        CELLS,
        vec![count("a")],
        vec![],
        None,
        Some(vec![b / 2.0]),
    );
    let under = NoisePlan::choose(&half, NoiseKind::DiscreteLaplace, 1.0).unwrap();
    let mut samples = noise_samples(&under, &exact, DRAWS);
    let d = ks_distance(&mut samples, &dl_pmf(b));
    assert!(
        d >= KS_THRESHOLD,
        "the half-scale control passed: KS distance {d}"
    );
}

#[test]
fn per_statistic_scales_are_applied_to_their_own_statistic() {
    // Two statistics with σ = 3 and σ = 12: each column's noise must match its own scale.
    let s = spec(
        1,
        CELLS,
        vec![count("a"), count("b")],
        vec![],
        None,
        Some(vec![3.0, 12.0]),
    );
    let plan = NoisePlan::choose(&s, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    let exact = exact_vector(2);
    let all = noise_samples(&plan, &exact, DRAWS / 2);
    for (j, sigma) in [(0usize, 3.0), (1, 12.0)] {
        let mut col: Vec<i64> = all.iter().skip(j).step_by(2).copied().collect();
        // n = 100,000 per column: 2·exp(−2·100000·0.0096²) ≈ 1.9e-8.
        let d = ks_distance(&mut col, &dg_pmf(sigma));
        assert!(d < 0.0096, "statistic {j}: KS distance {d} at σ = {sigma}");
    }
}

#[test]
fn the_95_percent_interval_covers_as_computed_from_the_distribution() {
    // The published half-width h: |noise| ≤ h with probability ≥ 95%. Check the helper's h
    // against the exact distribution, then the empirical coverage against that exact value.
    // Two-sided Hoeffding on n = 200,000: P(|cov − p| > 0.0068) ≤ 2·exp(−18.5) < 1e-6.
    for (kind, scale) in [
        (NoiseKind::DiscreteGaussian, 6.0),
        (NoiseKind::DiscreteLaplace, 12.0),
    ] {
        let h = half_width(kind, scale, 0.05).unwrap();
        let (r, pmf) = match kind {
            NoiseKind::DiscreteGaussian => dg_pmf(scale),
            NoiseKind::DiscreteLaplace => dl_pmf(scale),
        };
        let p_in: f64 = (-r..=r)
            .zip(&pmf)
            .filter(|(x, _)| x.abs() <= h)
            .map(|(_, p)| p)
            .sum();
        let p_in_narrower: f64 = (-r..=r)
            .zip(&pmf)
            .filter(|(x, _)| x.abs() <= h - 2)
            .map(|(_, p)| p)
            .sum();
        assert!(p_in >= 0.95, "{kind:?}: h = {h} covers only {p_in}");
        assert!(
            p_in_narrower < 0.95,
            "{kind:?}: h = {h} is wider than needed"
        );
        let mut s = spec(1, CELLS, vec![count("a")], vec![], None, Some(vec![scale]));
        s.k = 1;
        let plan = NoisePlan::choose(&s, kind, 1.0).unwrap();
        assert_eq!(plan.half_width(0).unwrap(), h);
        let exact = exact_vector(1);
        let samples = noise_samples(&plan, &exact, DRAWS);
        let covered = samples.iter().filter(|e| e.abs() <= h).count() as f64 / samples.len() as f64;
        assert!(
            (covered - p_in).abs() < 0.0068,
            "{kind:?}: coverage {covered} vs {p_in}"
        );
        // Negative control: half-scale noise covers far more than the claimed interval says.
        let mut half = s.clone();
        half.scales = Some(vec![scale / 2.0]);
        let under = NoisePlan::choose(&half, kind, 1.0).unwrap();
        let samples = noise_samples(&under, &exact, DRAWS);
        let covered = samples.iter().filter(|e| e.abs() <= h).count() as f64 / samples.len() as f64;
        assert!(
            (covered - p_in).abs() >= 0.0068,
            "{kind:?}: the half-scale control passed"
        );
    }
}

#[test]
fn the_noise_variance_used_for_ratios_matches_the_distribution() {
    // The delta method for ratios takes the noise variance from the plan: check it against
    // the exact pmf. Discrete Laplace: exact; discrete Gaussian: σ², an upper bound that is
    // tight for σ ≥ 1.
    for (kind, scale) in [
        (NoiseKind::DiscreteLaplace, 3.0),
        (NoiseKind::DiscreteGaussian, 4.0),
    ] {
        let s = spec(1, 3, vec![count("a")], vec![], None, Some(vec![scale]));
        let plan = NoisePlan::choose(&s, kind, 1.0).unwrap();
        let (r, pmf) = match kind {
            NoiseKind::DiscreteGaussian => dg_pmf(scale),
            NoiseKind::DiscreteLaplace => dl_pmf(scale),
        };
        let exact: f64 = (-r..=r).zip(&pmf).map(|(x, p)| (x * x) as f64 * p).sum();
        let v = plan.variance(0);
        match kind {
            NoiseKind::DiscreteLaplace => {
                assert!((v - exact).abs() < 1e-9 * exact, "{v} vs {exact}")
            }
            NoiseKind::DiscreteGaussian => {
                assert!(v >= exact && v - exact < 1e-6 * exact, "{v} vs {exact}")
            }
        }
    }
}

#[test]
fn partition_selection_debits_rho_by_the_formula_and_delta_over_k_cells() {
    // k = 3, one count, ρ = 0.06: σ = √(3 / (2·0.06)) = 5 by hand, the same as without a
    // threshold, and OpenDP's map gives back ρ = k / (2σ²) = 0.06.
    let target = 1e-6;
    let plan = NoisePlan::choose(
        &private_spec(3, Some(0.06), None, target),
        NoiseKind::DiscreteGaussian,
        1.0,
    )
    .unwrap();
    assert!(close(plan.blocks[0].scale, 5.0), "{}", plan.blocks[0].scale);
    let t = plan.threshold.expect("a private key gets a threshold");
    let loss = plan.loss().unwrap();
    assert!(close(loss.rho(), 0.06), "rho {}", loss.rho());
    assert!(
        loss.delta() > 0.0 && loss.delta() <= target,
        "delta {}",
        loss.delta()
    );

    // The threshold is the smallest that meets the target: one less does not.
    let mut lower = plan.clone();
    lower.threshold = Some(Threshold {
        value: t.value - 1,
        ..t
    });
    assert!(lower.loss().unwrap().delta() > target);

    // l0 = k: a person touches up to k cells, each of which may cross the threshold, so
    // δ_k = 1 − (1 − δ_1)^k at the same σ and threshold.
    let mut one = plan.clone();
    one.k = 1;
    one.blocks[0].scale = 5.0;
    let d1 = one.loss().unwrap().delta();
    let dk = 1.0 - (1.0 - d1).powi(3);
    assert!(
        (loss.delta() - dk).abs() <= 1e-9 * dk,
        "delta {} for k = 3, {} for k = 1",
        loss.delta(),
        d1
    );
    // l∞ = 1: δ_1 bounds P(noise ≥ threshold − 1), the chance that a cell only the person
    // holds (count 1) is published (OpenDP's own map at the threshold does not: it misses the
    // mass at the threshold, opendp/opendp#2922); it is below P(noise ≥ threshold − 2),
    // which an l∞ of 2 would need.
    assert!(d1 >= dg_tail(5.0, t.value - 1), "{d1} below the exact tail");
    assert!(d1 < dg_tail(5.0, t.value - 2), "{d1} as loose as l-inf = 2");
}

#[test]
fn partition_selection_under_pure_dp_debits_half_epsilon_squared() {
    // Laplace, k = 2, b = 4: ε = k·B/b = 0.5, debited as ρ = ε²/2 = 0.125, plus δ.
    let plan = NoisePlan::choose(
        &private_spec(2, None, Some(4.0), 1e-6),
        NoiseKind::DiscreteLaplace,
        1.0,
    )
    .unwrap();
    let loss = plan.loss().unwrap();
    assert!(close(loss.epsilon.unwrap(), 0.5), "{:?}", loss.epsilon);
    assert!(close(loss.rho(), 0.125), "{}", loss.rho());
    assert!(loss.delta() > 0.0 && loss.delta() <= 1e-6);
}

// A person alone in a cell. Neighbouring inputs: {cell: 1} (the person is there) and {}
// (removed); with nothing published from {}, P(cell published) ≤ e^ε·0 + δ must hold, for
// the δ the plan debits. σ = 2, k = 1, δ target 0.01. N = 20,000 draws; under the hypothesis
// p ≤ δ the count is at most Binomial(N, δ), mean μ = N·δ, and Chernoff gives
// P(X ≥ μ + t) ≤ exp(−t²/(2(μ + t/3))); t solves t² − (2/3)·L·t − 2·L·μ = 0 for
// L = ln(1e7), so a false alarm has probability at most 1e-7. The negative control, a
// threshold two lower, publishes the lone cell with probability P(Z ≥ t − 3) ≈ 0.04, about
// 770 of 20,000, and must fail the same check.
#[test]
fn a_cell_only_one_person_holds_is_published_with_probability_at_most_delta() {
    use std::collections::HashMap;
    let delta = 0.01;
    let plan = NoisePlan::choose(
        &private_spec(1, None, Some(2.0), delta),
        NoiseKind::DiscreteGaussian,
        1.0,
    )
    .unwrap();
    let lone = HashMap::from([(7u64, 1i64)]);
    let n = 20_000;
    let published = |p: &NoisePlan| {
        (0..n)
            .filter(|_| p.draw_thresholded(&lone).unwrap().contains_key(&7))
            .count() as f64
    };
    let mu = n as f64 * plan.loss().unwrap().delta();
    let l = 1e7f64.ln();
    let t = (2.0 / 3.0 * l + ((2.0 / 3.0 * l).powi(2) + 8.0 * l * mu).sqrt()) / 2.0;
    let limit = mu + t;
    let hits = published(&plan);
    assert!(hits <= limit, "published {hits} times of {n}");

    let mut under = plan.clone();
    let t = under.threshold.unwrap();
    // By hand, the continuous tails that bound the discrete one are P(N > 5) = 0.0062 ≤ δ <
    // P(N > 4) = 0.0228 for σ = 2, so the threshold is 7 and the lone cell is published with
    // probability P(Z ≥ 6) = 0.0027; the control's power rests on this.
    assert!(dg_tail(2.0, t.value - 3) > 0.03, "threshold {}", t.value);
    under.threshold = Some(Threshold {
        value: t.value - 2,
        ..t
    });
    let hits = published(&under);
    assert!(hits > limit, "the control published only {hits} times");
    // Nothing is ever published from the empty neighbour.
    assert!(plan.draw_thresholded(&HashMap::new()).unwrap().is_empty());
}

#[test]
fn partition_selection_keeps_large_counts_and_never_draws_through_the_vector_path() {
    use std::collections::HashMap;
    let plan = NoisePlan::choose(
        &private_spec(2, Some(0.5), None, 1e-6),
        NoiseKind::DiscreteGaussian,
        1.0,
    )
    .unwrap();
    let t = plan.threshold.unwrap().value;
    // σ = √(2/(2·0.5)) = √2: a count of t + 20 is 14σ above the threshold.
    let counts = HashMap::from([(1u64, t + 20), (2u64, 1)]);
    let out = plan.draw_thresholded(&counts).unwrap();
    assert!(out.contains_key(&1));
    assert!(
        out.keys().all(|k| counts.contains_key(k)),
        "a cell out of nowhere"
    );
    // A zero count never reaches selection, and the dense path refuses a private plan.
    assert!(
        plan.draw_thresholded(&HashMap::from([(3u64, 0i64)]))
            .is_err()
    );
    assert!(plan.draw(&[5]).is_err());
}

#[test]
fn a_broken_invariant_of_the_engine_is_an_internal_fault_not_opendps() {
    use std::collections::HashMap;
    // Two cells of one count: a vector of three values cannot come from the bounder.
    let plan = NoisePlan::choose(
        &spec(1, 2, vec![count("n")], vec![], None, Some(vec![2.0])),
        NoiseKind::DiscreteGaussian,
        1.0,
    )
    .unwrap();
    let private = NoisePlan::choose(
        &private_spec(2, Some(0.5), None, 1e-6),
        NoiseKind::DiscreteGaussian,
        1.0,
    )
    .unwrap();
    for e in [
        plan.draw(&[1, 2, 3]).unwrap_err(),
        plan.draw_thresholded(&HashMap::from([(1u64, 5i64)]))
            .unwrap_err(),
        private
            .draw_thresholded(&HashMap::from([(3u64, 0i64)]))
            .unwrap_err(),
        private.draw(&[5]).unwrap_err(),
    ] {
        assert!(matches!(e, PrivacyError::Internal(_)), "{e:?}");
        assert!(e.to_string().starts_with("internal: "), "{e}");
        assert_eq!(e.fault(), outreach_warehouse::Fault::Internal);
        assert_eq!(outreach_warehouse::Error::from(e).fault().exit_code(), 1);
    }
}

/// The statewide cross-program spec (`queries/cross_program/cross_program.toml`): a survivor
/// touches one quarter cell with three 0/1 counts, so k = 1 gives ΣB² = 3, and ρ = 0.05 gives
/// σ = √(3 / (2 · 0.05)) = √30 for each count. A wrong k, bound or ρ in the file moves it.
#[test]
fn the_cross_program_spec_is_priced_at_one_cell_per_survivor() {
    use outreach_warehouse::dictionary::Dictionary;
    use outreach_warehouse::privacy::ReleaseSpec;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("queries/cross_program/cross_program.toml");
    let spec = ReleaseSpec::from_file(&file).unwrap();
    let checked =
        outreach_warehouse::privacy::spec::check(&spec, Dictionary::builtin().unwrap(), &[])
            .unwrap();
    assert_eq!(checked.k, 1);
    assert_eq!(checked.statistics.len(), 3);
    let plan = NoisePlan::choose(&checked, NoiseKind::DiscreteGaussian, 1.0).unwrap();
    for i in 0..3 {
        assert!(
            close(plan.scale_of(i), 30f64.sqrt()),
            "{}",
            plan.scale_of(i)
        );
    }
    let loss = plan.loss().unwrap();
    assert!(
        loss.rho() >= 0.05 && loss.rho() - 0.05 < 1e-12,
        "{}",
        loss.rho()
    );
}
