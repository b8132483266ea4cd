//! The README's command table (section `## Commands`) is checked against the parser: every
//! command of `outreach`'s tree (`Cli::command()`) is a row of the table, and the table
//! names no command that the tree does not have.

use std::collections::BTreeSet;

use clap::CommandFactory;
use outreach_warehouse::cli::Cli;

/// Every command of the tree that runs (a leaf), as the words that follow `outreach`
/// (`budget show`); clap's own `help` is left out.
fn leaves(cmd: &clap::Command, path: &mut Vec<String>, out: &mut BTreeSet<String>) {
    let subcommands: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    if subcommands.is_empty() {
        out.insert(path.join(" "));
        return;
    }
    for sub in subcommands {
        path.push(sub.get_name().to_string());
        leaves(sub, path, out);
        path.pop();
    }
}

/// The first cell of a Markdown table's row; `\|` inside it is a `|`.
fn first_cell(row: &str) -> String {
    let row = row.trim().strip_prefix('|').unwrap_or(row);
    let mut cell = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => break,
            c => cell.push(c),
        }
    }
    cell.trim().to_string()
}

/// The commands that the `## Commands` table names: in each row's first cell, the words
/// after `outreach` up to the first that is not a command's name (a flag, a placeholder in
/// capitals, a `[`); `a|b` names both.
fn table_commands(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## Commands\n")
        .nth(1)
        .expect("the README has a ## Commands section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeSet::new();
    for row in section.lines().filter(|l| l.trim_start().starts_with('|')) {
        let cell = first_cell(row);
        let Some(command) = cell
            .strip_prefix('`')
            .and_then(|c| c.strip_prefix("outreach "))
        else {
            continue;
        };
        let mut paths = vec![String::new()];
        for word in command.trim_end_matches('`').split_whitespace() {
            let is_name = |w: &str| {
                !w.is_empty()
                    && !w.starts_with('-')
                    && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            };
            let names: Vec<&str> = word.split('|').collect();
            if !names.iter().copied().all(is_name) {
                break;
            }
            paths = paths
                .iter()
                .flat_map(|p| {
                    names.iter().map(move |n| {
                        if p.is_empty() {
                            n.to_string()
                        } else {
                            format!("{p} {n}")
                        }
                    })
                })
                .collect();
        }
        out.extend(paths.into_iter().filter(|p| !p.is_empty()));
    }
    out
}

#[test]
fn the_readme_command_table_names_every_command_of_the_parser_and_no_other() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = table_commands(&readme);
    let mut tree = BTreeSet::new();
    leaves(&Cli::command(), &mut Vec::new(), &mut tree);
    assert!(
        tree.contains("budget show") && tree.contains("release"),
        "{tree:?}"
    );
    let missing: Vec<&String> = tree.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "commands of the parser that the README's table does not name: {missing:?}"
    );
    let unknown: Vec<&String> = table.difference(&tree).collect();
    assert!(
        unknown.is_empty(),
        "commands in the README's table that the parser does not have: {unknown:?}"
    );
}

#[test]
fn the_table_reader_reads_alternatives_and_stops_at_the_arguments() {
    let readme = "intro\n## Commands\n\n| command | what it does |\n|---|---|\n\
        | `outreach budget show --warehouse DIR [--format table\\|json]` | x \\| y |\n\
        | `outreach requests list\\|show ID --warehouse DIR` | z |\n\
        | `outreach demo [--dir DIR]` | d |\n\
        | `outreach completions SHELL` | c |\n\n## Next\n| `outreach other` | o |\n";
    let read: Vec<String> = table_commands(readme).into_iter().collect();
    assert_eq!(
        read,
        [
            "budget show",
            "completions",
            "demo",
            "requests list",
            "requests show"
        ]
    );
}
