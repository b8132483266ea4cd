//! Publishing the standard metrics: each quarter's figures, released with differentially
//! private noise from the metric catalog ([`crate::metrics`]), turned into what funders
//! read, and stored in the ledger as a versioned document.
//!
//! - [`specs`]: the quarter's release specs built from the catalog (the standard release and
//!   the equity release), their noise, and the allocation they are debited from.
//! - [`publish`](mod@publish): `outreach publish`: the releases, the figures computed from them, the
//!   publication recorded in the ledger, and the quarter's privacy loss.
//! - [`plan`](mod@plan): `outreach plan`: what a publication would cost and how precise it would be,
//!   through the same specs and noise plans, before anything is spent.
//! - [`figures`](mod@figures): counts, rates, rate differences and their shown intervals, the
//!   post-processing of released counts.
//! - [`document`]: the publication document, everything a publication shows, and its
//!   versions.
//! - [`error`]: what stops a publication or a plan ([`PublicationError`]): publishing's own
//!   refusals, and the errors of the stages it runs through, each with its fault.
//! - [`stored`]: the stored publications, append-only in the ledger's SQLite file, which
//!   quarter each publishes and which superseded which, and the public programs table each
//!   was made from (what the API lists, so that it reads no data).
//!
//! The items callers use are re-exported here, so `crate::publication::publish` is the
//! function and `crate::publication::Publication` the document.

pub mod document;
pub mod error;
pub mod figures;
pub mod plan;
pub mod publish;
pub mod specs;
pub mod stored;

pub use document::{
    BreakdownFigures, Completeness, DocumentError, GroupFigures, IncompleteTable, PUBLICATION_NOTE,
    PUBLICATION_VERSION, ProgramFigures, Publication,
};
pub use error::{PublicationError, Result};
pub use plan::{Plan, plan, plan_for_target, plan_with, rate_half_width};
pub use publish::{
    CorrectedQuarter, CountNoise, GROUPINGS, ProgramInfo, PublishOptions, Published, QuarterLoss,
    ReleaseLoss, breakdown_figures, completeness, corrected_after, corrected_quarters, figures,
    programs, publish, quarter_loss, quarter_loss_in, rate_variance,
};
pub use specs::{
    DEFAULT_ANNUAL_RHO, DEFAULT_STANDARD_RHO, EQUITY_NOISE, STANDARD_ALLOCATION, StandardNoise,
    equity_spec, standard_spec,
};
pub use stored::{NewPublication, StoredPublication};
