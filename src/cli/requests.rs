//! Researchers' access: `outreach requests` lists, shows, approves (runs the release,
//! debited from the researcher's allocation) or rejects their requests, and
//! `outreach tokens` creates, revokes and lists their bearer tokens for the API.

use std::path::PathBuf;

use clap::Subcommand;

use super::WAREHOUSE_ENV;
use crate::Error;
use crate::present::tables::{self as report, Format};
use crate::requests::{self, Queue, Role};

#[derive(Subcommand)]
pub(super) enum RequestsCommand {
    /// List every request with its state.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach requests list --warehouse wh\n",
        "  outreach requests list --warehouse wh --format json",
    ))]
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one request: purpose, spec, cost and accuracy, decision.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach requests show --warehouse wh 5f0c1a7e9b2d4c6e8f1a3b5c7d9e0f21",
    ))]
    Show {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        /// The request's id, as `requests list` shows it.
        id: String,
    },
    /// Approve a pending request: run its release, debited from `researcher:<name>`.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach requests approve --warehouse wh 5f0c1a7e9b2d4c6e8f1a3b5c7d9e0f21\n",
        "  outreach requests approve --warehouse wh 5f0c1a7e9b2d4c6e8f1a3b5c7d9e0f21 --approver sam --public",
    ))]
    Approve {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: String,
        /// Who approves (recorded with the release).
        #[arg(long, default_value = "steward")]
        approver: String,
        /// Publish the release to everyone, not only the researcher.
        #[arg(long)]
        public: bool,
    },
    /// Reject a pending request; the researcher sees your words.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach requests reject --warehouse wh 5f0c1a7e9b2d4c6e8f1a3b5c7d9e0f21 --why \"too close to release 12\"",
    ))]
    Reject {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        id: String,
        /// Why, for the researcher.
        #[arg(long)]
        why: String,
        /// Who rejects.
        #[arg(long, default_value = "steward")]
        approver: String,
    },
}

#[derive(Subcommand)]
pub(super) enum TokensCommand {
    /// Create a token; it is printed once and only its hash is kept.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach tokens create --warehouse wh --role researcher --name rosa",
    ))]
    Create {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The researcher's name: letters, digits, '-', '_', '.'.
        #[arg(long)]
        name: String,
    },
    /// Revoke a researcher's token: it gets 401 from then on.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach tokens revoke --warehouse wh rosa",
    ))]
    Revoke {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
        name: String,
    },
    /// List tokens (names, ids and dates, never the tokens). A request belongs to the token
    /// that submitted it.
    #[command(after_help = concat!(
        "Examples:\n",
        "  outreach tokens list --warehouse wh",
    ))]
    List {
        /// Warehouse folder.
        #[arg(long, env = WAREHOUSE_ENV)]
        warehouse: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum TokenRole {
    Researcher,
}

/// `outreach requests`.
pub(super) fn run_requests(command: RequestsCommand) -> Result<(), Error> {
    match command {
        RequestsCommand::List { warehouse, format } => {
            let list = Queue::open(&warehouse)?.list()?;
            super::out(&report::requests(&list, format))?;
        }
        RequestsCommand::Show { warehouse, id } => {
            let r = Queue::open(&warehouse)?.get(&id)?;
            // The purpose and the spec are the researcher's text.
            super::out(&format!("{}\n", report::json_for_terminal(&r)))?;
        }
        RequestsCommand::Approve {
            warehouse,
            id,
            approver,
            public,
        } => {
            // The release is debited, run and stored, and the decision recorded, before
            // anything is printed.
            let (r, outcome) =
                super::runtime().block_on(requests::approve(&warehouse, &id, &approver, public))?;
            let release = outcome.map(|o| o.id).unwrap_or_default();
            let researcher = report::terminal_safe(&r.researcher);
            super::out(&format!(
                "Request {} of {researcher} is released as release {release} ({}); it was debited from researcher:{researcher}.\n",
                report::terminal_safe(&id),
                if r.public {
                    "public"
                } else {
                    "visible to the researcher only"
                },
            ))?;
        }
        RequestsCommand::Reject {
            warehouse,
            id,
            why,
            approver,
        } => {
            let r = requests::reject(&warehouse, &id, &approver, &why)?;
            super::out(&format!(
                "Request {} of {} is rejected.\n",
                report::terminal_safe(&id),
                report::terminal_safe(&r.researcher)
            ))?;
        }
    }
    Ok(())
}

/// `outreach tokens`.
pub(super) fn run_tokens(command: TokensCommand) -> Result<(), Error> {
    match command {
        TokensCommand::Create {
            warehouse,
            role,
            name,
        } => {
            let role = match role {
                TokenRole::Researcher => Role::Researcher,
            };
            let token = Queue::open(&warehouse)?.create_token(&name, role)?;
            super::out(&format!("{token}\n"))?;
            super::note(&format!(
                "This is {name}'s token; it is shown once and only its hash is kept. Give it to them over a safe channel; they send it as `Authorization: Bearer <token>`. Their releases are debited from the allocation researcher:{name} (`outreach budget allocate researcher:{name} RHO`)."
            ));
        }
        TokensCommand::Revoke { warehouse, name } => {
            Queue::open(&warehouse)?.revoke_token(&name)?;
            super::out(&format!("{name}'s token is revoked.\n"))?;
        }
        TokensCommand::List { warehouse } => {
            for t in Queue::open(&warehouse)?.tokens()? {
                super::out(&format!(
                    "{}\ttoken {}\tcreated {}\t{}\n",
                    t.name,
                    t.id,
                    t.created_at,
                    t.revoked_at
                        .map(|r| format!("revoked {r}"))
                        .unwrap_or_else(|| "active".into())
                ))?;
            }
        }
    }
    Ok(())
}
