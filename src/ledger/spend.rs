//! A privacy spend: the zCDP ρ and the δ that a release costs, that an allocation or the
//! warehouse budget holds, or that has been spent. The privacy engine measures a release's
//! loss as a [`Spend`] and the ledger debits and checks it as one, so the two numbers travel
//! together and are never NaN, negative or infinite.

use serde::{Deserialize, Serialize};

/// Slack for floating-point sums when comparing a spend with a cap: 1e-12 relative.
pub(super) const SLACK: f64 = 1e-12;

/// A privacy spend: ρ (zCDP) and δ, both finite and at least 0.
///
/// Build one with [`Spend::new`]. The fields are readable in the crate (the engine's `Loss`
/// reads `loss.rho` through `Deref`); only this module builds or changes a spend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SpendFields")]
pub struct Spend {
    pub(crate) rho: f64,
    pub(crate) delta: f64,
}

/// Why two numbers are not a spend.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SpendError {
    #[error("a privacy spend's {0} is not a number")]
    NotANumber(&'static str),
    #[error("a privacy spend's {0} is infinite")]
    Infinite(&'static str),
    #[error("a privacy spend's {quantity} is negative ({value})")]
    Negative { quantity: &'static str, value: f64 },
}

/// A spend as it is written: `{ "rho": …, "delta": … }`, checked by [`Spend::new`] when read.
#[derive(Deserialize)]
struct SpendFields {
    rho: f64,
    delta: f64,
}

impl TryFrom<SpendFields> for Spend {
    type Error = SpendError;
    fn try_from(f: SpendFields) -> Result<Spend, SpendError> {
        Spend::new(f.rho, f.delta)
    }
}

impl Spend {
    /// Nothing spent.
    pub const ZERO: Spend = Spend {
        rho: 0.0,
        delta: 0.0,
    };

    /// The spend (`rho`, `delta`); refused, naming the component, when either is NaN,
    /// infinite or negative.
    pub fn new(rho: f64, delta: f64) -> Result<Spend, SpendError> {
        check("rho", rho)?;
        check("delta", delta)?;
        Ok(Spend { rho, delta })
    }

    /// The zCDP ρ.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    /// The δ.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Both spends together, component by component; none when a sum overflows to infinity.
    pub fn checked_add(self, other: Spend) -> Option<Spend> {
        let rho = self.rho + other.rho;
        let delta = self.delta + other.delta;
        (rho.is_finite() && delta.is_finite()).then_some(Spend { rho, delta })
    }

    /// Whether this spend stays within `cap` in both ρ and δ. Equality fits, and so does a
    /// spend above the cap by no more than the slack for floating-point sums (1e-12 of the
    /// cap); δ may also exceed its cap by the smallest positive normal `f64`.
    pub fn fits_within(&self, cap: &Spend) -> bool {
        self.rho <= cap.rho * (1.0 + SLACK)
            && self.delta <= cap.delta * (1.0 + SLACK) + f64::MIN_POSITIVE
    }

    /// One component: ρ or δ.
    pub(super) fn get(&self, quantity: Quantity) -> f64 {
        match quantity {
            Quantity::Rho => self.rho,
            Quantity::Delta => self.delta,
        }
    }

    /// This spend with only one component kept and the other 0: what a limit on that one
    /// component checks.
    pub(super) fn only(&self, quantity: Quantity) -> Spend {
        match quantity {
            Quantity::Rho => Spend {
                rho: self.rho,
                delta: 0.0,
            },
            Quantity::Delta => Spend {
                rho: 0.0,
                delta: self.delta,
            },
        }
    }
}

impl std::fmt::Display for Spend {
    /// As the ledger's messages write amounts: `rho = 0.500000, delta = 1.000e-6`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rho = {}, delta = {}",
            amount("rho", self.rho),
            amount("delta", self.delta)
        )
    }
}

/// One component of a spend, named as the ledger's messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quantity {
    Rho,
    Delta,
}

impl Quantity {
    /// `rho` or `delta`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Quantity::Rho => "rho",
            Quantity::Delta => "delta",
        }
    }
}

/// A budget amount for messages: ρ to six places, δ in scientific notation.
pub(super) fn amount(quantity: &str, x: f64) -> String {
    if quantity == "delta" {
        format!("{x:.3e}")
    } else {
        format!("{x:.6}")
    }
}

fn check(quantity: &'static str, value: f64) -> Result<(), SpendError> {
    if value.is_nan() {
        Err(SpendError::NotANumber(quantity))
    } else if value.is_infinite() {
        Err(SpendError::Infinite(quantity))
    } else if value < 0.0 {
        Err(SpendError::Negative { quantity, value })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(rho: f64, delta: f64) -> Spend {
        Spend::new(rho, delta).unwrap()
    }

    #[test]
    fn a_spend_refuses_nan_infinities_and_negatives_and_names_the_component() {
        assert_eq!(
            Spend::new(f64::NAN, 0.0),
            Err(SpendError::NotANumber("rho"))
        );
        assert_eq!(
            Spend::new(0.1, f64::NAN),
            Err(SpendError::NotANumber("delta"))
        );
        assert_eq!(
            Spend::new(f64::INFINITY, 0.0),
            Err(SpendError::Infinite("rho"))
        );
        assert_eq!(
            Spend::new(0.1, f64::NEG_INFINITY),
            Err(SpendError::Infinite("delta"))
        );
        assert_eq!(
            Spend::new(-0.5, 0.0),
            Err(SpendError::Negative {
                quantity: "rho",
                value: -0.5
            })
        );
        let e = Spend::new(0.5, -1e-9).unwrap_err();
        assert_eq!(
            e,
            SpendError::Negative {
                quantity: "delta",
                value: -1e-9
            }
        );
        assert!(e.to_string().contains("delta"), "{e}");
        assert_eq!(Spend::new(0.0, 0.0), Ok(Spend::ZERO));
        assert_eq!(spend(0.25, 1e-6).rho(), 0.25);
        assert_eq!(spend(0.25, 1e-6).delta(), 1e-6);
    }

    #[test]
    fn checked_addition_adds_both_components_and_refuses_overflow() {
        assert_eq!(
            spend(0.25, 1e-6).checked_add(spend(0.5, 2e-6)),
            Some(spend(0.25 + 0.5, 1e-6 + 2e-6))
        );
        assert_eq!(
            Spend::ZERO.checked_add(spend(0.3, 0.0)),
            Some(spend(0.3, 0.0))
        );
        assert_eq!(spend(f64::MAX, 0.0).checked_add(spend(f64::MAX, 0.0)), None);
        assert_eq!(spend(0.0, f64::MAX).checked_add(spend(0.0, f64::MAX)), None);
    }

    #[test]
    fn fits_within_checks_rho_and_delta_with_the_ledgers_slack() {
        let cap = spend(1.0, 1e-6);
        // Equality fits, in each component and in both.
        assert!(spend(1.0, 0.0).fits_within(&cap));
        assert!(spend(0.0, 1e-6).fits_within(&cap));
        assert!(cap.fits_within(&cap));
        // Within the relative slack of 1e-12 fits; beyond it does not.
        assert!(spend(1.0 + 0.5e-12, 0.0).fits_within(&cap));
        assert!(!spend(1.0 + 2e-12, 0.0).fits_within(&cap));
        assert!(spend(0.0, 1e-6 * (1.0 + 0.5e-12)).fits_within(&cap));
        assert!(!spend(0.0, 1e-6 * (1.0 + 2e-12)).fits_within(&cap));
        // Either component over its cap is enough to refuse.
        assert!(!spend(0.5, 2e-6).fits_within(&cap));
        assert!(!spend(1.5, 0.0).fits_within(&cap));
        // A cap of no δ holds no δ, but a δ of 0 fits it.
        let no_delta = spend(1.0, 0.0);
        assert!(spend(0.5, 0.0).fits_within(&no_delta));
        assert!(!spend(0.5, 1e-12).fits_within(&no_delta));
        // A cap of no ρ holds no ρ.
        assert!(!spend(1e-12, 0.0).fits_within(&Spend::ZERO));
        assert!(Spend::ZERO.fits_within(&Spend::ZERO));
    }

    #[test]
    fn only_keeps_one_component() {
        let s = spend(0.5, 1e-6);
        assert_eq!(s.only(Quantity::Rho), spend(0.5, 0.0));
        assert_eq!(s.only(Quantity::Delta), spend(0.0, 1e-6));
        assert_eq!(s.get(Quantity::Rho), 0.5);
        assert_eq!(s.get(Quantity::Delta), 1e-6);
        assert_eq!(Quantity::Rho.name(), "rho");
        assert_eq!(Quantity::Delta.name(), "delta");
    }

    #[test]
    fn a_spend_displays_and_serialises_as_the_ledger_writes_it() {
        assert_eq!(
            spend(0.5, 1e-6).to_string(),
            "rho = 0.500000, delta = 1.000e-6"
        );
        let json = serde_json::to_string(&spend(0.5, 0.0)).unwrap();
        assert_eq!(json, r#"{"rho":0.5,"delta":0.0}"#);
        let back: Spend = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spend(0.5, 0.0));
        assert!(serde_json::from_str::<Spend>(r#"{"rho":-1.0,"delta":0.0}"#).is_err());
    }
}
