//! `outreach disclosure`: the registry entry parses as the OpenDP Deployments Registry's
//! template (`opendp/deployments-registry-data`, `tests/good_deployments/template.yaml`), no
//! key missing and none added, and carries the ledger's totals; the curator's fields come
//! from the flags; the mirror holds the same entry.

use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::privacy::mechanism::epsilon_at;
use serde_json::{Value, json};

use super::{export, run, site_in};
use crate::common::server::published;

/// Block YAML as the entry is written (maps, lists, JSON-quoted strings, numbers, booleans,
/// null, `[]` and `{}`) read into JSON; anything else panics, so the test fails on a form the
/// emitter should not write.
pub(crate) fn parse_yaml(text: &str) -> Value {
    let mut lines: Vec<(usize, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (l.len() - l.trim_start().len(), l.trim_start().to_string()))
        .collect();
    let mut at = 0;
    let v = block(&mut lines, &mut at, 0);
    assert_eq!(
        at,
        lines.len(),
        "text left after the top-level block: {:?}",
        lines.get(at)
    );
    v
}

fn scalar(text: &str) -> Value {
    match text {
        "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "[]" => json!([]),
        "{}" => json!({}),
        t => serde_json::from_str(t).unwrap_or_else(|e| panic!("not a scalar {t:?}: {e}")),
    }
}

/// A key and the rest of a `key: value` line, when the line is one.
fn key_of(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some((key, rest.trim()))
}

fn block(lines: &mut Vec<(usize, String)>, at: &mut usize, indent: usize) -> Value {
    if lines[*at].1.starts_with("- ") {
        let mut items = Vec::new();
        while *at < lines.len() && lines[*at].0 == indent && lines[*at].1.starts_with("- ") {
            let rest = lines[*at].1[2..].to_string();
            if rest.starts_with('"') || key_of(&rest).is_none() {
                items.push(scalar(&rest));
                *at += 1;
            } else {
                lines[*at] = (indent + 2, rest);
                items.push(block(lines, at, indent + 2));
            }
        }
        return Value::Array(items);
    }
    let mut map = serde_json::Map::new();
    while *at < lines.len() && lines[*at].0 == indent {
        let line = lines[*at].1.clone();
        let (key, rest) = key_of(&line).unwrap_or_else(|| panic!("not a key: {line:?}"));
        *at += 1;
        let value = if rest.is_empty() {
            let child = lines[*at].0;
            assert!(child > indent, "{key}: an empty value");
            block(lines, at, child)
        } else {
            scalar(rest)
        };
        assert!(map.insert(key.to_string(), value).is_none(), "{key} twice");
    }
    Value::Object(map)
}

/// The keys of the registry's template, as paths.
const TEMPLATE: &[&str] = &[
    "url_slug",
    "deployment.basic.name",
    "deployment.basic.data_curators",
    "deployment.basic.description",
    "deployment.basic.intended_use",
    "deployment.basic.data_product_type",
    "deployment.basic.data_product_region",
    "deployment.basic.data_product_sector",
    "deployment.basic.publication_date",
    "deployment.dp_variant.variant_name",
    "deployment.dp_variant.data_domain",
    "deployment.dp_variant.unprotected_quantities",
    "deployment.privacy_loss.privacy_unit",
    "deployment.privacy_loss.privacy_unit_details",
    "deployment.privacy_loss.number_of_privacy_units",
    "deployment.privacy_loss.privacy_parameters.epsilon",
    "deployment.privacy_loss.privacy_parameters.delta",
    "deployment.privacy_loss.privacy_parameters.rho",
    "deployment.privacy_loss.privacy_parameters_details",
    "deployment.deployment_model.model_name",
    "deployment.deployment_model.model_name_details",
    "deployment.deployment_model.trust_assumptions",
    "deployment.deployment_model.actors",
    "deployment.deployment_model.release_type",
    "deployment.deployment_model.release_type_details",
    "deployment.deployment_model.data_source_type",
    "deployment.deployment_model.data_source_type_details",
    "deployment.deployment_model.access_type",
    "deployment.deployment_model.access_type_details",
    "deployment.implementation.preprocessing_and_hyperparameter_tuning",
    "deployment.implementation.mechanisms",
    "deployment.implementation.composition",
    "deployment.implementation.post_processing",
    "deployment.implementation.justification",
    "deployment.implementation.utility",
    "deployment.implementation.additional_information",
    "deployment.administrative.status",
    "deployment.administrative.registry_authors",
    "deployment.administrative.tier",
];

/// Every leaf path of a parsed entry (lists are leaves).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(x, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_disclosure_carries_the_ledgers_totals_and_parses_as_the_registry_template() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let out = run(&wh, &["disclosure"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let entry = parse_yaml(&text);
    let mut keys = Vec::new();
    leaves(&entry, "", &mut keys);
    keys.sort();
    let mut template: Vec<String> = TEMPLATE.iter().map(|k| k.to_string()).collect();
    template.sort();
    assert_eq!(keys, template, "the entry's keys are not the template's");
    // The ledger's totals: lifetime ρ, ε at the display δ, the spends of the period.
    let budget = Ledger::open(&wh).unwrap().show().unwrap();
    let d = budget.config.display_delta;
    let params = at(&entry, "deployment.privacy_loss.privacy_parameters");
    assert_eq!(params["rho"].as_f64().unwrap(), budget.lifetime_rho);
    assert!(budget.lifetime_rho > 0.0);
    assert_eq!(
        params["epsilon"].as_f64().unwrap(),
        epsilon_at(budget.lifetime_rho, d).unwrap()
    );
    assert_eq!(params["delta"].as_f64().unwrap(), d + budget.lifetime_delta);
    let details = at(&entry, "deployment.privacy_loss.privacy_parameters_details")
        .as_str()
        .unwrap();
    for figure in [budget.spent_rho, budget.period.total_rho] {
        assert!(
            details.contains(&figure.to_string()),
            "{figure} not in {details}"
        );
    }
    assert_eq!(
        at(&entry, "deployment.dp_variant.variant_name"),
        "Zero-concentrated DP"
    );
    assert_eq!(at(&entry, "deployment.administrative.status"), "Draft");
    assert_eq!(at(&entry, "deployment.administrative.tier"), 3);
    assert!(
        at(&entry, "deployment.privacy_loss.privacy_unit_details")
            .as_str()
            .unwrap()
            .contains("per program key")
    );
    // The publication date is the latest publication's day.
    let day = at(&entry, "deployment.basic.publication_date")
        .as_str()
        .unwrap();
    assert_eq!(day.len(), 10, "{day}");
    // Post-processing states clamping and the completeness rule.
    let post = at(&entry, "deployment.implementation.post_processing")
        .as_str()
        .unwrap();
    assert!(
        post.contains("clamped") && post.contains("declared complete"),
        "{post}"
    );
    // Where a YAML 1.1 reader is at hand (PyYAML), it reads the same entry.
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = py {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let done = child.wait_with_output().unwrap();
        if done.status.success() {
            let read: Value = serde_json::from_slice(&done.stdout).unwrap();
            assert_eq!(read, entry, "PyYAML reads the entry otherwise");
        } else {
            eprintln!("PyYAML not installed: the entry was read by the test's own reader only");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_curators_fields_come_from_the_flags_and_shared_keys_change_the_privacy_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // A curator's name that would break a naive emitter: a colon, quotes, a line break.
    let curator = "Dept. of Health: \"Overdose\" unit\nsecond line # not a comment";
    let file = tmp.path().join("entry.yaml");
    let out = run(
        &wh,
        &[
            "disclosure",
            "--deployment-name",
            "Vermont outreach figures",
            "--curator",
            curator,
            "--curator",
            "Office of Research",
            "--contact",
            "dp@health.example.gov",
            "--region",
            "Vermont",
            "--shared-keys",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = parse_yaml(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        at(&entry, "deployment.basic.name"),
        "Vermont outreach figures"
    );
    assert_eq!(
        at(&entry, "deployment.basic.data_curators"),
        &json!([
            {"data_curator_name": curator, "data_curator_type": "Government"},
            {"data_curator_name": "Office of Research", "data_curator_type": "Government"}
        ])
    );
    assert_eq!(
        at(&entry, "deployment.basic.data_product_region"),
        "Vermont"
    );
    assert_eq!(
        at(&entry, "deployment.administrative.registry_authors"),
        &json!(["dp@health.example.gov"])
    );
    let unit = at(&entry, "deployment.privacy_loss.privacy_unit_details")
        .as_str()
        .unwrap();
    assert!(unit.contains("shared"), "{unit}");
    assert!(!unit.contains("per program key"), "{unit}");
    // A flag given empty is refused, naming it; an --out in no folder too.
    let empty = run(&wh, &["disclosure", "--curator", " "]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("--curator"));
    let nowhere = tmp.path().join("no/such/folder/entry.yaml");
    let bad_out = run(&wh, &["disclosure", "--out", nowhere.to_str().unwrap()]);
    assert_eq!(bad_out.status.code(), Some(2));
    assert!(!nowhere.exists());
    // The mirror holds the entry made from export-site's own flags.
    let site = site_in(tmp.path());
    export(
        &wh,
        &site,
        &[
            "--deployment-name",
            "Mirror name",
            "--curator",
            "Mirror curator",
            "--contact",
            "mirror@example.gov",
            "--region",
            "Maine",
            "--shared-keys",
        ],
    );
    let mirrored = parse_yaml(&std::fs::read_to_string(site.join("disclosure.yaml")).unwrap());
    assert_eq!(at(&mirrored, "deployment.basic.name"), "Mirror name");
    assert_eq!(
        at(&mirrored, "deployment.basic.data_curators")[0]["data_curator_name"],
        "Mirror curator"
    );
    assert_eq!(
        at(&mirrored, "deployment.basic.data_product_region"),
        "Maine"
    );
    assert_eq!(
        at(&mirrored, "deployment.administrative.registry_authors"),
        &json!(["mirror@example.gov"])
    );
    assert!(
        at(&mirrored, "deployment.privacy_loss.privacy_unit_details")
            .as_str()
            .unwrap()
            .contains("shared")
    );
    // The warehouse flag is honoured over the variable.
    let elsewhere = run(
        &tmp.path().join("nowhere"),
        &["disclosure", "--warehouse", wh.to_str().unwrap()],
    );
    assert!(elsewhere.status.success());
}
