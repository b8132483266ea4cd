//! `outreach backup` and `outreach restore`: a consistent copy of a warehouse while
//! releases run, and its restore, checked whole before anything is replaced (see
//! [`crate::backup`]).

use std::path::PathBuf;

use super::WAREHOUSE_ENV;
use crate::Error;
use crate::backup::{self, CHECKSUMS_FILE};

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach backup --warehouse wh --out /mnt/backups/wh-2025-10-01\n",
    "  outreach backup --warehouse /srv/outreach/warehouse --out /mnt/backups/wh-nightly",
))]
pub(super) struct BackupArgs {
    /// Warehouse folder.
    #[arg(long, env = WAREHOUSE_ENV)]
    warehouse: PathBuf,
    /// The backup folder to write: new or empty, outside the warehouse.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach restore /mnt/backups/wh-2025-10-01 --to wh-restored\n",
    "  outreach restore /mnt/backups/wh-2025-10-01 --to wh",
))]
pub(super) struct RestoreArgs {
    /// The backup folder, as `outreach backup --out` wrote it.
    backup: PathBuf,
    /// Where to restore: a new or empty folder, or the warehouse the backup was taken of.
    #[arg(long)]
    to: PathBuf,
}

/// `outreach backup`.
pub(super) fn run_backup(args: BackupArgs) -> Result<(), Error> {
    let report = backup::backup(&args.warehouse, &args.out)?;
    super::out(&format!(
        "Backed up {} files ({} bytes, {} data files as hard links) to {}, with {CHECKSUMS_FILE}.\n",
        report.files.len(),
        report.bytes,
        report.linked,
        report.out.display()
    ))?;
    super::note(
        "Keep the backup off this host, encrypted at rest; never beside the pseudonymisation key file. Restore it with `outreach restore BACKUP --to DIR`.",
    );
    Ok(())
}

/// `outreach restore`.
pub(super) fn run_restore(args: RestoreArgs) -> Result<(), Error> {
    let report = backup::restore(&args.backup, &args.to)?;
    let mut text = format!(
        "Restored {} into {}: {} files matched {CHECKSUMS_FILE}, and SQLite's integrity_check passed.\n",
        args.backup.display(),
        report.to.display(),
        report.files
    );
    if let Some(aside) = &report.replaced {
        text.push_str(&format!(
            "The warehouse that was there is now {}; delete it by hand once the restored one serves.\n",
            aside.display()
        ));
    }
    super::out(&text)?;
    super::note(&format!(
        "Check it with `outreach status --warehouse {} --verify`.",
        report.to.display()
    ));
    Ok(())
}
