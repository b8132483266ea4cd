//! `outreach pseudonymize`: run at each program, never at the warehouse. It turns a raw export
//! that holds direct identifiers into an export keyed by `person_key` (HMAC-SHA-256 under the
//! state's key), and makes the state's key file with `--new-key-file`.
//!
//! The key file is made by a flag of the same command rather than a command of its own: the
//! steward makes it once, and the programs then run one command, whose help names both uses.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::present::tables::terminal_safe;
use crate::pseudonymize::{Config, LinkageKey, PseudonymizeError, pseudonymize};
use crate::warehouse::{MANIFEST_FILE, TABLES_DIR};

#[derive(clap::Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  outreach pseudonymize --new-key-file state-linkage.key\n",
    "  outreach pseudonymize --key-file state-linkage.key --config linkage.toml raw/overdose_events.csv --out overdose_events.csv",
))]
pub(super) struct PseudonymizeArgs {
    /// The state's linkage key file: 64 hexadecimal digits, readable by its owner only (mode 600).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "new_key_file",
        conflicts_with = "new_key_file"
    )]
    key_file: Option<PathBuf>,
    /// The state's linkage config (TOML): linkage fields, match keys, columns kept and dropped.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "new_key_file",
        conflicts_with = "new_key_file"
    )]
    config: Option<PathBuf>,
    /// The raw export (CSV with a header line), which holds direct identifiers.
    #[arg(
        value_name = "INPUT",
        required_unless_present = "new_key_file",
        conflicts_with = "new_key_file"
    )]
    input: Option<PathBuf>,
    /// The pseudonymised export to write, a new file named after its table (overdose_events.csv).
    #[arg(
        long,
        value_name = "OUTPUT",
        required_unless_present = "new_key_file",
        conflicts_with = "new_key_file"
    )]
    out: Option<PathBuf>,
    /// Make the state's new key file (32 random bytes, mode 600); an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
}

/// `outreach pseudonymize`.
pub(super) fn run_pseudonymize(args: PseudonymizeArgs) -> Result<(), Error> {
    let PseudonymizeArgs {
        key_file,
        config,
        input,
        out,
        new_key_file,
    } = args;
    if let Some(path) = new_key_file {
        LinkageKey::create(&path)?;
        return super::out(&format!(
            "Wrote the new key file {} (mode 600). Give it to every program out of band; never \
             send it to the warehouse.\n",
            path.display()
        ));
    }
    let (Some(key_file), Some(config_path), Some(input), Some(output)) =
        (key_file, config, input, out)
    else {
        return Err(Error::Usage(
            "pseudonymize needs --key-file, --config, INPUT and --out, or --new-key-file alone"
                .into(),
        ));
    };
    refuse_warehouse_folder(&output)?;
    let config = Config::load(&config_path)?;
    let key = LinkageKey::load(&key_file)?;
    let today = chrono::Utc::now().date_naive();
    let summary = pseudonymize(&config, &config_path, &key, &input, &output, today)?;
    let mut text = format!(
        "Wrote {}: {} rows, {} distinct person keys.\n",
        output.display(),
        summary.rows,
        summary.persons
    );
    for (i, (mk, rows)) in config
        .match_keys
        .iter()
        .zip(&summary.rows_by_match_key)
        .enumerate()
    {
        let fields: Vec<&str> = mk
            .fields
            .iter()
            .map(|f| config.fields[*f].name.as_str())
            .collect();
        text.push_str(&format!(
            "  match key {} ({}): {rows} rows\n",
            i + 1,
            terminal_safe(&fields.join(", "))
        ));
    }
    text.push_str(&format!(
        "  columns written: person_key, {}\n  columns removed: {}\n",
        terminal_safe(&summary.kept.join(", ")),
        terminal_safe(&summary.removed.join(", "))
    ));
    super::out(&text)
}

/// Refuses an output inside a warehouse folder (a folder, or an ancestor of it, that holds a
/// manifest and a tables folder): pseudonymize runs at a program, and the export reaches the
/// warehouse through `outreach ingest` only.
fn refuse_warehouse_folder(output: &Path) -> Result<(), PseudonymizeError> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(dir) = dir.canonicalize() else {
        // A folder that does not exist: `pseudonymize` reports it.
        return Ok(());
    };
    for ancestor in dir.ancestors() {
        if ancestor.join(MANIFEST_FILE).is_file() && ancestor.join(TABLES_DIR).is_dir() {
            return Err(PseudonymizeError::Output {
                path: output.to_path_buf(),
                message: format!(
                    "is inside the warehouse {}: pseudonymize runs at the program; write the export \
                     elsewhere and load it with `outreach ingest`",
                    ancestor.display()
                ),
            });
        }
    }
    Ok(())
}
