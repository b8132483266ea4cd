//! The checks of [`verify`], in the order the module docs of `verify` list them: the signed
//! head, the chain, the totals, the served budget, the served releases and publications.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{PeriodTotal, PublicRecord, VerifyError, VerifyReport};
use crate::ledger::chain::{self, GENESIS_PREV, entry_hash, from_hex, head_message, to_hex};
use crate::present::views::{LedgerHead, LedgerPage, LedgerSummary};
use crate::privacy::release::ReleaseResult;

/// The relative slack of a sum of ρ or δ against its budget, as the ledger allows it.
const SLACK: f64 = 1e-12;

/// The relative difference allowed between the chain's sums and the served budget's, which
/// the ledger adds up in another order.
const SUM_TOLERANCE: f64 = 1e-9;

const HEAD: &str = "v1/ledger/head.json";
const SUMMARY: &str = "v1/ledger.json";
const BUDGET: &str = "v1/budget.json";
const RELEASES: &str = "v1/releases.json";
const QUARTERS: &str = "v1/quarters.json";

/// What a missing field reads as.
static NULL: Value = Value::Null;

/// Checks the public record against the warehouse's public key `key` (see the module docs of
/// `verify`): a report of what was checked, or the first thing that does not hold.
pub fn verify(record: &dyn PublicRecord, key: &VerifyingKey) -> Result<VerifyReport, VerifyError> {
    verify_walked(record, key).map(|(report, _)| report)
}

/// [`verify`], with the entries it walked, in order: what `--since` compares a saved head
/// with.
pub(super) fn verify_walked(
    record: &dyn PublicRecord,
    key: &VerifyingKey,
) -> Result<(VerifyReport, Vec<Walked>), VerifyError> {
    let public_key = to_hex(key.as_bytes());
    let head: LedgerHead = fetch_json(record, HEAD)?;
    check_head(&head, key, &public_key)?;
    let summary: LedgerSummary = fetch_json(record, SUMMARY)?;
    if summary.entries != head.size || !summary.head_hash.eq_ignore_ascii_case(&head.hash) {
        return Err(VerifyError::Served {
            route: SUMMARY.to_string(),
            problem: format!(
                "it lists {} entries ending in {}, but the signed head covers {} ending in {}",
                summary.entries, summary.head_hash, head.size, head.hash
            ),
        });
    }
    let entries = walk(record, &summary, &head)?;
    let totals = totals(&entries)?;
    check_budget(record, &totals)?;
    let (releases_checked, releases_before_chain) = check_releases(record, &entries, &totals)?;
    let (publications_checked, publications_before_chain) =
        check_publications(record, &entries, &totals)?;
    let report = VerifyReport {
        public_key,
        entries: head.size,
        head_hash: head.hash.to_ascii_lowercase(),
        pages: summary.pages,
        migrated: totals.migrated,
        periods: totals.periods.clone(),
        lifetime_spent_rho: totals.lifetime_spent.0,
        lifetime_spent_delta: totals.lifetime_spent.1,
        lifetime_budget_rho: totals.lifetime_budget.0,
        lifetime_budget_delta: totals.lifetime_budget.1,
        debits: totals.debits,
        private_debits: totals.private_debits,
        releases_checked,
        releases_before_chain,
        publications_checked,
        publications_before_chain,
    };
    Ok((report, entries))
}

pub(super) fn fetch_json<T: DeserializeOwned>(
    record: &dyn PublicRecord,
    route: &str,
) -> Result<T, VerifyError> {
    let bytes = record.fetch(route)?;
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::Malformed {
        route: route.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn hash32(text: &str) -> Option<[u8; 32]> {
    from_hex(text)?.try_into().ok()
}

/// The head's signature verifies with the key given.
fn check_head(head: &LedgerHead, key: &VerifyingKey, public_key: &str) -> Result<(), VerifyError> {
    if head.size <= 0 {
        return Err(VerifyError::Head(
            "it covers no entry: the ledger has no chain".to_string(),
        ));
    }
    let hash = hash32(&head.hash)
        .ok_or_else(|| VerifyError::Head("its hash is not 64 hex digits".to_string()))?;
    let signature: [u8; 64] = from_hex(&head.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::Head("its signature is not 128 hex digits".to_string()))?;
    let signature = Signature::from_bytes(&signature);
    if key
        .verify_strict(&head_message(head.size as u64, &hash), &signature)
        .is_err()
    {
        let other = if head.public_key.eq_ignore_ascii_case(public_key) {
            String::new()
        } else {
            format!(
                " (the head names another public key, {}: trust only the key the warehouse published elsewhere)",
                head.public_key
            )
        };
        return Err(VerifyError::Head(format!(
            "its signature over size {} and hash {} does not verify with the public key given, {public_key}: it was signed with another key, or the head was changed{other}",
            head.size, head.hash
        )));
    }
    Ok(())
}

/// An entry as walked: its hash recomputed, its body read.
pub(super) struct Walked {
    pub(super) seq: i64,
    pub(super) kind: String,
    pub(super) hash: String,
    pub(super) body: Value,
}

fn entry_error(seq: i64, kind: &str, problem: impl Into<String>) -> VerifyError {
    VerifyError::Entry {
        seq,
        kind: kind.to_string(),
        problem: problem.into(),
    }
}

/// Whether `s` is a day, `YYYY-MM-DD`.
fn is_day(s: &str) -> bool {
    s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Reads every page in order and checks each entry's number, previous hash, hash and day,
/// and that the last is the signed head.
fn walk(
    record: &dyn PublicRecord,
    summary: &LedgerSummary,
    head: &LedgerHead,
) -> Result<Vec<Walked>, VerifyError> {
    let mut out: Vec<Walked> = Vec::with_capacity(summary.entries.max(0) as usize);
    let mut prev = GENESIS_PREV;
    for page in 1..=summary.pages {
        let route = format!("v1/ledger/pages/{page}.json");
        let served: LedgerPage = fetch_json(record, &route)?;
        if served.page != page {
            return Err(VerifyError::Served {
                route,
                problem: format!("it serves page {}", served.page),
            });
        }
        for e in served.entries {
            let expected = out.len() as i64;
            if e.seq != expected {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "found where entry {expected} should be: an entry is missing, or the entries are out of order"
                    ),
                ));
            }
            if !chain::KINDS.contains(&e.kind.as_str()) {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    "its kind is not one the chain has",
                ));
            }
            if !e.prev_hash.eq_ignore_ascii_case(&to_hex(&prev)) {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "it names {} as the previous entry's hash, but the entries before it hash to {}: an entry before it was removed, changed or reordered",
                        e.prev_hash,
                        to_hex(&prev)
                    ),
                ));
            }
            let hash = entry_hash(&prev, e.seq as u64, &e.kind, &e.body);
            if !e.hash.eq_ignore_ascii_case(&to_hex(&hash)) {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "its contents hash to {}, not to the hash it carries, {}: it was changed",
                        to_hex(&hash),
                        e.hash
                    ),
                ));
            }
            let body: Value = serde_json::from_str(&e.body).map_err(|err| {
                entry_error(e.seq, &e.kind, format!("its body is not JSON: {err}"))
            })?;
            let Some(fields) = body.as_object() else {
                return Err(entry_error(e.seq, &e.kind, "its body is not a JSON object"));
            };
            let day = fields.get("day").and_then(Value::as_str).unwrap_or("");
            if !is_day(day) {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    "its body has no day written YYYY-MM-DD",
                ));
            }
            if e.day != day {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!("it is served with day {}, but its body says {day}", e.day),
                ));
            }
            for field in ["starts", "ends", "period_starts", "period_ends"] {
                if let Some(value) = fields.get(field)
                    && !value.as_str().is_some_and(is_day)
                {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!(
                            "its {field} is not a day written YYYY-MM-DD: the public record holds days, never times of day"
                        ),
                    ));
                }
            }
            prev = hash;
            out.push(Walked {
                seq: e.seq,
                kind: e.kind,
                hash: to_hex(&hash),
                body,
            });
        }
    }
    if out.len() as i64 != head.size {
        return Err(VerifyError::Head(format!(
            "the pages hold {} entries, but the signed head covers {}",
            out.len(),
            head.size
        )));
    }
    if !head.hash.eq_ignore_ascii_case(&to_hex(&prev)) {
        return Err(VerifyError::Head(format!(
            "the entries hash to {}, but the signed head covers {}",
            to_hex(&prev),
            head.hash
        )));
    }
    Ok(out)
}

/// What the entries add up to.
#[derive(Debug, Default)]
struct Totals {
    migrated: bool,
    periods: Vec<PeriodTotal>,
    lifetime_spent: (f64, f64),
    lifetime_budget: (f64, f64),
    /// Per (period, allocation) of a period the chain lists whole: allocated ρ and δ, spent
    /// ρ and δ.
    allocations: HashMap<(i64, String), [f64; 4]>,
    debits: usize,
    private_debits: usize,
    /// A public release's debit: its entry's index, ρ and δ.
    debit_of: HashMap<i64, (usize, f64, f64)>,
    /// The entry (index) of each release's numbers and of each publication.
    releases: BTreeMap<i64, usize>,
    publications: BTreeMap<i64, usize>,
    /// Each quarter's latest publication on the chain.
    latest_publication: HashMap<String, i64>,
    /// What a migrated chain's genesis summarises: releases and publications up to these ids.
    releases_through: i64,
    publications_through: i64,
}

/// A field of an entry's body as a spend: a number of at least 0.
fn amount(e: &Walked, field: &str) -> Result<f64, VerifyError> {
    e.body
        .get(field)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| {
            entry_error(
                e.seq,
                &e.kind,
                format!("its {field} is missing or not a number of at least 0"),
            )
        })
}

/// A field of an entry's body as a whole number.
fn whole(e: &Walked, field: &str) -> Result<i64, VerifyError> {
    e.body.get(field).and_then(Value::as_i64).ok_or_else(|| {
        entry_error(
            e.seq,
            &e.kind,
            format!("its {field} is missing or not a whole number"),
        )
    })
}

fn text<'a>(e: &'a Walked, field: &str) -> Result<&'a str, VerifyError> {
    e.body.get(field).and_then(Value::as_str).ok_or_else(|| {
        entry_error(
            e.seq,
            &e.kind,
            format!("its {field} is missing or not text"),
        )
    })
}

/// Whether `spent` fits within `cap`, with the ledger's slack.
fn fits(spent: f64, cap: f64) -> bool {
    spent <= cap * (1.0 + SLACK)
}

/// Adds up every spend on the chain, checking each limit as the entries go.
fn totals(entries: &[Walked]) -> Result<Totals, VerifyError> {
    let mut t = Totals::default();
    for (i, e) in entries.iter().enumerate() {
        if (e.seq == 0) != (e.kind == chain::GENESIS) {
            return Err(entry_error(
                e.seq,
                &e.kind,
                "the chain starts with its genesis entry, and has only one",
            ));
        }
        let current = t.periods.last().map(|p| p.period);
        let in_current = |period: i64| -> Result<(), VerifyError> {
            match current {
                Some(c) if c == period => Ok(()),
                Some(c) => Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!("it is in budget period {period}, but the current period is {c}"),
                )),
                None => Err(entry_error(
                    e.seq,
                    &e.kind,
                    "it comes before any budget period",
                )),
            }
        };
        match e.kind.as_str() {
            chain::GENESIS => {
                t.migrated = e
                    .body
                    .get("migrated")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if t.migrated {
                    let period = PeriodTotal {
                        period: whole(e, "period")?,
                        budget_rho: amount(e, "period_rho")?,
                        budget_delta: amount(e, "period_delta")?,
                        spent_rho: amount(e, "period_spent_rho")?,
                        spent_delta: amount(e, "period_spent_delta")?,
                        summarised: true,
                    };
                    t.lifetime_spent = (
                        amount(e, "lifetime_spent_rho")?,
                        amount(e, "lifetime_spent_delta")?,
                    );
                    t.lifetime_budget = (
                        amount(e, "lifetime_budget_rho")?,
                        amount(e, "lifetime_budget_delta")?,
                    );
                    t.releases_through = whole(e, "releases_through")?;
                    t.publications_through = whole(e, "publications_through")?;
                    check_period(e, &period)?;
                    t.periods.push(period);
                }
            }
            chain::RECOVERY => {
                // A restart after a lost ledger: its lifetime spend is carried over, and the
                // lost ledger's budgets held at least that much.
                if e.seq != 1 {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        "a recovery is the entry right after the genesis of a new chain",
                    ));
                }
                let (rho, delta) = (amount(e, "lifetime_rho")?, amount(e, "lifetime_delta")?);
                text(e, "lost_ledger_id")?;
                text(e, "lost_chain_head")?;
                text(e, "why")?;
                t.lifetime_spent.0 += rho;
                t.lifetime_spent.1 += delta;
                t.lifetime_budget.0 += rho;
                t.lifetime_budget.1 += delta;
            }
            chain::BUDGET_PERIOD => {
                let period = whole(e, "period")?;
                if current.is_some_and(|c| period <= c) {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!(
                            "period {period} does not follow period {}",
                            current.unwrap_or(0)
                        ),
                    ));
                }
                let (rho, delta) = (amount(e, "rho")?, amount(e, "delta")?);
                t.lifetime_budget.0 += rho;
                t.lifetime_budget.1 += delta;
                t.periods.push(PeriodTotal {
                    period,
                    budget_rho: rho,
                    budget_delta: delta,
                    spent_rho: 0.0,
                    spent_delta: 0.0,
                    summarised: false,
                });
            }
            chain::ALLOCATION => {
                let period = whole(e, "period")?;
                in_current(period)?;
                let (rho, delta) = (amount(e, "rho")?, amount(e, "delta")?);
                let name = text(e, "name")?.to_string();
                let p = t.periods.last().expect("in_current found the period");
                if !p.summarised {
                    let (budget_rho, budget_delta) = (p.budget_rho, p.budget_delta);
                    let a = t.allocations.entry((period, name)).or_default();
                    a[0] += rho;
                    a[1] += delta;
                    let (all_rho, all_delta) = t
                        .allocations
                        .iter()
                        .filter(|((of, _), _)| *of == period)
                        .fold((0.0, 0.0), |(r, d), (_, a)| (r + a[0], d + a[1]));
                    if !fits(all_rho, budget_rho) || !fits(all_delta, budget_delta) {
                        return Err(entry_error(
                            e.seq,
                            &e.kind,
                            format!(
                                "the allocations of period {period} reach rho = {all_rho}, delta = {all_delta}, above its budget of rho = {budget_rho}, delta = {budget_delta}"
                            ),
                        ));
                    }
                }
            }
            chain::DEBIT | chain::PRIVATE_DEBIT => {
                let period = whole(e, "period")?;
                in_current(period)?;
                let (rho, delta) = (amount(e, "rho")?, amount(e, "delta")?);
                let allocation = text(e, "allocation")?.to_string();
                t.debits += 1;
                if e.kind == chain::PRIVATE_DEBIT {
                    t.private_debits += 1;
                    if allocation != chain::RESEARCHERS {
                        return Err(entry_error(
                            e.seq,
                            &e.kind,
                            format!(
                                "a private release is debited from `{}`, never from a named allocation",
                                chain::RESEARCHERS
                            ),
                        ));
                    }
                } else {
                    let release = whole(e, "release_id")?;
                    if t.debit_of.insert(release, (i, rho, delta)).is_some() {
                        return Err(entry_error(
                            e.seq,
                            &e.kind,
                            format!("release {release} is debited twice"),
                        ));
                    }
                }
                let p = t.periods.last_mut().expect("in_current found the period");
                p.spent_rho += rho;
                p.spent_delta += delta;
                check_period(e, p)?;
                let summarised = p.summarised;
                t.lifetime_spent.0 += rho;
                t.lifetime_spent.1 += delta;
                if !fits(t.lifetime_spent.0, t.lifetime_budget.0)
                    || !fits(t.lifetime_spent.1, t.lifetime_budget.1)
                {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!(
                            "the lifetime spend reaches rho = {}, delta = {}, above the periods' budgets together, rho = {}, delta = {}",
                            t.lifetime_spent.0,
                            t.lifetime_spent.1,
                            t.lifetime_budget.0,
                            t.lifetime_budget.1
                        ),
                    ));
                }
                if !summarised {
                    let Some(a) = t.allocations.get_mut(&(period, allocation.clone())) else {
                        return Err(entry_error(
                            e.seq,
                            &e.kind,
                            format!(
                                "it debits allocation `{allocation}`, which has nothing allocated in period {period}"
                            ),
                        ));
                    };
                    a[2] += rho;
                    a[3] += delta;
                    let over_delta = delta > 0.0 && !fits(a[3], a[1]);
                    if !fits(a[2], a[0]) || over_delta {
                        return Err(entry_error(
                            e.seq,
                            &e.kind,
                            format!(
                                "allocation `{allocation}` of period {period} has spent rho = {}, delta = {}, above what it was given, rho = {}, delta = {}",
                                a[2], a[3], a[0], a[1]
                            ),
                        ));
                    }
                }
            }
            chain::RELEASE => {
                let release = whole(e, "release_id")?;
                if t.releases.insert(release, i).is_some() {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!("the numbers of release {release} are on the chain twice"),
                    ));
                }
                let (rho, delta) = (amount(e, "rho")?, amount(e, "delta")?);
                if let Some((_, debit_rho, debit_delta)) = t.debit_of.get(&release)
                    && (*debit_rho != rho || *debit_delta != delta)
                {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!(
                            "release {release} says rho = {rho}, delta = {delta}, but its debit says rho = {debit_rho}, delta = {debit_delta}"
                        ),
                    ));
                }
            }
            chain::PUBLICATION => {
                let publication = whole(e, "publication_id")?;
                if t.publications.insert(publication, i).is_some() {
                    return Err(entry_error(
                        e.seq,
                        &e.kind,
                        format!("publication {publication} is on the chain twice"),
                    ));
                }
                let quarter = text(e, "quarter")?.to_string();
                t.latest_publication.insert(quarter, publication);
            }
            other => {
                return Err(entry_error(
                    e.seq,
                    other,
                    "its kind is not one the chain has",
                ));
            }
        }
    }
    if t.periods.is_empty() {
        return Err(VerifyError::Head(
            "the chain holds no budget period".to_string(),
        ));
    }
    Ok(t)
}

/// The period's spend fits within its budget.
fn check_period(e: &Walked, p: &PeriodTotal) -> Result<(), VerifyError> {
    if !fits(p.spent_rho, p.budget_rho) || !fits(p.spent_delta, p.budget_delta) {
        return Err(entry_error(
            e.seq,
            &e.kind,
            format!(
                "the spend of budget period {} reaches rho = {}, delta = {}, above its budget of rho = {}, delta = {}",
                p.period, p.spent_rho, p.spent_delta, p.budget_rho, p.budget_delta
            ),
        ));
    }
    Ok(())
}

/// Whether two sums of the same spends agree, up to the order they were added in.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= SUM_TOLERANCE * a.abs().max(b.abs()) + 1e-300
}

fn number(v: &Value, field: &str, route: &str) -> Result<f64, VerifyError> {
    v.get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| VerifyError::Malformed {
            route: route.to_string(),
            message: format!("no number `{field}`"),
        })
}

/// The served budget is the chain's: the current period's total and spend, and the lifetime
/// spend.
fn check_budget(record: &dyn PublicRecord, t: &Totals) -> Result<(), VerifyError> {
    let budget: Value = fetch_json(record, BUDGET)?;
    let p = t.periods.last().expect("totals holds a period");
    let pairs = [
        ("total_rho", p.budget_rho, "the current period's budget rho"),
        (
            "total_delta",
            p.budget_delta,
            "the current period's budget delta",
        ),
        ("spent_rho", p.spent_rho, "the current period's debits' rho"),
        (
            "spent_delta",
            p.spent_delta,
            "the current period's debits' delta",
        ),
        (
            "lifetime_rho",
            t.lifetime_spent.0,
            "every debit's rho, with what a recovery carried over,",
        ),
    ];
    for (field, chain_value, what) in pairs {
        let served = number(&budget, field, BUDGET)?;
        if !close(served, chain_value) {
            return Err(VerifyError::Served {
                route: BUDGET.to_string(),
                problem: format!(
                    "it says {field} = {served}, but on the ledger chain {what} add up to {chain_value}"
                ),
            });
        }
    }
    Ok(())
}

/// Every served release is on the chain with the same numbers, spend and entry hash, and
/// every release on the chain is served. Returns how many were checked, and how many were
/// made before the chain began.
fn check_releases(
    record: &dyn PublicRecord,
    entries: &[Walked],
    t: &Totals,
) -> Result<(usize, usize), VerifyError> {
    let list: Vec<Value> = fetch_json(record, RELEASES)?;
    let mut served = BTreeSet::new();
    let (mut checked, mut before) = (0, 0);
    for item in &list {
        let id = item
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| VerifyError::Malformed {
                route: RELEASES.to_string(),
                message: "a release without a whole-number `id`".to_string(),
            })?;
        served.insert(id);
        let route = format!("v1/releases/{id}.json");
        let release: Value = fetch_json(record, &route)?;
        if release.get("id").and_then(Value::as_i64) != Some(id) {
            return Err(VerifyError::Served {
                route,
                problem: format!("it does not serve release {id}"),
            });
        }
        let Some(&at) = t.releases.get(&id) else {
            if id <= t.releases_through {
                before += 1;
                continue;
            }
            return Err(VerifyError::Served {
                route,
                problem: format!(
                    "release {id} is served, but its numbers are not on the ledger chain"
                ),
            });
        };
        let e = &entries[at];
        if release.get("ledger_entry").and_then(Value::as_str) != Some(e.hash.as_str()) {
            return Err(entry_error(
                e.seq,
                &e.kind,
                format!(
                    "release {id} is served ({route}) with ledger_entry {}, not this entry's hash {}",
                    release.get("ledger_entry").unwrap_or(&NULL),
                    e.hash
                ),
            ));
        }
        let numbers = |v: Option<&Value>| -> Option<ReleaseResult> {
            serde_json::from_value(v?.clone()).ok()
        };
        let on_chain = numbers(e.body.get("result"))
            .ok_or_else(|| entry_error(e.seq, &e.kind, "its result is not a release's numbers"))?;
        let shown = numbers(release.get("result")).ok_or_else(|| VerifyError::Malformed {
            route: route.clone(),
            message: "its result is not a release's numbers".to_string(),
        })?;
        if on_chain != shown {
            return Err(entry_error(
                e.seq,
                &e.kind,
                format!(
                    "release {id} is served ({route}) with numbers other than this entry's: a number was changed"
                ),
            ));
        }
        let same = |served_field: &str, chain_field: &str| {
            release.get(served_field) == e.body.get(chain_field)
                || matches!(
                    (
                        release.get(served_field).and_then(Value::as_f64),
                        e.body.get(chain_field).and_then(Value::as_f64)
                    ),
                    (Some(a), Some(b)) if a == b
                )
        };
        for (served_field, chain_field) in [
            ("debit_rho", "rho"),
            ("debit_delta", "delta"),
            ("name", "name"),
            ("dataset_version", "dataset_version"),
        ] {
            if !same(served_field, chain_field) {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "release {id} is served ({route}) with {served_field} {}, but this entry says {}",
                        release.get(served_field).unwrap_or(&NULL),
                        e.body.get(chain_field).unwrap_or(&NULL)
                    ),
                ));
            }
        }
        checked += 1;
    }
    for (id, &at) in &t.releases {
        if !served.contains(id) {
            let e = &entries[at];
            return Err(entry_error(
                e.seq,
                &e.kind,
                format!(
                    "release {id} is on the ledger chain but not served at {RELEASES}: a release was hidden"
                ),
            ));
        }
    }
    Ok((checked, before))
}

/// Every served publication is its quarter's latest on the chain, with the same releases,
/// predecessor and entry hash. Returns how many were checked, and how many were made before
/// the chain began.
fn check_publications(
    record: &dyn PublicRecord,
    entries: &[Walked],
    t: &Totals,
) -> Result<(usize, usize), VerifyError> {
    let quarters: Vec<Value> = fetch_json(record, QUARTERS)?;
    let (mut checked, mut before) = (0, 0);
    for q in &quarters {
        let malformed = |message: &str| VerifyError::Malformed {
            route: QUARTERS.to_string(),
            message: message.to_string(),
        };
        let id = q
            .get("publication_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed("a quarter without a whole-number `publication_id`"))?;
        let quarter = q
            .get("quarter")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a publication without its `quarter`"))?;
        if let Some(latest) = t.latest_publication.get(quarter)
            && *latest != id
        {
            let e = &entries[t.publications[latest]];
            return Err(entry_error(
                e.seq,
                &e.kind,
                format!(
                    "publication {latest} is {quarter}'s latest on the ledger chain, but {QUARTERS} serves publication {id}"
                ),
            ));
        }
        let Some(&at) = t.publications.get(&id) else {
            if id <= t.publications_through {
                before += 1;
                continue;
            }
            return Err(VerifyError::Served {
                route: QUARTERS.to_string(),
                problem: format!(
                    "publication {id} of {quarter} is served, but it is not on the ledger chain"
                ),
            });
        };
        let e = &entries[at];
        for field in ["quarter", "release_id", "equity_release_id", "supersedes"] {
            let served = q.get(field).unwrap_or(&NULL);
            let chained = e.body.get(field).unwrap_or(&NULL);
            if served != chained {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "publication {id} is served ({QUARTERS}) with {field} {served}, but this entry says {chained}"
                    ),
                ));
            }
        }
        if q.get("ledger_entry").and_then(Value::as_str) != Some(e.hash.as_str()) {
            return Err(entry_error(
                e.seq,
                &e.kind,
                format!(
                    "publication {id} is served ({QUARTERS}) with ledger_entry {}, not this entry's hash {}",
                    q.get("ledger_entry").unwrap_or(&NULL),
                    e.hash
                ),
            ));
        }
        for field in ["release_id", "equity_release_id"] {
            if let Some(release) = e.body.get(field).and_then(Value::as_i64)
                && release > t.releases_through
                && !t.releases.contains_key(&release)
            {
                return Err(entry_error(
                    e.seq,
                    &e.kind,
                    format!(
                        "publication {id} publishes release {release}, whose numbers are not on the ledger chain"
                    ),
                ));
            }
        }
        checked += 1;
    }
    Ok((checked, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_days_and_times_of_day_are_not() {
        assert!(is_day("2025-07-01"));
        for not in [
            "2025-7-01",
            "2025/07/01",
            "2025-07-01T00:00:00Z",
            "",
            "2025-07-0x",
            "2025-07-01é",
        ] {
            assert!(!is_day(not), "{not}");
        }
    }

    #[test]
    fn a_spend_fits_with_the_ledgers_slack_and_no_more() {
        assert!(fits(1.0, 1.0));
        assert!(fits(1.0 + 1e-13, 1.0));
        assert!(!fits(1.0 + 1e-9, 1.0));
        assert!(fits(0.0, 0.0));
        assert!(!fits(1e-9, 0.0));
    }
}
