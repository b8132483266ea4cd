//! What the shell and `man` are given about `outreach`, generated from the same definitions
//! the command line parses with, so neither can drift from the flags: `outreach completions`
//! prints a shell's completion script, and `outreach man` writes a manual page per command.

use std::path::PathBuf;

use clap::CommandFactory;

use super::Cli;
use crate::Error;
use crate::warehouse::{create_dir_synced, write_atomic};

/// A shell that `outreach completions` writes a script for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach completions bash > ~/.local/share/bash-completion/completions/outreach\n",
    "  outreach completions zsh > ~/.zfunc/_outreach\n",
    "  outreach completions fish > ~/.config/fish/completions/outreach.fish",
))]
pub(super) struct CompletionsArgs {
    /// The shell to complete `outreach` in.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach man --dir /usr/local/share/man/man1\n",
    "  outreach man --dir man",
))]
pub(super) struct ManArgs {
    /// Folder to write the pages into (created if missing): `outreach.1`, and
    /// `outreach-COMMAND.1` for each command and subcommand, such as `outreach-budget-init.1`.
    #[arg(long)]
    dir: PathBuf,
}

/// `outreach completions`: the script on stdout.
pub(super) fn run_completions(args: CompletionsArgs) -> Result<(), Error> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "outreach", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Error::Internal(format!("the completion script is not UTF-8: {e}")))?;
    super::out(&script)
}

/// `outreach man`: one page per command, each written whole or not at all (a temporary
/// file renamed into place), so a page a reader opens is never half written.
pub(super) fn run_man(args: ManArgs) -> Result<(), Error> {
    let pages = man_pages()?;
    create_dir_synced(&args.dir)?;
    for (name, page) in &pages {
        write_atomic(&args.dir.join(name), page)?;
    }
    super::out(&format!(
        "Wrote {} manual pages to {}.\n",
        pages.len(),
        args.dir.display()
    ))
}

/// Every command's page, with its file name (`outreach.1`, `outreach-release.1`, …): the
/// tree as `outreach --help` shows it, without clap's `help` subcommands.
fn man_pages() -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    add_pages(&root, &mut pages)?;
    Ok(pages)
}

/// The page of `cmd`, then those of its subcommands.
fn add_pages(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<(), Error> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(concat!("outreach ", env!("CARGO_PKG_VERSION")))
        .manual("Outreach Warehouse");
    let mut page = Vec::new();
    man.render(&mut page).map_err(|e| {
        Error::Internal(format!("the manual page of {} failed: {e}", cmd.get_name()))
    })?;
    pages.push((man.get_filename(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub, pages)?;
    }
    Ok(())
}
