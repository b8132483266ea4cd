//! Publication (`src/publication`): `publish` and `plan` of the standard metrics over the
//! hand-made fixture of `tests/fixtures/metrics/`. DP outputs are tested by their properties:
//! what was debited, what is replayed, how figures relate, never by exact noisy numbers. The
//! coverage of the published intervals on synthetic data is in `utility`.

mod utility;

use std::path::Path;
use std::process::Command;

use outreach_warehouse::Fault;
use outreach_warehouse::ingest::ingest;
use outreach_warehouse::ledger::{Ledger, NoiseKind, PrivacyConfig};
use outreach_warehouse::metrics::Catalog;
use outreach_warehouse::publication::figures::Z95;
use outreach_warehouse::publication::{
    EQUITY_NOISE, STANDARD_ALLOCATION, StandardNoise, completeness, plan, plan_for_target,
    plan_with, publish,
};
use outreach_warehouse::warehouse::Warehouse;

use crate::common::fixture::{
    fixture_opts, fixture_warehouse, fixture_warehouse_with, opts, q, rt,
};

fn spent(wh: &Path) -> f64 {
    Ledger::open(wh).unwrap().show().unwrap().spent_rho
}

#[test]
fn publishing_twice_spends_once_and_the_debit_is_k_times_sum_b_squared_over_two_sigma_squared() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let first = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    assert!(first.fresh);
    // ρ = k·Σ B² / (2σ²) with k = 2, Σ B² = 13 (15 flags, two exclusive pairs), σ = 5.5;
    // the equity release: k = 6 (three margins, two programs), Σ B² = 3, σ = 8.
    let rho = 2.0 * 13.0 / (2.0 * 5.5 * 5.5);
    let equity = 6.0 * 3.0 / (2.0 * 8.0 * 8.0);
    let s = spent(&wh);
    assert!(
        (s - rho - equity).abs() <= 1e-9,
        "spent {s}, expected {rho} + {equity}"
    );
    assert!((first.publication.rho - rho).abs() <= 1e-9 * rho);
    assert!((first.publication.equity_rho - equity).abs() <= 1e-9 * equity);
    let again = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.publication_id, first.publication_id);
    assert_eq!(again.publication, first.publication);
    assert_eq!(spent(&wh), s, "a replay spends nothing");
    let stored = Ledger::open(&wh).unwrap().publications(None).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(Ledger::open(&wh).unwrap().releases().unwrap().len(), 2);
}

#[test]
fn the_equity_breakdowns_cover_every_margin_of_every_program_and_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let p = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    let eq = &p.publication.equity;
    // (3 programs + statewide) × (8 age bands + 4 sexes + 8 race and ethnicity values).
    assert_eq!(eq.len(), 4 * 20);
    for b in eq {
        let names: Vec<&str> = b.counts.iter().map(|c| c.statistic.as_str()).collect();
        assert_eq!(names, ["identified", "attempted_7d", "engaged_30d"]);
        assert_eq!(b.rates.len(), 2);
    }
    // Statewide is the sum of the programs' raw values, per margin.
    for b in eq.iter().filter(|b| b.scope == "statewide") {
        for c in &b.counts {
            let sum: f64 = eq
                .iter()
                .filter(|x| {
                    x.scope != "statewide" && x.dimension == b.dimension && x.value == b.value
                })
                .map(|x| {
                    x.counts
                        .iter()
                        .find(|y| y.statistic == c.statistic)
                        .unwrap()
                        .raw
                })
                .sum();
            assert_eq!(c.raw, sum);
        }
    }
    // Values that belong to another dimension are not published as cells of this one.
    assert!(
        !eq.iter()
            .any(|b| b.dimension == "sex" && b.value == "18_24")
    );
}

#[test]
fn published_figures_are_clamped_keep_raw_values_and_sum_over_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let p = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    let doc = &p.publication;
    assert_eq!(doc.programs.len(), 3);
    let all_rates = doc
        .programs
        .iter()
        .flat_map(|p| &p.rates)
        .chain(doc.groups.iter().flat_map(|g| &g.rates));
    for r in all_rates {
        if r.insufficient_data {
            assert!(r.value.is_none() && r.raw.is_none());
            continue;
        }
        let (v, lo, hi) = (r.value.unwrap(), r.lower.unwrap(), r.upper.unwrap());
        assert!((0.0..=1.0).contains(&v), "{r:?}");
        assert!(0.0 <= lo && lo <= v && v <= hi && hi <= 1.0, "{r:?}");
        assert_eq!(v, r.raw.unwrap().clamp(0.0, 1.0));
    }
    for c in doc.programs.iter().flat_map(|p| &p.counts) {
        assert!(c.value >= 0.0 && c.lower >= 0.0 && c.lower <= c.value && c.value <= c.upper);
        assert_eq!(c.value, c.raw.max(0.0));
    }
    // Statewide counts are the sums of the programs' raw values, with variance 3σ².
    let statewide = doc.groups.iter().find(|g| g.by == "statewide").unwrap();
    assert_eq!(statewide.programs.len(), 3);
    for c in &statewide.counts {
        let sum: f64 = doc
            .programs
            .iter()
            .map(|p| {
                p.counts
                    .iter()
                    .find(|x| x.statistic == c.statistic)
                    .unwrap()
                    .raw
            })
            .sum();
        assert_eq!(c.raw, sum, "{}", c.statistic);
        // 1.96·√(3σ²) = 18.67, rounded up: the summed noise is a whole number.
        let half = (Z95 * (3.0 * 5.5f64 * 5.5).sqrt()).ceil();
        assert_eq!(half, 19.0);
        // Clamped at zero, never narrower than the half-width (`shown_interval`).
        assert!((c.upper - (c.raw + half).max(half)).abs() < 1e-9, "{c:?}");
    }
    // Every grouping is there, each program in exactly one group of each.
    for by in ["team_model", "police_on_visits", "warrant_check", "region"] {
        let n: usize = doc
            .groups
            .iter()
            .filter(|g| g.by == by)
            .map(|g| g.programs.len())
            .sum();
        assert_eq!(n, 3, "{by}");
    }
    // The stored document is what publish returned.
    let stored = Ledger::open(&wh)
        .unwrap()
        .current_publication("2025Q1")
        .unwrap()
        .unwrap();
    assert_json_close(&stored.document, &serde_json::to_value(doc).unwrap(), "$");
}

/// JSON values equal but for the last bits of floats (serde_json's parser does not
/// round-trip every f64 exactly).
fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "{at}: {x} != {y}"
            );
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_json_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in x {
                assert_json_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn new_data_needs_republish_which_supersedes_and_keeps_both() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let first = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    let spent_before = spent(&wh);
    // New data: one more survivor, a new dataset version.
    let extra = tmp.path().join("overdose_events-extra.csv");
    std::fs::write(
        &extra,
        "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\n\
         EX1,KX1,P1,2025-02-10,ems,false,true,false,25_34,male,unknown\n",
    )
    .unwrap();
    ingest(&wh, &[extra], &fixture_opts("2025-12-31")).unwrap();
    let e = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap_err();
    assert_eq!(e.fault(), Fault::BadInput);
    assert!(e.to_string().contains("--republish"), "{e}");
    assert_eq!(spent(&wh), spent_before, "a refusal spends nothing");
    let mut o = opts("2025Q1");
    o.republish = true;
    let second = rt().block_on(publish(&wh, &o)).unwrap();
    assert!(second.fresh);
    assert_eq!(second.superseded, Some(first.publication_id));
    assert_ne!(second.publication.release_id, first.publication.release_id);
    assert!(spent(&wh) > spent_before, "a republication is a new debit");
    let all = Ledger::open(&wh)
        .unwrap()
        .publications(Some("2025Q1"))
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].superseded_by, Some(all[1].id));
    assert_eq!(all[1].supersedes, Some(all[0].id));
    let current = Ledger::open(&wh)
        .unwrap()
        .current_publication("2025Q1")
        .unwrap()
        .unwrap();
    assert_eq!(current.release_id, second.publication.release_id);
}

#[test]
fn a_quarter_whose_two_releases_do_not_both_fit_is_refused_and_nothing_is_debited() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for the standard release (ρ = 2·13/(2·5.5²) = 0.4298) but not for both
    // (+ 6·3/(2·8²) = 0.1406, 0.5704 in all).
    let wh = fixture_warehouse_with(tmp.path(), "2025-12-31", 0.5, PrivacyConfig::default());
    let standard = 2.0 * 13.0 / (2.0 * 5.5 * 5.5);
    let both = standard + 6.0 * 3.0 / (2.0 * 8.0 * 8.0);
    assert!(standard < 0.5 && both > 0.5);
    let e = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap_err();
    assert_eq!(e.fault(), Fault::BudgetExhausted, "{e}");
    let text = e.to_string();
    // The refusal names what the two cost together, and the allocation.
    assert!(
        text.contains(&format!("{both:.6}")) && text.contains(STANDARD_ALLOCATION),
        "{text}"
    );
    assert_eq!(spent(&wh), 0.0, "nothing is debited");
    let l = Ledger::open(&wh).unwrap();
    assert!(l.releases().unwrap().is_empty(), "no release is recorded");
    assert!(l.publications(None).unwrap().is_empty());
    drop(l);
    // With room for both, the quarter is published whole.
    Ledger::open(&wh)
        .unwrap()
        .allocate(STANDARD_ALLOCATION, 0.1)
        .unwrap();
    let p = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    assert!(p.fresh && p.publication.equity_release_id.is_some());
    assert!((spent(&wh) - both).abs() <= 1e-9, "{}", spent(&wh));
}

#[test]
fn both_releases_record_the_version_publish_read_even_if_data_arrive_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let read = Warehouse::open(&wh).unwrap().manifest().unwrap().version();
    // Two loads commit while the quarter is published: one right after publish read the
    // manifest, one between its two releases.
    for (point, n) in [("publish-after-snapshot", 1), ("release-between", 2)] {
        let file = tmp.path().join(format!("overdose_events-late{n}.csv"));
        std::fs::write(
            &file,
            format!(
                "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\n\
                 EL{n},KL{n},P1,2025-02-1{n},ems,false,true,false,25_34,male,unknown\n"
            ),
        )
        .unwrap();
        let target = wh.clone();
        outreach_warehouse::failpoint::set_hook(point, &wh, move || {
            ingest(&target, &[file], &fixture_opts("2025-12-31")).expect("the late load commits");
        });
    }
    let p = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    let now = Warehouse::open(&wh).unwrap().manifest().unwrap().version();
    assert_eq!(
        now.0,
        read.0 + 2,
        "both loads committed during the publication"
    );
    let read = read.to_string();
    assert_eq!(p.publication.dataset_version, read);
    let l = Ledger::open(&wh).unwrap();
    let releases = l.releases().unwrap();
    assert_eq!(releases.len(), 2);
    for r in &releases {
        assert_eq!(r.dataset_version, read, "{}", r.name);
    }
    let stored = l.current_publication("2025Q1").unwrap().unwrap();
    assert_eq!(stored.dataset_version, read);
    drop(l);
    // The new data are published only with --republish.
    let e = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap_err();
    assert_eq!(e.fault(), Fault::BadInput);
    assert!(e.to_string().contains("--republish"), "{e}");
}

#[test]
fn publish_and_plan_refuse_a_laplace_budget_up_front_and_spend_nothing() {
    // Under a pure-DP budget, σ would be taken as the Laplace scale and every statistic
    // would compose its own ε: ρ ≈ 11 a quarter, always over budget. Refused, saying why.
    let tmp = tempfile::tempdir().unwrap();
    let laplace = PrivacyConfig {
        noise: NoiseKind::DiscreteLaplace,
        ..PrivacyConfig::default()
    };
    let wh = fixture_warehouse_with(tmp.path(), "2025-12-31", 10.0, laplace);
    let e = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap_err();
    assert_eq!(e.fault(), Fault::BadInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("calibration is for zCDP")
            && text.contains("Laplace budget is not supported for publish")
            && text.contains("outreach release"),
        "{text}"
    );
    let e = rt()
        .block_on(plan(&wh, q("2025Q1"), StandardNoise::default(), 200))
        .unwrap_err();
    assert_eq!(e.fault(), Fault::BadInput, "{e}");
    assert!(e.to_string().contains("calibration is for zCDP"), "{e}");
    // Through the command line: exit 2, the reason on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args([
            "--quiet",
            "publish",
            "--quarter",
            "2025Q1",
            "--approver",
            "steward",
        ])
        .arg("--warehouse")
        .arg(&wh)
        .env_remove("OUTREACH_FAIL_POINT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Laplace budget is not supported"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = Ledger::open(&wh).unwrap();
    assert!(l.releases().unwrap().is_empty(), "nothing is recorded");
    assert_eq!(l.show().unwrap().spent_rho, 0.0, "nothing is debited");
    assert!(l.publications(None).unwrap().is_empty());
}

#[test]
fn an_incomplete_quarter_is_refused_unless_allowed_and_then_says_which_windows() {
    let tmp = tempfile::tempdir().unwrap();
    // Complete through 2025-05-15: 2025Q1's quarter and 30-day windows are covered
    // (2025-03-31 + 30 = 2025-04-30), its 90- and 120-day windows are not.
    let wh = fixture_warehouse(tmp.path(), "2025-05-15");
    let e = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap_err();
    assert_eq!(e.fault(), Fault::BadInput);
    let text = e.to_string();
    assert!(
        text.contains("repeat_od_90d") && text.contains("--allow-incomplete"),
        "{text}"
    );
    assert!(!text.contains("engaged_30d"), "{text}");
    assert_eq!(spent(&wh), 0.0);
    let mut o = opts("2025Q1");
    o.allow_incomplete = true;
    let p = rt().block_on(publish(&wh, &o)).unwrap();
    let complete = |s: &str| {
        p.publication
            .completeness
            .iter()
            .find(|c| c.statistic == s)
            .unwrap()
            .complete
    };
    assert!(complete("identified") && complete("engaged_30d") && complete("linked_any_30d"));
    assert!(!complete("repeat_od_90d") && !complete("arrested_90d_after_attempt_police_present"));
    let rate = |name: &str| {
        p.publication.programs[0]
            .rates
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .complete
    };
    assert!(rate("engagement_30d"));
    assert!(!rate("repeat_overdose_90d"));
    // Completeness is judged from the declared dates only, never from the data.
    let manifest = Warehouse::open(&wh).unwrap().manifest().unwrap();
    let c = completeness(&Catalog::standard().unwrap(), &manifest, q("2025Q1"));
    let od = c.iter().find(|c| c.statistic == "fatal_od_90d").unwrap();
    assert_eq!(od.needs_complete_through, "2025-06-29");
}

#[test]
fn plan_and_publish_use_the_same_noise_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let p = rt()
        .block_on(plan(&wh, q("2025Q1"), StandardNoise::default(), 200))
        .unwrap();
    assert_eq!(spent(&wh), 0.0, "a plan spends nothing");
    let published = rt().block_on(publish(&wh, &opts("2025Q1"))).unwrap();
    assert_eq!(p.rho_standard, published.publication.rho);
    assert_eq!(p.rho_equity, published.publication.equity_rho);
    assert!((spent(&wh) - p.rho).abs() <= 1e-12);
    let release = Ledger::open(&wh)
        .unwrap()
        .release(published.publication.release_id)
        .unwrap();
    let public = outreach_warehouse::privacy::PublicRelease::from_stored(&release).unwrap();
    for s in &public.result.statistics {
        let planned = p.counts.iter().find(|(n, _)| *n == s.name).unwrap().1;
        assert_eq!(planned, s.half_width, "{}", s.name);
    }
    // The worst rate half-width at n: 1.96·√(2v) / n, with v the larger of σ² and (h/1.96)²
    // for the counts' whole-number half-width h = 11 (OpenDP's, at σ = 5.5).
    assert!(p.counts.iter().all(|(_, h)| *h == 11), "{:?}", p.counts);
    let v = (5.5f64 * 5.5).max((11.0 / Z95) * (11.0 / Z95));
    for (_, h) in &p.rates {
        assert!((h - Z95 * (2.0 * v).sqrt() / 200.0).abs() < 1e-12, "{h}");
    }
    // The default budget meets the ±8 points target at 200 survivors for every rate.
    assert!(p.rates.iter().all(|(_, h)| *h < 0.08));
}

#[test]
fn the_plan_lists_every_equity_count_and_rate_with_the_half_width_of_its_own_sigma() {
    use outreach_warehouse::privacy::mechanism::half_width;
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let p = rt()
        .block_on(plan(&wh, q("2025Q1"), StandardNoise::default(), 200))
        .unwrap();
    assert_eq!(spent(&wh), 0.0, "a plan spends nothing");
    // Every figure of the equity release is listed.
    let catalog = Catalog::standard().unwrap();
    let equity = catalog.files.iter().find(|f| f.is_breakdown()).unwrap();
    let names = |v: &[(String, f64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        p.equity_counts
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>(),
        equity
            .statistics
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        names(p.equity_rates.as_slice()),
        equity
            .rates
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (p.equity_k, p.equity_sigma),
        (EQUITY_NOISE.k, EQUITY_NOISE.sigma)
    );
    // At their own σ = 8: OpenDP's count half-width is 16 (the standard counts' is 11 at
    // σ = 5.5), and a rate's worst half-width at n is 1.96·√(2v)/n with v the larger of σ²
    // and (h/1.96)², as publish's equity figures use it.
    let h = half_width(NoiseKind::DiscreteGaussian, 8.0, 0.05).unwrap();
    assert_eq!(h, 16);
    assert!(
        p.equity_counts.iter().all(|(_, x)| *x == h),
        "{:?}",
        p.equity_counts
    );
    let v = (8.0f64 * 8.0).max((h as f64 / Z95) * (h as f64 / Z95));
    for (name, hw) in &p.equity_rates {
        assert!(
            (hw - Z95 * (2.0 * v).sqrt() / 200.0).abs() < 1e-12,
            "{name}: {hw}"
        );
        // Wider than the standard rates': ±0.113 at 200, not within ±8 points.
        assert!(*hw > 0.08, "{name}: {hw}");
    }
    assert_eq!(p.widest_rate(), p.equity_rates[0].1);
    // Another equity σ changes the equity figures and ρ only.
    let other = rt()
        .block_on(plan_with(
            &wh,
            q("2025Q1"),
            StandardNoise::default(),
            StandardNoise {
                k: EQUITY_NOISE.k,
                sigma: 4.0,
            },
            200,
        ))
        .unwrap();
    assert_eq!(other.rates, p.rates);
    assert_eq!(other.rho_standard, p.rho_standard);
    let h4 = half_width(NoiseKind::DiscreteGaussian, 4.0, 0.05).unwrap();
    assert!(other.equity_counts.iter().all(|(_, x)| *x == h4));
    let v4 = (4.0f64 * 4.0).max((h4 as f64 / Z95) * (h4 as f64 / Z95));
    for (_, hw) in &other.equity_rates {
        assert!((hw - Z95 * (2.0 * v4).sqrt() / 200.0).abs() < 1e-12, "{hw}");
    }
    // ρ = k·Σ B² / (2σ²) with k = 6 and Σ B² = 3.
    assert!((other.rho_equity - 6.0 * 3.0 / (2.0 * 16.0)).abs() <= 1e-9);
    assert!((other.rho - other.rho_standard - other.rho_equity).abs() <= 1e-12);
    // The command prints them, as CSV and in its table.
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
            .args(["--quiet", "plan", "--quarter", "2025Q1", "--format", format])
            .arg("--warehouse")
            .arg(&wh)
            .env_remove("OUTREACH_FAIL_POINT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let csv = run("csv");
    let printed: Vec<(String, f64)> = csv
        .lines()
        .filter_map(|l| l.strip_prefix("equity_rate_at_200,"))
        .map(|l| {
            let (name, h) = l.split_once(',').unwrap();
            (name.to_string(), h.parse().unwrap())
        })
        .collect();
    assert_eq!(printed, p.equity_rates, "{csv}");
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("equity_count,"))
            .count(),
        p.equity_counts.len()
    );
    let table = run("table");
    for (name, _) in &p.equity_rates {
        assert!(
            table.contains(&format!(
                "equity rate {name} at 200 survivors of one breakdown value"
            )),
            "{table}"
        );
    }
    assert!(
        table.contains(&format!("within ±{:.3} at 200 survivors", p.widest_rate())),
        "{table}"
    );
}

#[test]
fn a_target_half_width_solves_for_the_smallest_budget_that_meets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let p = rt()
        .block_on(plan_for_target(&wh, q("2025Q1"), 2, 0.08, 200))
        .unwrap();
    assert!(p.rates.iter().all(|(_, h)| *h <= 0.08));
    // σ = 0.08·200 / (1.96·√2) ≈ 5.77, ρ = 2·13/(2σ²) ≈ 0.39.
    assert!(
        (p.sigma - 0.08 * 200.0 / (Z95 * 2f64.sqrt())).abs() < 0.01,
        "{}",
        p.sigma
    );
    assert!((p.rho_standard - 13.0 / (p.sigma * p.sigma)).abs() < 1e-9 * p.rho_standard);
    // A slightly larger σ would miss the target: the budget is the smallest.
    let looser = rt()
        .block_on(plan(
            &wh,
            q("2025Q1"),
            StandardNoise {
                k: 2,
                sigma: p.sigma * 1.01,
            },
            200,
        ))
        .unwrap();
    assert!(looser.rates.iter().any(|(_, h)| *h > 0.08));
    assert!(
        rt().block_on(plan_for_target(&wh, q("2025Q1"), 2, 1.5, 200))
            .is_err()
    );
    // Every rate the plan lists meets the target, the equity rates too, each release at its
    // largest σ: σ = 0.08·200 / (1.96·√2) ≈ 5.77 for the equity release as well, so
    // ρ = 6·3/(2σ²) ≈ 0.27 for it.
    assert!(p.equity_rates.iter().all(|(_, h)| *h <= 0.08));
    assert!(p.widest_rate() <= 0.08);
    assert!(
        (p.equity_sigma - 0.08 * 200.0 / (Z95 * 2f64.sqrt())).abs() < 0.01,
        "{}",
        p.equity_sigma
    );
    assert!(
        (p.rho_equity - 6.0 * 3.0 / (2.0 * p.equity_sigma * p.equity_sigma)).abs()
            <= 1e-9 * p.rho_equity
    );
    assert!((p.rho - p.rho_standard - p.rho_equity).abs() <= 1e-12);
    let looser_equity = rt()
        .block_on(plan_with(
            &wh,
            q("2025Q1"),
            StandardNoise {
                k: 2,
                sigma: p.sigma,
            },
            StandardNoise {
                k: EQUITY_NOISE.k,
                sigma: p.equity_sigma * 1.01,
            },
            200,
        ))
        .unwrap();
    assert!(looser_equity.equity_rates.iter().any(|(_, h)| *h > 0.08));
}

#[test]
fn a_stored_figures_estimate_is_rebuilt_from_its_counts_as_published() {
    use outreach_warehouse::publication::CountNoise;
    use outreach_warehouse::publication::figures::RateFigure;
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let doc = rt()
        .block_on(publish(&wh, &opts("2025Q1")))
        .unwrap()
        .publication;
    // The document's noise: OpenDP's half-width of one program's count at its scale.
    let noise = CountNoise::of(&doc).unwrap();
    assert_eq!(noise.variance, 5.5 * 5.5);
    assert_eq!(noise.half_width, 11.0);
    let units = doc.programs.iter().map(|p| (1, &p.counts, &p.rates)).chain(
        doc.groups
            .iter()
            .map(|g| (g.programs.len(), &g.counts, &g.rates)),
    );
    let mut rebuilt = 0;
    for (programs, counts, rates) in units {
        for r in rates {
            let e = noise.rate(counts, programs, &r.numerator, &r.denominator);
            // The same figure, to the last bit, as `publish` stored it.
            let again = RateFigure::new(&r.name, &r.numerator, &r.denominator, e, r.complete);
            assert_eq!(&again, r);
            rebuilt += 1;
            // And its variance is what its stored interval says, where nothing is clamped.
            if let (Some(e), Some(lo), Some(hi)) = (e, r.lower, r.upper)
                && lo > 0.0
                && hi < 1.0
            {
                let from_interval = ((hi - lo) / 2.0 / Z95).powi(2);
                assert!(
                    (e.variance - from_interval).abs() <= 1e-9 * e.variance,
                    "{r:?}"
                );
            }
        }
    }
    assert!(rebuilt > 0);
}
