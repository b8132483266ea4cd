//! The noise a warehouse uses, fixed at `budget init` and stored in the ledger's config.
//!
//! It lives here, below both the ledger and the privacy engine, so that the ledger never
//! imports the engine: the engine (`privacy::mechanism`) re-exports it.

use serde::{Deserialize, Serialize};

/// The noise the warehouse config picks for every release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// zCDP with discrete Gaussian noise (the default).
    DiscreteGaussian,
    /// Pure ε-DP with discrete Laplace noise, debited as ρ = ε²/2.
    DiscreteLaplace,
}

impl NoiseKind {
    /// The privacy measure, as recorded in the ledger.
    pub fn measure(self) -> &'static str {
        match self {
            NoiseKind::DiscreteGaussian => "zCDP",
            NoiseKind::DiscreteLaplace => "pure-DP (debited as rho = eps^2/2)",
        }
    }
}

impl std::str::FromStr for NoiseKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "gaussian" | "discrete_gaussian" => Ok(NoiseKind::DiscreteGaussian),
            "laplace" | "discrete_laplace" => Ok(NoiseKind::DiscreteLaplace),
            other => Err(format!("unknown noise `{other}`: use gaussian or laplace")),
        }
    }
}
