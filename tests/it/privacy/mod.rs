//! The privacy engine (`src/privacy`): what a spec may ask for, the person-locality analyser,
//! the allowed functions and their audit, contribution bounding, the noise mechanisms,
//! releases end to end, and the DP inequality checked by sampling.

mod allowlist_audit;
mod analyser;
mod bounding;
mod dp_inequality;
mod functions;
mod mechanism;
mod release;
mod spec;

use std::path::Path;

use outreach_warehouse::privacy::{PrivacyError, ReleaseOutcome, ReleaseRequest, ReleaseSpec};

use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, spec_toml};

fn persons_spec(k: u32, rho: f64) -> ReleaseSpec {
    toml::from_str(&spec_toml(k, rho, PERSONS_SQL, PERSONS_STAT)).unwrap()
}

fn run(wh: &Path, spec: &ReleaseSpec) -> Result<ReleaseOutcome, PrivacyError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(outreach_warehouse::privacy::release(
        wh,
        &ReleaseRequest {
            spec: spec.clone(),
            approver: "steward".into(),
        },
    ))
}
