//! Every format of a listing carries the same facts: for each command with `--format`, the
//! table, the JSON and the CSV are compared column by column and value by value. Where a
//! table's column is named in prose, or its figures are rows of the CSV rather than columns,
//! the mapping to the JSON key and the CSV column is written beside the comparison. The
//! facts of a table's header lines (ρ, ε, k, the loss of a quarter) are looked for in the
//! table as it writes them, from the JSON's values.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use outreach_warehouse::api::app;
use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::publication::publish;
use serde_json::Value;

use crate::common::fixture::{opts, rt};
use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, ok, outreach, spec_toml};
use crate::common::server::{budgeted, published, roomy, submission, submit_id, with_researcher};
use crate::common::write;

/// `outreach ARGS --format FORMAT` over `wh`: its standard output, which must be a success's.
fn run(wh: &Path, args: &[&str], format: &str) -> String {
    ok(&outreach()
        .args(args)
        .args(["--format", format])
        .env(WAREHOUSE_ENV, wh)
        .output()
        .unwrap())
}

/// `outreach ARGS --format json` over `wh`, parsed.
fn json(wh: &Path, args: &[&str]) -> Value {
    let text = run(wh, args, "json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// `outreach ARGS --format csv` over `wh`: its header, and each line as column → field.
fn csv_of(wh: &Path, args: &[&str]) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let text = run(wh, args, "csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let lines = reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"));
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, lines)
}

/// The first `n` rows under the header of a table that the CLI aligned into columns, each
/// cell trimmed. `header` names the columns in order; only the first may be empty (a column
/// of row names). A column starts where its name starts in the header line.
fn grid(table: &str, header: &[&str], n: usize) -> Vec<Vec<String>> {
    let named: Vec<&str> = header.iter().copied().filter(|h| !h.is_empty()).collect();
    let lines: Vec<&str> = table.lines().collect();
    let in_order = |line: &str| {
        let mut from = 0;
        named.iter().all(|h| match line[from..].find(h) {
            Some(i) => {
                from += i + h.len();
                true
            }
            None => false,
        })
    };
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(named[0]) && in_order(l))
        .unwrap_or_else(|| panic!("no header {header:?} in\n{table}"));
    let mut starts = Vec::new();
    let mut from = 0;
    for h in header {
        if h.is_empty() {
            // The table's left margin: a space, then the space before each cell.
            starts.push(2);
            continue;
        }
        let i = from + lines[at][from..].find(h).unwrap();
        starts.push(i);
        from = i + h.len();
    }
    assert!(lines.len() > at + n, "fewer than {n} rows in\n{table}");
    lines[at + 1..=at + n]
        .iter()
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            (0..starts.len())
                .map(|i| {
                    let start = starts[i].min(chars.len());
                    let end = starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(chars.len())
                        .clamp(start, chars.len());
                    chars[start..end]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// Whether `shown`, a number as a table rounds it, is `v` to the digits it shows.
fn shows(shown: &str, v: f64) -> bool {
    let Ok(x) = shown.parse::<f64>() else {
        return false;
    };
    let digits = shown
        .split('.')
        .nth(1)
        .map_or(0, |d| d.chars().take_while(char::is_ascii_digit).count());
    (x - v).abs() <= 0.5 * 10f64.powi(-(digits as i32)) * (1.0 + 1e-9) + 1e-12
}

/// Whether a table's cell shows the JSON value `v`: text as it is, a number to the digits
/// shown, nothing as `-` or an empty cell.
fn table_shows(cell: &str, v: &Value) -> bool {
    match v {
        Value::Null => cell == "-" || cell.is_empty(),
        Value::String(s) => cell == s,
        Value::Bool(b) => cell == b.to_string(),
        Value::Number(n) => shows(cell, n.as_f64().unwrap()),
        _ => false,
    }
}

/// Whether a CSV field holds the JSON value `v` exactly: text as it is, the same number,
/// nothing as an empty field.
fn csv_holds(field: &str, v: &Value) -> bool {
    match v {
        Value::Null => field.is_empty(),
        Value::String(s) => field == s,
        Value::Bool(b) => field == b.to_string(),
        Value::Number(n) => field.parse::<f64>().ok() == n.as_f64(),
        _ => false,
    }
}

/// The value at a dotted `path` of `v` (`period.total_rho`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| &v[key])
}

/// A number of the JSON.
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A text of the JSON.
fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a text: {v}"))
}

/// The fixture warehouse in `tmp/wh` with ρ 1 in the allocation `std` and one release of
/// persons per program and quarter debited from it; the warehouse and the release's id.
fn with_a_release(tmp: &Path) -> (PathBuf, i64) {
    let wh = budgeted(tmp, "2025-12-31");
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let spec = write(
        tmp,
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let released = json(&wh, &["release", "--spec", spec.to_str().unwrap()]);
    (wh, released["id"].as_i64().unwrap())
}

/// The budget table's columns: its header, the JSON key of the total's line (a path from
/// the top), the JSON key of an allocation's line, and the CSV column. The first column
/// names the line: `total`, or the allocation (CSV: `row` says which, `allocation` names it).
const BUDGET_COLUMNS: [(&str, &str, &str, &str); 6] = [
    ("", "", "name", "allocation"),
    ("rho", "period.total_rho", "rho", "rho"),
    ("spent", "spent_rho", "spent_rho", "spent_rho"),
    ("left", "remaining_rho", "remaining_rho", "remaining_rho"),
    ("epsilon(total)", "total_epsilon", "epsilon", "epsilon"),
    (
        "epsilon(spent)",
        "spent_epsilon",
        "spent_epsilon",
        "spent_epsilon",
    ),
];

#[test]
fn budget_show_gives_every_figure_of_its_table_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, _) = with_a_release(tmp.path());
    let args = ["budget", "show"];
    let table = run(&wh, &args, "table");
    let v = json(&wh, &args);
    let (_, lines) = csv_of(&wh, &args);
    // ε beside ρ, the same ε as `/v1/budget`'s.
    let api =
        outreach_warehouse::present::views::budget(&Ledger::open(&wh).unwrap().show().unwrap())
            .unwrap();
    assert_eq!(v["total_epsilon"].as_f64(), Some(api.total_epsilon), "{v}");
    assert_eq!(v["spent_epsilon"].as_f64(), Some(api.spent_epsilon), "{v}");
    assert_eq!(
        v["remaining_epsilon"].as_f64(),
        Some(api.remaining_epsilon),
        "{v}"
    );
    let allocations = v["allocations"].as_array().unwrap();
    let header = BUDGET_COLUMNS.map(|c| c.0);
    let rows = grid(&table, &header, 1 + allocations.len());
    for (i, row) in rows.iter().enumerate() {
        let (name, json_line, csv_line) = if i == 0 {
            let line = lines.iter().find(|l| l["row"] == "total").unwrap();
            ("total", &v, line)
        } else {
            let a = &allocations[i - 1];
            let name = s(&a["name"]);
            let line = lines
                .iter()
                .find(|l| l["row"] == "allocation" && l["allocation"] == name)
                .unwrap_or_else(|| panic!("no CSV line for {name}: {lines:?}"));
            (name, a, line)
        };
        assert_eq!(row[0], name, "{table}");
        for (c, (column, total_key, allocation_key, csv_key)) in
            BUDGET_COLUMNS.iter().enumerate().skip(1)
        {
            let x = at(json_line, if i == 0 { total_key } else { allocation_key });
            assert!(x.is_number(), "{name} {column}: {x} in {v}");
            assert!(
                table_shows(&row[c], x),
                "{name} {column}: the table shows {}, the JSON {x}",
                row[c]
            );
            assert!(
                csv_holds(&csv_line[*csv_key], x),
                "{name} {column}: the CSV holds {}, the JSON {x}",
                csv_line[*csv_key]
            );
        }
    }
    // δ of each line.
    let total = lines.iter().find(|l| l["row"] == "total").unwrap();
    assert!(csv_holds(&total["delta"], &v["period"]["total_delta"]));
    assert!(csv_holds(&total["spent_delta"], &v["spent_delta"]));
    for a in allocations {
        let line = lines
            .iter()
            .find(|l| l["row"] == "allocation" && l["allocation"] == s(&a["name"]))
            .unwrap();
        assert!(csv_holds(&line["delta"], &a["delta"]));
        assert!(csv_holds(&line["spent_delta"], &a["spent_delta"]));
    }
    // The header lines: the period, the noise and the display δ; the lifetime lines.
    let d = f(&v["config"]["display_delta"]);
    for text in [
        format!(
            "period {} of {} (renewals: {}), {} to {}",
            v["period"]["id"],
            v["periods"],
            v["renewals"],
            s(&v["period"]["starts"]),
            s(&v["period"]["ends"])
        ),
        format!("reason: {}", s(&v["period"]["why"])),
        format!(
            "minimum scale {}, epsilon shown at delta = {d:e}",
            f(&v["config"]["min_scale"])
        ),
        format!(
            "lifetime rho over all periods: {:.6} (epsilon {:.3} at delta = {d:e})",
            f(&v["lifetime_rho"]),
            f(&v["lifetime_epsilon"])
        ),
        format!(
            "lifetime delta over all periods: {:.3e}",
            f(&v["lifetime_delta"])
        ),
    ] {
        assert!(table.contains(&text), "{text:?} is not in\n{table}");
    }
    for line in &lines {
        assert!(csv_holds(
            &line["display_delta"],
            &v["config"]["display_delta"]
        ));
        assert!(csv_holds(&line["period"], &v["period"]["id"]));
        assert!(csv_holds(&line["periods"], &v["periods"]));
        assert!(csv_holds(&line["period_starts"], &v["period"]["starts"]));
        assert!(csv_holds(&line["period_ends"], &v["period"]["ends"]));
        assert!(csv_holds(&line["why"], &v["period"]["why"]));
        assert!(csv_holds(&line["noise"], &v["config"]["noise"]));
        assert!(csv_holds(&line["min_scale"], &v["config"]["min_scale"]));
    }
    let lifetime = lines.iter().find(|l| l["row"] == "lifetime").unwrap();
    for (column, key) in [
        ("rho", "lifetime_rho"),
        ("epsilon", "lifetime_epsilon"),
        ("delta", "lifetime_delta"),
    ] {
        assert!(
            csv_holds(&lifetime[column], &v[key]),
            "{column}: {lifetime:?}"
        );
    }
}

/// The steward's release list: the table's header, the JSON key (of the stored release) and
/// the CSV column. `time` is when the release ended (`finished_at`; every release here
/// ended).
const STEWARD_RELEASE_COLUMNS: [(&str, &str, &str); 8] = [
    ("id", "id", "id"),
    ("status", "status", "status"),
    ("name", "name", "name"),
    ("dataset", "dataset_version", "dataset_version"),
    ("allocation", "allocation", "allocation"),
    ("rho", "debit_rho", "rho"),
    ("approver", "approver", "approver"),
    ("time", "finished_at", "time"),
];

#[test]
fn the_release_listings_give_every_figure_of_their_tables_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, id) = with_a_release(tmp.path());
    rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();

    // The public list: the table's columns are the JSON's keys and the CSV's columns.
    let args = ["releases", "list"];
    let listed = json(&wh, &args);
    let listed = listed.as_array().unwrap();
    assert_eq!(
        listed.len(),
        3,
        "the release and the quarter's two: {listed:?}"
    );
    let (header, lines) = csv_of(&wh, &args);
    let names: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = grid(&run(&wh, &args, "table"), &names, listed.len());
    for ((row, line), cells) in listed.iter().zip(&lines).zip(&rows) {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, names.iter().copied().collect::<BTreeSet<_>>());
        for (c, name) in names.iter().enumerate() {
            assert!(
                table_shows(&cells[c], &row[*name]),
                "{name}: the table shows {}, the JSON {}",
                cells[c],
                row[*name]
            );
            assert!(
                csv_holds(&line[*name], &row[*name]),
                "{name}: the CSV holds {}, the JSON {}",
                line[*name],
                row[*name]
            );
        }
    }
    assert!(
        listed.iter().any(|r| r["quarter"] == "2025Q1"),
        "{listed:?}"
    );

    // The steward's list.
    let args = ["releases", "list", "--steward"];
    let all = json(&wh, &args);
    let all = all.as_array().unwrap();
    let (_, lines) = csv_of(&wh, &args);
    let rows = grid(
        &run(&wh, &args, "table"),
        &STEWARD_RELEASE_COLUMNS.map(|c| c.0),
        all.len(),
    );
    for ((release, line), cells) in all.iter().zip(&lines).zip(&rows) {
        for (c, (column, key, csv_key)) in STEWARD_RELEASE_COLUMNS.iter().enumerate() {
            assert!(
                table_shows(&cells[c], &release[*key]),
                "{column}: the table shows {}, the JSON {}",
                cells[c],
                release[*key]
            );
            assert!(
                csv_holds(&line[*csv_key], &release[*key]),
                "{column}: the CSV holds {}, the JSON {}",
                line[*csv_key],
                release[*key]
            );
        }
    }

    // One release: its grid is a line per cell, a column per cell key and per statistic;
    // the CSV a line per (cell, statistic), the statistic named in `statistic`.
    let id = id.to_string();
    let args = ["releases", "show", id.as_str()];
    let table = run(&wh, &args, "table");
    let shown = json(&wh, &args);
    let (_, lines) = csv_of(&wh, &args);
    let result = &shown["result"];
    let keys: Vec<&str> = result["cell_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    let statistics = result["statistics"].as_array().unwrap();
    assert!(result.get("ratios").is_none(), "a spec without ratios");
    let cells = result["cells"].as_array().unwrap();
    let mut header = keys.clone();
    header.extend(statistics.iter().map(|st| s(&st["name"])));
    let rows = grid(&table, &header, cells.len());
    assert_eq!(lines.len(), cells.len() * statistics.len());
    for (c, row) in rows.iter().enumerate() {
        for (k, key) in keys.iter().enumerate() {
            assert_eq!(row[k], s(&cells[c][k]), "{key}");
        }
        for (j, st) in statistics.iter().enumerate() {
            let value = &st["values"][c];
            assert!(
                table_shows(&row[keys.len() + j], &value["display"]),
                "{}: {} against {value}",
                s(&st["name"]),
                row[keys.len() + j]
            );
            let line = &lines[c * statistics.len() + j];
            assert_eq!(line["statistic"], s(&st["name"]));
            for (k, key) in keys.iter().enumerate() {
                assert_eq!(line[*key], s(&cells[c][k]), "{key}");
            }
            for (column, v) in [
                ("value", &value["display"]),
                ("raw", &value["raw"]),
                ("lower95", &value["lower"]),
                ("upper95", &value["upper"]),
                ("distribution", &st["distribution"]),
                ("scale", &st["scale"]),
                ("half_width95", &st["half_width"]),
                ("release", &shown["id"]),
                ("dataset_version", &shown["dataset_version"]),
                ("name", &shown["name"]),
                ("published_at", &shown["published_at"]),
                ("approver", &shown["approver"]),
                ("measure", &shown["measure"]),
                ("rho", &shown["d_out"]["rho"]),
                ("epsilon", &shown["d_out"]["epsilon"]),
                ("epsilon_delta", &shown["d_out"]["epsilon_delta"]),
                ("k", &shown["d_in"]["k"]),
                ("note", &result["note"]),
            ] {
                assert!(
                    csv_holds(&line[column], v),
                    "{column}: the CSV holds {}, the JSON {v}",
                    line[column]
                );
            }
        }
    }
    // The table's header lines, from the JSON.
    let mut said = vec![
        format!("release {id}: {}", s(&shown["name"])),
        format!(
            "dataset {}, published {}, approved by {}",
            s(&shown["dataset_version"]),
            s(&shown["published_at"]),
            s(&shown["approver"])
        ),
        format!(
            "{}: rho = {:.6} (epsilon = {:.3} at delta = {:.3e}), k = {}",
            s(&shown["measure"]),
            f(&shown["d_out"]["rho"]),
            f(&shown["d_out"]["epsilon"]),
            f(&shown["d_out"]["epsilon_delta"]),
            shown["d_in"]["k"]
        ),
        s(&result["note"]).to_string(),
    ];
    for st in statistics {
        said.push(format!(
            "{}: {} noise, scale {:.3}, 95% interval ±{}",
            s(&st["name"]),
            s(&st["distribution"]),
            f(&st["scale"]),
            st["half_width"]
        ));
    }
    for text in said {
        assert!(table.contains(&text), "{text:?} is not in\n{table}");
    }
}

/// The steward's list of requests: the table's header, the JSON key (a path) and the CSV
/// column. The table cuts the purpose to its first 60 characters.
const REQUEST_COLUMNS: [(&str, &str, &str); 8] = [
    ("id", "id", "id"),
    ("researcher", "researcher", "researcher"),
    ("token", "token_id", "token"),
    ("state", "state", "state"),
    ("rho", "quote.rho", "rho"),
    ("submitted", "submitted_at", "submitted_at"),
    ("release", "release_id", "release_id"),
    ("purpose", "purpose", "purpose"),
];

#[tokio::test(flavor = "multi_thread")]
async fn requests_list_gives_every_figure_of_its_table_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 0.5, roomy()).await;
    let app = app(st);
    let first = submit_id(&app, &token, &submission(0.1)).await;
    submit_id(&app, &token, &submission(0.12)).await;
    ok(&outreach()
        .args(["requests", "approve", &first])
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    let args = ["requests", "list"];
    let list = json(&wh, &args);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, lines) = csv_of(&wh, &args);
    let rows = grid(
        &run(&wh, &args, "table"),
        &REQUEST_COLUMNS.map(|c| c.0),
        list.len(),
    );
    for ((request, line), cells) in list.iter().zip(&lines).zip(&rows) {
        for (c, (column, key, csv_key)) in REQUEST_COLUMNS.iter().enumerate() {
            let mut x = at(request, key).clone();
            assert!(
                csv_holds(&line[*csv_key], &x),
                "{column}: the CSV holds {}, the JSON {x}",
                line[*csv_key]
            );
            if *column == "purpose" {
                x = Value::String(s(&x).chars().take(60).collect());
            }
            assert!(
                table_shows(&cells[c], &x),
                "{column}: the table shows {}, the JSON {x}",
                cells[c]
            );
        }
    }
    assert!(list.iter().any(|r| r["release_id"].is_i64()), "{list:?}");
}

/// The plan's table: its first line (what publishing would cost, from what noise) and its
/// last (the widest rate half-width) are lines of kind `plan` in the CSV and keys of the
/// JSON; its rows (`figure`, `95% half-width`) are the CSV's other lines (`kind`, `name`,
/// `value`) and the JSON's `counts`, `rates`, `equity_counts` and `equity_rates`, each a
/// pair of a name and a half-width.
#[test]
fn plan_gives_every_figure_of_its_table_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    let args = ["plan", "--quarter", "2025Q1"];
    let table = run(&wh, &args, "table");
    let p = json(&wh, &args);
    let (header, lines) = csv_of(&wh, &args);
    assert_eq!(header, ["kind", "name", "value"]);
    let setting = |name: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == "plan" && l["name"] == name)
            .unwrap_or_else(|| panic!("no plan line {name}: {lines:?}"))["value"]
            .clone()
    };
    for name in [
        "quarter",
        "sigma",
        "k",
        "equity_sigma",
        "equity_k",
        "at",
        "rho",
        "rho_standard",
        "rho_equity",
        "delta",
        "epsilon",
        "display_delta",
        "widest_rate",
    ] {
        assert!(
            csv_holds(&setting(name), &p[name]),
            "{name}: the CSV holds {}, the JSON {}",
            setting(name),
            p[name]
        );
    }
    let at_n = p["at"].as_u64().unwrap();
    for text in [
        format!(
            "Publishing {} with sigma = {} and k = {} (equity breakdowns: sigma = {}, k = {}) would cost rho = {:.4} (standard release {:.4}, equity release {:.4}), delta = {} (epsilon {:.3} at delta = {:e})",
            s(&p["quarter"]),
            f(&p["sigma"]),
            p["k"],
            f(&p["equity_sigma"]),
            p["equity_k"],
            f(&p["rho"]),
            f(&p["rho_standard"]),
            f(&p["rho_equity"]),
            f(&p["delta"]),
            f(&p["epsilon"]),
            f(&p["display_delta"])
        ),
        format!(
            "Every rate listed is within ±{:.3} at {at_n} survivors.",
            f(&p["widest_rate"])
        ),
    ] {
        assert!(table.contains(&text), "{text:?} is not in\n{table}");
    }
    let pairs = |key: &str| p[key].as_array().unwrap().clone();
    let (counts, rates, equity_counts, equity_rates) = (
        pairs("counts"),
        pairs("rates"),
        pairs("equity_counts"),
        pairs("equity_rates"),
    );
    // (the table's row, the CSV's kind, the JSON's pair of a name and a half-width)
    let mut expected: Vec<(String, String, &Value)> = Vec::new();
    for pair in &counts {
        expected.push((format!("count {}", s(&pair[0])), "count".into(), pair));
    }
    for pair in &rates {
        expected.push((
            format!("rate {} at {at_n} survivors", s(&pair[0])),
            format!("rate_at_{at_n}"),
            pair,
        ));
    }
    for pair in &equity_counts {
        expected.push((
            format!("equity count {} (one breakdown value)", s(&pair[0])),
            "equity_count".into(),
            pair,
        ));
    }
    for pair in &equity_rates {
        expected.push((
            format!(
                "equity rate {} at {at_n} survivors of one breakdown value",
                s(&pair[0])
            ),
            format!("equity_rate_at_{at_n}"),
            pair,
        ));
    }
    let rows = grid(&table, &["figure", "95% half-width"], expected.len());
    for (row, (label, kind, pair)) in rows.iter().zip(&expected) {
        assert_eq!(&row[0], label);
        let shown = row[1]
            .trim_start_matches('±')
            .split_whitespace()
            .next()
            .unwrap();
        assert!(
            table_shows(shown, &pair[1]),
            "{label}: {} against {}",
            row[1],
            pair[1]
        );
        let line = lines
            .iter()
            .find(|l| l["kind"] == *kind && l["name"] == s(&pair[0]))
            .unwrap_or_else(|| panic!("no CSV line for {label}"));
        assert!(csv_holds(&line["value"], &pair[1]), "{label}: {line:?}");
    }
}

/// The rates the publication's table shows, one column each.
const PUBLISHED_RATES: [&str; 6] = [
    "reach_7d",
    "timely_contact_72h",
    "engagement_30d",
    "linkage_any_30d",
    "linkage_moud_30d",
    "arrest_after_referral_90d",
];

/// Whether the table's cell for a figure (`value [lower,upper]`, a `*` after a rate whose
/// follow-up is incomplete when `marked`, `insufficient`, or `-` for none) shows the JSON
/// figure `figure`, and the CSV line of the same figure (`scope`, `by`, `kind`, `name`, no
/// breakdown) holds it: value, interval, whether the data are insufficient and whether the
/// follow-up is complete.
fn figure_agrees(
    cell: &str,
    figure: Option<&Value>,
    line: Option<&BTreeMap<String, String>>,
    marked: bool,
    what: &str,
) {
    let Some(figure) = figure else {
        assert_eq!(cell, "-", "{what}");
        assert!(line.is_none(), "{what}: {line:?}");
        return;
    };
    let line = line.unwrap_or_else(|| panic!("{what}: no CSV line"));
    for key in ["value", "lower", "upper"] {
        assert!(
            csv_holds(&line[key], &figure[key]),
            "{what} {key}: the CSV holds {}, the JSON {}",
            line[key],
            figure[key]
        );
    }
    let insufficient = figure["insufficient_data"].as_bool().unwrap_or(false);
    let complete = figure["complete"].as_bool().unwrap();
    assert_eq!(
        line["insufficient_data"],
        insufficient.to_string(),
        "{what}"
    );
    assert_eq!(line["complete"], complete.to_string(), "{what}");
    if insufficient {
        assert_eq!(cell, "insufficient", "{what}");
        return;
    }
    let shown = match cell.strip_suffix('*') {
        Some(shown) => {
            assert!(marked && !complete, "{what}: {cell}");
            shown
        }
        None => {
            assert!(
                !marked || complete,
                "{what}: {cell} is not marked incomplete"
            );
            cell
        }
    };
    let (value, interval) = shown
        .split_once(" [")
        .unwrap_or_else(|| panic!("{what}: {cell}"));
    let (lower, upper) = interval.trim_end_matches(']').split_once(',').unwrap();
    for (text, key) in [(value, "value"), (lower, "lower"), (upper, "upper")] {
        assert!(
            table_shows(text, &figure[key]),
            "{what} {key}: the table shows {text}, the JSON {}",
            figure[key]
        );
    }
}

/// `publish`'s table: a row per program and one for the state (`STATEWIDE`, the group
/// `by = statewide`), a column for the `identified` count, one per rate of
/// [`PUBLISHED_RATES`] and `arrest_diff_police`, the first difference. In the JSON (the
/// stored document) they are each program's, or the group's, `counts`, `rates` and
/// `differences`; in the CSV (every figure, in the API's columns, as `report.csv`) they are
/// the lines of that `scope` and `by` whose `kind` and `name` are the figure's. The table's
/// first lines are the document's and its `quarter_loss`'s keys, and whether this run
/// spent anything is `fresh`.
fn check_publication(wh: &Path, args: &[&str]) {
    let table = run(wh, args, "table");
    assert!(table.starts_with("Published "), "{table}");
    // The same publication again: nothing is spent, and the JSON says so.
    let doc = json(wh, args);
    assert_eq!(doc["fresh"], false, "{doc}");
    assert!(doc["supersedes"].is_null());
    assert!(doc["publication_id"].is_i64());
    let (_, lines) = csv_of(wh, args);
    let loss = &doc["quarter_loss"];
    for text in [
        format!(
            "{}: release {} from dataset {}, {} noise with scale {}, k = {}, rho = {:.4} (epsilon {:.3} alone); equity release {}, rho = {:.4} (epsilon {:.3} alone)",
            s(&doc["quarter"]),
            doc["release_id"],
            s(&doc["dataset_version"]),
            s(&doc["distribution"]),
            f(&doc["scale"]),
            doc["k"],
            f(&loss["standard_rho"]),
            f(&loss["standard_epsilon"]),
            doc["equity_release_id"],
            f(&loss["equity_rho"]),
            f(&loss["equity_epsilon"])
        ),
        format!(
            "The quarter's privacy loss: rho = {:.4} (epsilon {:.3} at delta = {:e})",
            f(&loss["rho"]),
            f(&loss["epsilon"]),
            f(&loss["epsilon_delta"])
        ),
        s(&doc["note"]).to_string(),
    ] {
        assert!(table.contains(&text), "{text:?} is not in\n{table}");
    }
    let incomplete: Vec<&str> = doc["completeness"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["complete"] == false)
        .map(|c| s(&c["statistic"]))
        .collect();
    if !incomplete.is_empty() {
        let text = format!("* follow-up incomplete for: {}", incomplete.join(", "));
        assert!(table.contains(&text), "{text:?} is not in\n{table}");
    }
    // (row name, scope and by of its CSV lines, its figures in the JSON)
    let mut scopes: Vec<(String, String, &str, &Value)> = Vec::new();
    for p in doc["programs"].as_array().unwrap() {
        let id = s(&p["program"]["program_id"]).to_string();
        scopes.push((id.clone(), id, "program", p));
    }
    for g in doc["groups"].as_array().unwrap() {
        if g["by"] == "statewide" {
            scopes.push(("STATEWIDE".into(), s(&g["group"]).into(), "statewide", g));
        }
    }
    let mut header = vec!["program", "identified"];
    header.extend(PUBLISHED_RATES);
    header.push("arrest_diff_police");
    let rows = grid(&table, &header, scopes.len());
    for (row, (name, scope, by, figures)) in rows.iter().zip(&scopes) {
        assert_eq!(&row[0], name);
        let line = |kind: &str, figure: &str| {
            lines.iter().find(|l| {
                l["scope"] == *scope
                    && l["by"] == *by
                    && l["kind"] == kind
                    && l["name"] == figure
                    && l["breakdown"].is_empty()
            })
        };
        let of = |key: &str, field: &str, figure: &str| {
            figures[key]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x[field] == figure)
        };
        figure_agrees(
            &row[1],
            of("counts", "statistic", "identified"),
            line("count", "identified"),
            false,
            &format!("{name} identified"),
        );
        for (c, rate) in PUBLISHED_RATES.into_iter().enumerate() {
            figure_agrees(
                &row[2 + c],
                of("rates", "name", rate),
                line("rate", rate),
                true,
                &format!("{name} {rate}"),
            );
        }
        let difference = figures["differences"].as_array().unwrap().first();
        figure_agrees(
            &row[2 + PUBLISHED_RATES.len()],
            difference,
            difference.and_then(|d| line("difference", s(&d["name"]))),
            false,
            &format!("{name} arrest_diff_police"),
        );
    }
}

#[test]
fn publish_gives_every_figure_of_its_table_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    // Complete through the end of 2025Q3: every window of 2025Q1 is complete, 2025Q3's
    // are not (its survivors of late September have not had their seven days).
    let wh = budgeted(tmp.path(), "2025-09-30");
    check_publication(
        &wh,
        &["publish", "--quarter", "2025Q1", "--approver", "steward"],
    );
    check_publication(
        &wh,
        &[
            "publish",
            "--quarter",
            "2025Q3",
            "--approver",
            "steward",
            "--allow-incomplete",
        ],
    );
}

/// The metric catalog's table: its header and the JSON key and CSV column of each (`days`
/// is `window_days`: `FIRST-LAST` in the table and the CSV, `[FIRST, LAST]` in the JSON).
const METRIC_COLUMNS: [(&str, &str); 5] = [
    ("metric", "metric"),
    ("kind", "kind"),
    ("name", "name"),
    ("days", "window_days"),
    ("definition", "definition"),
];

/// The exact counts' table: its header and the JSON key and CSV column of each.
const EXACT_COLUMNS: [(&str, &str); 4] = [
    ("program_id", "program_id"),
    ("quarter", "quarter"),
    ("statistic", "statistic"),
    ("exact value", "value"),
];

#[test]
fn metrics_give_every_figure_of_their_tables_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    // A window as the table and the CSV write it.
    let as_text = |v: &Value| match v {
        Value::Array(w) => Value::String(format!("{}-{}", w[0], w[1])),
        Value::Null => Value::String(String::new()),
        other => other.clone(),
    };
    for (args, columns) in [
        (vec!["metrics"], METRIC_COLUMNS.to_vec()),
        (
            vec!["metrics", "--exact", "--quarter", "2025Q1"],
            EXACT_COLUMNS.to_vec(),
        ),
    ] {
        let list = json(&wh, &args);
        let list = list.as_array().unwrap();
        assert!(!list.is_empty());
        let (_, lines) = csv_of(&wh, &args);
        let header: Vec<&str> = columns.iter().map(|c| c.0).collect();
        let rows = grid(&run(&wh, &args, "table"), &header, list.len());
        for ((item, line), cells) in list.iter().zip(&lines).zip(&rows) {
            for (c, (column, key)) in columns.iter().enumerate() {
                let x = as_text(&item[*key]);
                assert!(
                    table_shows(&cells[c], &x),
                    "{args:?} {column}: the table shows {}, the JSON {x}",
                    cells[c]
                );
                assert!(
                    csv_holds(&line[*key], &x),
                    "{args:?} {column}: the CSV holds {}, the JSON {x}",
                    line[*key]
                );
            }
        }
    }
}
