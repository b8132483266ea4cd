//! The tree reads as the pipeline: `src/lib.rs` lists its modules in order, no module uses
//! one listed after it, and the README's drawing of the tree names every module and file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The modules in the order `src/lib.rs`'s map lists them (`//! - [`name`]: …`).
fn declared_order() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split_once("`]"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The `pub mod` lines of `src/lib.rs`.
fn declared_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/x.rs` or `src/x/…`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The crate's modules a line of code names through `crate::` (comments removed). The
/// crate root's re-exports count as the modules they come from: `Error` and `Result` from
/// `error`, `Fault` from `fault`.
fn modules_named(line: &str) -> Vec<String> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![after]
        };
        for n in names {
            let n = n.trim();
            let head: String = n
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let module = match head.as_str() {
                "Error" | "Result" => "error".to_string(),
                "Fault" => "fault".to_string(),
                "" | "self" => continue,
                h => h.to_string(),
            };
            out.push(module);
        }
        rest = after;
    }
    out
}

/// Every `crate::` arrow in `src/` that points at a module listed after the one it is in.
fn arrows_back_up(order: &[String]) -> Vec<String> {
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let Some(own) = rank(&module) else {
            bad.push(format!(
                "{}: module `{module}` is not in lib.rs's map",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for used in modules_named(line) {
                match rank(&used) {
                    Some(r) if r <= own => {}
                    Some(_) => bad.push(format!(
                        "{}:{}: `{module}` uses `{used}`, listed after it: {}",
                        file.strip_prefix(root()).unwrap().display(),
                        n + 1,
                        line.trim()
                    )),
                    None => bad.push(format!(
                        "{}:{}: `crate::{used}` is not a module in lib.rs's map",
                        file.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    bad
}

#[test]
fn lib_rs_lists_every_module_once_in_pipeline_order() {
    let order = declared_order();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        order.len(),
        "a module is listed twice: {order:?}"
    );
    assert_eq!(
        listed,
        declared_modules(),
        "lib.rs's map and its `pub mod` lines differ"
    );
    // The pipeline's stages come in the order the data flows.
    let at = |m: &str| order.iter().position(|o| o == m).unwrap();
    for pair in [
        ["warehouse", "ingest"],
        ["ingest", "ledger"],
        ["ledger", "privacy"],
        ["privacy", "metrics"],
        ["metrics", "publication"],
        ["publication", "present"],
        ["present", "api"],
        ["api", "cli"],
    ] {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} must come before {}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn no_module_uses_a_module_listed_after_it() {
    let bad = arrows_back_up(&declared_order());
    assert!(
        bad.is_empty(),
        "arrows back up the pipeline:\n{}",
        bad.join("\n")
    );
}

/// The check itself catches an arrow back up: with `present` listed before `publication`,
/// the presentation stage's use of the publication document is one.
#[test]
fn the_import_check_sees_an_arrow_back_up() {
    let mut order = declared_order();
    let present = order.iter().position(|m| m == "present").unwrap();
    let moved = order.remove(present);
    let publication = order.iter().position(|m| m == "publication").unwrap();
    order.insert(publication, moved);
    let bad = arrows_back_up(&order);
    assert!(
        bad.iter()
            .any(|b| b.contains("`present` uses `publication`")),
        "{bad:?}"
    );
    assert_eq!(
        modules_named("use crate::{Error, Result, ledger::Ledger}; // crate::api"),
        ["error", "error", "ledger"]
    );
}

/// The README's drawing of the tree (`## Layout of the code`) names every module of
/// `src/` in the order of lib.rs's map, and every path it names exists.
#[test]
fn the_readme_draws_the_tree_as_it_is() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Layout of the code")
        .nth(1)
        .expect("README has a `## Layout of the code` section");
    let block = section
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the layout section draws the tree in a ```text block");
    let mut drawn = Vec::new();
    let mut dir: Vec<String> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        let name = line.split_whitespace().next().unwrap();
        let depth = indent / 2;
        dir.truncate(depth);
        let path = format!("{}{name}", dir.concat());
        assert!(
            root().join(&path).exists(),
            "the README's tree names {path}, which does not exist"
        );
        if name.ends_with('/') {
            dir.push(name.to_string());
        }
        drawn.push(path);
    }
    let modules: Vec<String> = drawn
        .iter()
        .filter_map(|p| p.strip_prefix("src/"))
        .filter(|p| !p.contains('/') || p.matches('/').count() == 1 && p.ends_with('/'))
        .map(|p| p.trim_end_matches('/').trim_end_matches(".rs").to_string())
        .filter(|m| !m.is_empty() && m != "lib" && m != "main")
        .collect();
    assert_eq!(
        modules,
        declared_order(),
        "the README's tree of src/ and lib.rs's map differ"
    );
}
