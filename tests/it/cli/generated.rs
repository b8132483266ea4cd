//! `outreach completions` and `outreach man`, generated from the parser's own definitions:
//! the scripts name the commands and flags, and there is a manual page for every command.

use std::collections::BTreeSet;

use clap::CommandFactory;
use outreach_warehouse::cli::Cli;

use super::flags::commands;
use crate::common::releases::{ok, outreach};

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&outreach().args(["completions", shell]).output().unwrap());
        for word in ["outreach", "release", "completions", "warehouse"] {
            assert!(script.contains(word), "{shell}: no {word} in\n{script}");
        }
    }
    // Another shell is refused by the parser, which names those there are.
    let out = outreach()
        .args(["completions", "powershell"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

#[test]
fn man_writes_a_page_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    // Created with its parents.
    let dir = tmp.path().join("share/man/man1");
    ok(&outreach()
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap());
    let root = Cli::command();
    let expected: BTreeSet<String> = commands(&root)
        .iter()
        .map(|(words, _)| {
            let name: Vec<&str> = std::iter::once("outreach")
                .chain(words.iter().map(String::as_str))
                .collect();
            format!("{}.1", name.join("-"))
        })
        .collect();
    // Every page, and nothing else: no temporary file is left behind.
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written, expected);
    for name in &written {
        let page = std::fs::read_to_string(dir.join(name)).unwrap();
        let title = name.trim_end_matches(".1");
        assert!(page.contains(&format!(".TH {title} 1")), "{name}:\n{page}");
    }
    let release = std::fs::read_to_string(dir.join("outreach-release.1")).unwrap();
    assert!(
        release.contains("spec") && release.contains("Examples:"),
        "{release}"
    );
    // Written again over the same pages.
    ok(&outreach()
        .args(["man", "--dir"])
        .arg(&dir)
        .output()
        .unwrap());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), expected.len());
}
