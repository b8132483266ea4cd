//! The public record as files, and reading it back: the static mirror that any static host,
//! object store or CDN serves with no process of ours, the public record fetched from such a
//! mirror (a folder or a URL) for `outreach verify`, and the registry disclosure.
//!
//! - [`export`]: `outreach export-site`: every public route's path form, requested from the
//!   in-process router ([`crate::api::app`]) over what is published, so the mirror's bodies are
//!   the server's by construction; the dashboard page of every quarter and metric, each
//!   quarter's report, the disclosure, an index with relative links, and `site.json`, the
//!   manifest of every file with its SHA-256. A re-export rewrites only the files whose bytes
//!   changed and removes the files of routes that are gone.
//! - [`record`]: the public record read from a mirror's folder or from an http(s) URL, route
//!   by route (the static form `v1/releases/12.json`), for `outreach verify`.
//! - [`disclosure`]: this deployment's entry for the OpenDP Deployments Registry, as YAML.

pub mod disclosure;
pub mod export;
pub mod record;

use std::path::PathBuf;

use crate::Fault;

pub use disclosure::{Curation, Yaml, disclosure};
pub use export::{Exported, NOT_MIRRORED, SITE_MANIFEST, export_site};
pub use record::{AnyRecord, FolderRecord, RecordError, UrlRecord};

/// What went wrong writing the mirror or the disclosure.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// Reading the warehouse: its own error, with its own fault.
    #[error(transparent)]
    Warehouse(#[from] crate::Error),
    /// The folder given to `--out` cannot hold the mirror.
    #[error("cannot write the mirror into {path}: {why}")]
    BadOut { path: PathBuf, why: String },
    /// A file of the mirror cannot be written or removed.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server answered a route of the mirror with other than 200: a defect.
    #[error("the server answered {status} to {uri} (route {route}), so the mirror would lack it")]
    Route {
        route: String,
        uri: String,
        status: u16,
    },
    /// A route has a path parameter whose values the mirror cannot list.
    #[error(
        "route {route} has the path parameter {{{param}}}, whose values the mirror cannot list: \
         render its pages in the snapshot (`api::pages::Served`) or list it in \
         `site::NOT_MIRRORED` with the reason"
    )]
    UnknownParameter { route: String, param: String },
    /// The disclosure cannot be made (a ρ OpenDP cannot convert).
    #[error("the disclosure: {0}")]
    Disclosure(String),
}

impl SiteError {
    pub fn fault(&self) -> Fault {
        match self {
            SiteError::Warehouse(e) => e.fault(),
            SiteError::BadOut { .. } => Fault::BadInput,
            SiteError::Io { .. }
            | SiteError::Route { .. }
            | SiteError::UnknownParameter { .. }
            | SiteError::Disclosure(_) => Fault::Internal,
        }
    }
}
