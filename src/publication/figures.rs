//! Post-processing of published noisy counts into what funders read: counts shown at no
//! less than zero, rates shown in [0, 1], rate differences, and sums over groups of
//! programs. Nothing here reads data or draws noise; it works on released values only, so it
//! costs no privacy budget (privacy model §3).
//!
//! Every figure keeps its raw value beside its display value, so sums stay unbiased, and an
//! interval for the noise (not sampling error): a program's count uses OpenDP's half-width
//! (coverage at least 95%); a sum over programs the normal approximation rounded up to a
//! whole number; rates and differences the delta method with z = 1.96 on variances no
//! smaller than those half-widths imply (`publish::rate_variance`). The last two are
//! approximations; `tests/it/publication/utility.rs` computes their exact coverage (at least
//! 95.3% on its data, for denominators of 100 or more) and checks it by simulation.
//!
//! The interval shown is the noise interval brought into the figure's range by
//! [`shown_interval`], the one rule every figure is built with, so every page, the API and
//! every CSV show the same interval: each end clamped to the range, but never narrower than
//! the noise's half-width.

use serde::{Deserialize, Serialize};

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The 95% interval to show for a noisy value `raw ± half_width` whose true value lies in
/// [`min`, `max`] (counts [0, ∞), rates [0, 1], rate differences [−1, 1]).
///
/// Each end is clamped to the range, but the interval is never narrower than the noise's
/// half-width: when the noisy value itself falls below `min`, the interval reaches
/// `half_width` up from `min`, [min, min + h], where clamping alone would give
/// [min, max(raw + h, min)], down to the single point [0, 0] when the whole interval lies
/// below zero, which reads as certainty; above `max`, likewise down from `max`. Why this rule:
/// - it holds the clamped interval, so it covers the true value (which is in the range) at
///   least as often, 95% or more;
/// - it changes nothing while the noisy value is within the range;
/// - it moves continuously with the noisy value (at `raw = min` both give [min, min + h]);
/// - its width, at least h (or the whole range), depends on the noise alone, never on the
///   data. Sliding the full width 2h into the range instead would jump at the bound and
///   widen every interval that merely crosses it.
///
/// Post-processing of released values: it costs no privacy budget.
pub fn shown_interval(raw: f64, half_width: f64, min: f64, max: f64) -> (f64, f64) {
    let clamp = |x: f64| x.clamp(min, max);
    (
        clamp(raw - half_width).min(clamp(max - half_width)),
        clamp(raw + half_width).max(clamp(min + half_width)),
    )
}

/// A noisy count (or a sum of noisy counts) with its noise variance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noisy {
    /// The raw noisy value: may be negative.
    pub raw: f64,
    /// The variance of its noise.
    pub variance: f64,
}

impl Noisy {
    /// The sum of independent noisy values: raw values and variances add.
    pub fn sum(parts: impl IntoIterator<Item = Noisy>) -> Noisy {
        parts.into_iter().fold(
            Noisy {
                raw: 0.0,
                variance: 0.0,
            },
            |a, b| Noisy {
                raw: a.raw + b.raw,
                variance: a.variance + b.variance,
            },
        )
    }
}

/// A count as published: display clamped at zero, interval by [`shown_interval`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountFigure {
    pub statistic: String,
    /// The raw noisy value (sums over cells use it).
    pub raw: f64,
    /// The value to show: never below zero.
    pub value: f64,
    /// The 95% noise interval, clamped at zero but never narrower than its half-width
    /// ([`shown_interval`]).
    pub lower: f64,
    pub upper: f64,
    /// Whether every window of the statistic is complete by the declared dates.
    pub complete: bool,
}

impl CountFigure {
    /// A count from its raw value and the half-width of its 95% noise interval.
    pub fn new(statistic: &str, raw: f64, half_width: f64, complete: bool) -> CountFigure {
        let (lower, upper) = shown_interval(raw, half_width, 0.0, f64::INFINITY);
        CountFigure {
            statistic: statistic.to_string(),
            raw,
            value: raw.max(0.0),
            lower,
            upper,
            complete,
        }
    }
}

/// A rate as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateFigure {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    /// The rate to show, in [0, 1]; none when the data are insufficient.
    pub value: Option<f64>,
    /// The raw ratio of the noisy values, which may fall outside [0, 1].
    pub raw: Option<f64>,
    /// The 95% noise interval, clamped to [0, 1] but never narrower than its half-width
    /// ([`shown_interval`]).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The noisy denominator is ≤ 0 or within twice its noise half-width of zero.
    pub insufficient_data: bool,
    pub complete: bool,
}

/// A rate's estimate and its noise variance by the delta method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateEstimate {
    pub raw: f64,
    pub variance: f64,
}

/// numerator ÷ denominator of noisy values; `None` when the noisy denominator cannot carry
/// a rate: ≤ 0, or within twice its own 95% half-width of zero.
pub fn rate(num: Noisy, den: Noisy) -> Option<RateEstimate> {
    let den_half = Z95 * den.variance.sqrt();
    crate::privacy::release::delta_ratio(num.raw, den.raw, num.variance, den.variance, den_half)
        .map(|(raw, variance)| RateEstimate { raw, variance })
}

impl RateFigure {
    pub fn new(
        name: &str,
        numerator: &str,
        denominator: &str,
        estimate: Option<RateEstimate>,
        complete: bool,
    ) -> RateFigure {
        let (value, raw, lower, upper) = match estimate {
            Some(e) => {
                let (lo, hi) = shown_interval(e.raw, Z95 * e.variance.sqrt(), 0.0, 1.0);
                (Some(e.raw.clamp(0.0, 1.0)), Some(e.raw), Some(lo), Some(hi))
            }
            None => (None, None, None, None),
        };
        RateFigure {
            name: name.to_string(),
            numerator: numerator.to_string(),
            denominator: denominator.to_string(),
            value,
            raw,
            lower,
            upper,
            insufficient_data: estimate.is_none(),
            complete,
        }
    }
}

/// A difference of two rates as published, in [−1, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifferenceFigure {
    pub name: String,
    pub minuend: String,
    pub subtrahend: String,
    pub value: Option<f64>,
    pub raw: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The standard error of the noise (before clipping), for pooling and power statements.
    pub standard_error: Option<f64>,
    pub insufficient_data: bool,
    pub complete: bool,
}

impl DifferenceFigure {
    /// `a − b` of two independent rate estimates, in [−1, 1].
    pub fn new(
        name: &str,
        minuend: &str,
        subtrahend: &str,
        a: Option<RateEstimate>,
        b: Option<RateEstimate>,
        complete: bool,
    ) -> DifferenceFigure {
        DifferenceFigure::in_range(name, minuend, subtrahend, a, b, complete, (-1.0, 1.0))
    }

    /// `a − b` of two independent noisy estimates whose difference lies in `range`: the
    /// variances add, the interval is ±1.96 standard errors by [`shown_interval`]. A rate
    /// difference lies in [−1, 1]; the change of a count between two quarters is unbounded,
    /// of a rate difference in [−2, 2].
    pub fn in_range(
        name: &str,
        minuend: &str,
        subtrahend: &str,
        a: Option<RateEstimate>,
        b: Option<RateEstimate>,
        complete: bool,
        (min, max): (f64, f64),
    ) -> DifferenceFigure {
        let est = a
            .zip(b)
            .map(|(a, b)| (a.raw - b.raw, (a.variance + b.variance).sqrt()));
        let shown = est.map(|(d, se)| shown_interval(d, Z95 * se, min, max));
        DifferenceFigure {
            name: name.to_string(),
            minuend: minuend.to_string(),
            subtrahend: subtrahend.to_string(),
            value: est.map(|(d, _)| d.clamp(min, max)),
            raw: est.map(|(d, _)| d),
            lower: shown.map(|(lo, _)| lo),
            upper: shown.map(|(_, hi)| hi),
            standard_error: est.map(|(_, se)| se),
            insufficient_data: est.is_none(),
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: f64, sd: f64) -> Noisy {
        Noisy {
            raw,
            variance: sd * sd,
        }
    }

    #[test]
    fn a_rate_is_shown_in_zero_one_but_keeps_its_raw_value() {
        // A noisy numerator below zero: the raw rate is negative, the shown one is 0.
        let e = rate(n(-3.0, 5.0), n(100.0, 5.0)).unwrap();
        let f = RateFigure::new("r", "a", "b", Some(e), true);
        assert_eq!(f.raw, Some(-0.03));
        assert_eq!(f.value, Some(0.0));
        assert_eq!(f.lower, Some(0.0));
        assert!(f.upper.unwrap() > 0.0 && f.upper.unwrap() < 1.0);
        // Above one.
        let e = rate(n(110.0, 5.0), n(100.0, 5.0)).unwrap();
        let f = RateFigure::new("r", "a", "b", Some(e), true);
        assert_eq!(f.value, Some(1.0));
        assert_eq!(f.upper, Some(1.0));
    }

    #[test]
    fn an_interval_wholly_outside_its_range_keeps_the_width_of_its_noise() {
        // A rate whose noisy value is −20% with a standard error of 5 points: its whole
        // interval, −29.8% to −10.2%, lies below zero. Clamping alone would show [0, 0].
        let f = RateFigure::new(
            "r",
            "a",
            "b",
            Some(RateEstimate {
                raw: -0.2,
                variance: 0.05 * 0.05,
            }),
            true,
        );
        assert_eq!((f.value, f.lower), (Some(0.0), Some(0.0)));
        assert!((f.upper.unwrap() - Z95 * 0.05).abs() < 1e-15, "{f:?}");
        // Above one: the interval reaches its half-width down from 1.
        let f = RateFigure::new(
            "r",
            "a",
            "b",
            Some(RateEstimate {
                raw: 1.3,
                variance: 0.05 * 0.05,
            }),
            true,
        );
        assert_eq!((f.value, f.upper), (Some(1.0), Some(1.0)));
        assert!(
            (f.lower.unwrap() - (1.0 - Z95 * 0.05)).abs() < 1e-15,
            "{f:?}"
        );
        // A count of −30 with a half-width of 11: [0, 11], not [0, 0].
        let c = CountFigure::new("c", -30.0, 11.0, true);
        assert_eq!((c.value, c.lower, c.upper, c.raw), (0.0, 0.0, 11.0, -30.0));
        // A difference wholly below −1.
        let d = DifferenceFigure::new(
            "d",
            "a",
            "b",
            Some(RateEstimate {
                raw: 0.1,
                variance: 0.0,
            }),
            Some(RateEstimate {
                raw: 1.5,
                variance: 0.01,
            }),
            true,
        );
        assert_eq!((d.value, d.lower), (Some(-1.0), Some(-1.0)));
        assert!(
            (d.upper.unwrap() - (-1.0 + Z95 * 0.1)).abs() < 1e-12,
            "{d:?}"
        );
        // Within the range nothing changes, and at the bound the two rules meet: the shown
        // interval moves continuously with the noisy value.
        assert_eq!(shown_interval(0.5, 0.1, 0.0, 1.0), (0.4, 0.6));
        assert_eq!(shown_interval(0.05, 0.1, 0.0, 1.0).1, 0.05 + 0.1);
        assert_eq!(shown_interval(0.0, 0.1, 0.0, 1.0), (0.0, 0.1));
        assert_eq!(shown_interval(-1e-9, 0.1, 0.0, 1.0), (0.0, 0.1));
        // Never narrower than the half-width, nor wider than the range.
        for raw in [-3.0, -0.5, -0.1, 0.0, 0.02, 0.5, 0.97, 1.0, 1.2, 4.0] {
            for h in [0.01, 0.1, 0.6, 2.0] {
                let (lo, hi) = shown_interval(raw, h, 0.0, 1.0);
                assert!(0.0 <= lo && lo <= hi && hi <= 1.0, "{raw} {h}");
                assert!(hi - lo >= h.min(1.0) - 1e-12, "{raw} {h}: [{lo}, {hi}]");
                // It holds what clamping alone shows: it covers the truth as often.
                assert!(lo <= (raw - h).clamp(0.0, 1.0) && (raw + h).clamp(0.0, 1.0) <= hi);
            }
        }
    }

    #[test]
    fn the_delta_method_variance_is_the_hand_formula() {
        // r = 40/200 = 0.2; Var = (36 + 0.04·36) / 40000 = 37.44 / 40000.
        let e = rate(n(40.0, 6.0), n(200.0, 6.0)).unwrap();
        assert!((e.raw - 0.2).abs() < 1e-15);
        assert!((e.variance - 37.44 / 40_000.0).abs() < 1e-15);
    }

    #[test]
    fn a_denominator_near_zero_is_insufficient_data() {
        // Half-width 1.96·6 = 11.76: a denominator of 23 is within twice it of zero.
        assert!(rate(n(5.0, 6.0), n(23.0, 6.0)).is_none());
        assert!(rate(n(5.0, 6.0), n(-4.0, 6.0)).is_none());
        assert!(rate(n(5.0, 6.0), n(24.0, 6.0)).is_some());
        let f = RateFigure::new("r", "a", "b", None, true);
        assert!(f.insufficient_data && f.value.is_none());
    }

    #[test]
    fn differences_add_variances_and_sums_add_raw_values() {
        let a = RateEstimate {
            raw: 0.3,
            variance: 0.0009,
        };
        let b = RateEstimate {
            raw: 0.1,
            variance: 0.0016,
        };
        let d = DifferenceFigure::new("d", "a", "b", Some(a), Some(b), true);
        assert!((d.raw.unwrap() - 0.2).abs() < 1e-15);
        assert!((d.standard_error.unwrap() - 0.05).abs() < 1e-15);
        assert!((d.lower.unwrap() - (0.2 - Z95 * 0.05)).abs() < 1e-12);
        let s = Noisy::sum([n(-2.0, 3.0), n(5.0, 4.0)]);
        assert_eq!(s.raw, 3.0);
        assert_eq!(s.variance, 25.0);
        // A count below zero: its interval reaches the half-width up from zero, [0, 11]
        // (clamping alone gave [0, 9]: `shown_interval`).
        let c = CountFigure::new("c", -2.0, 11.0, false);
        assert_eq!((c.value, c.lower, c.upper, c.raw), (0.0, 0.0, 11.0, -2.0));
    }
}
