//! `outreach key`: the warehouse's signing key of its public ledger chain. `show` prints the
//! public key, to publish somewhere other than the warehouse's own site, so that anyone can
//! check the public record with it (`outreach verify --public-key`). The signing key itself
//! never leaves `ledger.sqlite`.

use std::path::PathBuf;

use clap::Subcommand;

use super::WAREHOUSE_ENV;
use crate::Error;
use crate::ledger::Ledger;
use crate::ledger::chain::PUBLIC_KEY_LABEL;

#[derive(Subcommand)]
pub(super) enum KeyCommand {
    /// Print the public key of the ledger chain's signing key (hex, and the line `verify --public-key` reads).
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach key show --warehouse wh\n",
        "  outreach key show --warehouse wh > ledger-key.txt",
    ))]
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
    },
}

pub(super) fn run_key(command: KeyCommand) -> Result<(), Error> {
    match command {
        KeyCommand::Show { warehouse } => {
            // Opening the ledger migrates one from before the chain, which draws its key.
            let key = Ledger::open(&warehouse)?.public_key_hex()?;
            super::out(&format!(
                "public key (Ed25519, hex): {key}\n{PUBLIC_KEY_LABEL} {key}\n"
            ))?;
            super::note(
                "Publish this key somewhere other than the warehouse's own site (an agency page, a report, a repository). Anyone can then check the public record with it: `outreach verify SITE_OR_URL --public-key FILE`, where FILE holds the line above (or this whole output).",
            );
        }
    }
    Ok(())
}
