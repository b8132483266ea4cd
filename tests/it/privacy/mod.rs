//! The privacy engine (`src/privacy`): the person-locality analyser, the allowed functions
//! and their audit, contribution bounding, the noise mechanisms, releases end to end, and the
//! DP inequality checked by sampling.

mod allowlist_audit;
mod analyser;
mod bounding;
mod dp_inequality;
mod functions;
mod mechanism;
mod release;
