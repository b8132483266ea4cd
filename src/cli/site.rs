//! `outreach export-site`, `outreach verify` and `outreach disclosure`: the public record as
//! files that any static host serves, the check that anyone can run on it, and this
//! deployment's entry for the OpenDP Deployments Registry.

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use crate::site::{self, AnyRecord, Curation, RecordError, SiteError};
use crate::{Error, Fault};

/// The curator's fields of the registry entry, which the warehouse cannot know.
#[derive(clap::Args, Clone, Default)]
pub(super) struct CurationArgs {
    /// The deployment's name in the registry entry.
    #[arg(long = "deployment-name")]
    deployment_name: Option<String>,
    /// An agency that publishes the figures (repeat for several).
    #[arg(long)]
    curator: Vec<String>,
    /// Where the registry's maintainers reach the curator (an address or a URL).
    #[arg(long)]
    contact: Option<String>,
    /// Where the programs are, such as a state.
    #[arg(long)]
    region: Option<String>,
    /// The programs key each person with one shared pseudonymisation key, so the privacy unit
    /// is a survivor across programs; without it, a survivor within a program.
    #[arg(long)]
    shared_keys: bool,
}

impl CurationArgs {
    fn curation(self) -> Result<Curation, Error> {
        let blank = |flag: &str, v: &str| {
            if v.trim().is_empty() {
                Err(Error::Usage(format!(
                    "{flag} is empty: give a value or leave the flag out"
                )))
            } else {
                Ok(())
            }
        };
        for c in &self.curator {
            blank("--curator", c.as_str())?;
        }
        for (flag, v) in [
            ("--deployment-name", &self.deployment_name),
            ("--contact", &self.contact),
            ("--region", &self.region),
        ] {
            if let Some(v) = v {
                blank(flag, v.as_str())?;
            }
        }
        Ok(Curation {
            name: self.deployment_name,
            curators: self.curator,
            contact: self.contact,
            region: self.region,
            shared_keys: self.shared_keys,
        })
    }
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach export-site --warehouse wh --out site\n",
    "  outreach export-site --warehouse wh --out /srv/www/outreach --curator \"State Department of Health\" --region Vermont",
))]
pub(super) struct ExportSiteArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// The mirror's folder: new, empty, or a mirror written before (only what changed is
    /// rewritten).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    curation: CurationArgs,
}

/// How `verify` prints its report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum ReportFormat {
    /// Plain words.
    #[default]
    Text,
    /// One JSON object: `verified`, `record`, and `report` or `error`.
    Json,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach verify site --public-key outreach-key.pub\n",
    "  outreach verify https://data.example.gov/outreach/ --public-key outreach-key.pub --format json\n",
    "  outreach verify https://data.example.gov/outreach/ --public-key outreach-key.pub --since saved/v1/ledger/head.json",
))]
pub(super) struct VerifyArgs {
    /// A mirror's folder (`export-site --out`), or the http(s) URL it is served from.
    site_or_url: String,
    /// The warehouse's public key, as `outreach key show` prints it: a file that holds it, or
    /// the key itself.
    #[arg(long)]
    public_key: String,
    /// text (plain words) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// A signed head saved earlier (`v1/ledger/head.json` or `v1/ledger/heads/SIZE.json` of an
    /// older copy): passes only if today's chain extends it, directly or across a recorded
    /// recovery that cites it.
    #[arg(long, value_name = "HEAD_FILE")]
    since: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach disclosure --warehouse wh --curator \"State Department of Health\" --contact dp@health.example.gov\n",
    "  outreach disclosure --warehouse wh --region Vermont --shared-keys --out disclosure.yaml",
))]
pub(super) struct DisclosureArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// Write the entry to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    curation: CurationArgs,
}

/// A mirror's error as the crate's: its fault decides the exit code.
fn site_error(e: SiteError) -> Error {
    match e {
        SiteError::Warehouse(e) => e,
        other => match other.fault() {
            Fault::Usage | Fault::BadInput => Error::Usage(other.to_string()),
            _ => Error::Internal(other.to_string()),
        },
    }
}

fn record_error(e: RecordError) -> Error {
    match e.fault() {
        Fault::Usage | Fault::BadInput => Error::Usage(e.to_string()),
        _ => Error::Internal(e.to_string()),
    }
}

/// `outreach export-site`.
pub(super) fn run_export_site(args: ExportSiteArgs) -> Result<(), Error> {
    let ExportSiteArgs {
        warehouse,
        out,
        curation,
    } = args;
    let curation = curation.curation()?;
    let done = super::runtime()
        .block_on(site::export_site(&warehouse, &out, &curation))
        .map_err(site_error)?;
    let mut text = format!(
        "Wrote the public record to {}: {} files, {} new or changed, {} unchanged{}.\n",
        out.display(),
        done.files,
        done.written.len(),
        done.unchanged,
        if done.removed.is_empty() {
            String::new()
        } else {
            format!(", {} removed (their routes are gone)", done.removed.len())
        }
    );
    text.push_str(&format!(
        "Serve the folder from any static host (the files sit at the API's paths, such as \
         v1/programs.json), and check it with:\n  outreach key show --warehouse {}\n  outreach verify {} --public-key KEY\n",
        warehouse.display(),
        out.display()
    ));
    super::out(&text)
}

/// The key `--public-key` gives: the text of the file it names, or itself.
fn key_text(arg: &str) -> Result<String, Error> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("--public-key: cannot read {arg}: {e}")))
    } else {
        Ok(arg.to_string())
    }
}

/// The signed head saved in `path` (the JSON of `v1/ledger/head.json`), and the saved mirror
/// it sits in when its pages are beside it (`SITE/v1/ledger/head.json` or
/// `SITE/v1/ledger/heads/SIZE.json`), which names the first entry that differs.
fn saved_head(
    path: &std::path::Path,
) -> Result<
    (
        crate::present::views::LedgerHead,
        Option<site::FolderRecord>,
    ),
    Error,
> {
    let text = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("--since: cannot read {}: {e}", path.display())))?;
    let head = serde_json::from_slice(&text).map_err(|e| {
        Error::Usage(format!(
            "--since: {} is not a signed head as v1/ledger/head.json serves it: {e}",
            path.display()
        ))
    })?;
    let ledger_dir = path.parent().and_then(|p| {
        if p.file_name().is_some_and(|n| n == "heads") {
            p.parent()
        } else {
            Some(p)
        }
    });
    let mirror = ledger_dir
        .filter(|d| d.file_name().is_some_and(|n| n == "ledger"))
        .and_then(|d| d.parent())
        .filter(|v1| v1.file_name().is_some_and(|n| n == "v1"))
        .and_then(|v1| v1.parent())
        .filter(|root| root.join("v1/ledger/pages/1.json").is_file())
        .and_then(|root| site::FolderRecord::open(root).ok());
    Ok((head, mirror))
}

/// `outreach verify`: exit 0 when everything holds; exit 1 naming what does not.
pub(super) fn run_verify(args: VerifyArgs) -> Result<(), Error> {
    let VerifyArgs {
        site_or_url,
        public_key,
        format,
        since,
    } = args;
    let key = crate::verify::parse_public_key(&key_text(&public_key)?)
        .map_err(|e| Error::Usage(format!("--public-key: {e}")))?;
    let saved = since.as_deref().map(saved_head).transpose()?;
    let record = AnyRecord::open(&site_or_url).map_err(record_error)?;
    let outcome = match &saved {
        None => crate::verify::verify(&record, &key).map(|r| r.to_string()),
        Some((head, mirror)) => crate::verify::verify_since(
            &record,
            &key,
            head,
            mirror
                .as_ref()
                .map(|m| m as &dyn crate::verify::PublicRecord),
        )
        .map(|(r, s)| format!("{r}\n{s}")),
    };
    let json = |verified: bool, field: &str, text: String| {
        let mut v = serde_json::json!({ "verified": verified, "record": site_or_url });
        v[field] = serde_json::Value::String(text);
        format!("{v}\n")
    };
    match outcome {
        Ok(report) => super::out(&match format {
            ReportFormat::Text => {
                format!("{report}\nThe public record at {site_or_url} verifies.\n")
            }
            ReportFormat::Json => json(true, "report", report.to_string()),
        }),
        Err(e) => {
            if format == ReportFormat::Json {
                super::out(&json(false, "error", e.to_string()))?;
            }
            Err(Error::Unverified(format!(
                "the public record at {site_or_url} does not verify: {e}"
            )))
        }
    }
}

/// `outreach disclosure`.
pub(super) fn run_disclosure(args: DisclosureArgs) -> Result<(), Error> {
    let DisclosureArgs {
        warehouse,
        out,
        curation,
    } = args;
    let curation = curation.curation()?;
    let yaml = site::disclosure(&warehouse, &curation)
        .map_err(site_error)?
        .emit();
    match out {
        None => super::out(&yaml),
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(Error::Usage(format!(
                    "--out: the folder {} does not exist",
                    dir.display()
                )));
            }
            crate::warehouse::write_atomic(&path, yaml.as_bytes())?;
            super::out(&format!("Wrote {}.\n", path.display()))
        }
    }
}
