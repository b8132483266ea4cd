//! The values the command line takes, each read and checked as clap parses the flags: the
//! privacy budget (ρ, δ), noise scales (σ), the most cells a survivor counts in (k), shares,
//! the server's limits (rates, bursts, byte sizes, connections, timeouts), the synthetic
//! data's counts and seed, and the release's flag form (cell keys, statistics, noise scales
//! and ratios).
//!
//! A bad value is clap's usage error, exit 2, naming the flag and the range it accepts; `NaN`
//! and infinities never pass, and neither does a value past what the code behind the flag
//! can hold (a duration, a connection count, a number of quarters). The library checks the
//! same values again, whoever calls it (a release spec from a file or a researcher's
//! request, the ledger's own checks), so these parsers are the command line's early answer,
//! never the only one. Quarters, dates, addresses and address blocks are parsed by their own
//! types' `FromStr` (`Quarter`, `NaiveDate`, `SocketAddr`, `api::IpNet`).

use std::ffi::OsStr;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

use crate::privacy::spec::{CellSpec, DomainSpec, MAX_K, RatioSpec, StatisticKind, StatisticSpec};

pub use crate::api::{
    MAX_CONNECTIONS, MAX_REQUEST_RATE, MAX_TIMEOUT_SECONDS, MIN_RATE_PER_MINUTE,
    MIN_RATE_PER_SECOND, MIN_TIMEOUT_SECONDS,
};
/// The longest `--horizon`, the budget period in days: ten years, the longest the ledger
/// takes.
pub(super) const MAX_HORIZON_DAYS: u32 = 3650;
/// The most `--programs` the synthetic data has: program ids have three digits.
pub(super) const MAX_SYNTH_PROGRAMS: usize = 999;
/// The most `--persons` the synthetic data has: a survivor's number has seven digits in the
/// event ids.
pub(super) const MAX_SYNTH_PERSONS: usize = 9_999_999;
/// The most `--quarters` the synthetic data spans: twenty years.
pub(super) const MAX_SYNTH_QUARTERS: u32 = 80;

/// A finite number that `fits`; anything else, not a number, `NaN`, an infinity or a number
/// out of range, is refused with `message`, which says the range.
fn number(
    s: &str,
    fits: impl Fn(f64) -> bool,
    message: impl FnOnce() -> String,
) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && fits(v) => Ok(v),
        _ => Err(message()),
    }
}

/// A whole number from `min` to `max` that fits a `T`; the message says what it counts
/// (`what`) and the range.
fn whole_number<T: TryFrom<u64>>(s: &str, min: u64, max: u64, what: &str) -> Result<T, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{what} must be a whole number from {min} to {max}"))
}

/// The largest `usize`, as the `u64` [`whole_number`] compares with.
fn usize_max() -> u64 {
    u64::try_from(usize::MAX).unwrap_or(u64::MAX)
}

/// `--timeout-seconds`, `--header-read-timeout-seconds`: finite, from
/// [`MIN_TIMEOUT_SECONDS`] to [`MAX_TIMEOUT_SECONDS`].
pub(super) fn parse_timeout_seconds(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&v),
        || {
            format!(
                "the timeout must be a number of seconds from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"
            )
        },
    )
}

/// `--per-ip-per-second`: from [`MIN_RATE_PER_SECOND`] to [`MAX_REQUEST_RATE`].
pub(super) fn parse_rate_per_second(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| (MIN_RATE_PER_SECOND..=MAX_REQUEST_RATE).contains(&v),
        || {
            format!(
                "the rate must be a number of requests per second from {MIN_RATE_PER_SECOND:e} to {MAX_REQUEST_RATE:e}"
            )
        },
    )
}

/// `--per-token-per-minute`: from [`MIN_RATE_PER_MINUTE`] to [`MAX_REQUEST_RATE`].
pub(super) fn parse_rate_per_minute(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| (MIN_RATE_PER_MINUTE..=MAX_REQUEST_RATE).contains(&v),
        || {
            format!(
                "the rate must be a number of requests per minute from {MIN_RATE_PER_MINUTE:e} to {MAX_REQUEST_RATE:e}"
            )
        },
    )
}

/// `--per-ip-burst`, `--per-token-burst`: a whole number from 1 to `u32::MAX`.
pub(super) fn parse_burst(s: &str) -> Result<u32, String> {
    whole_number(s, 1, u64::from(u32::MAX), "a burst")
}

/// `--max-body-bytes`: a whole number of bytes from 1 to `usize::MAX`.
pub(super) fn parse_body_bytes(s: &str) -> Result<usize, String> {
    whole_number(s, 1, usize_max(), "the body limit (bytes)")
}

/// `--max-connections`: a whole number from 1 to [`MAX_CONNECTIONS`].
pub(super) fn parse_connections(s: &str) -> Result<usize, String> {
    whole_number(s, 1, MAX_CONNECTIONS as u64, "the connection limit")
}

/// `--small-cell`: a finite number of at least 0.
pub(super) fn parse_small_cell(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v >= 0.0,
        || "the small-cell threshold must be a finite number of at least 0".to_string(),
    )
}

/// A budget ρ (`budget init --total`, `budget renew --total`, `release --rho`): finite and
/// more than 0.
pub(super) fn parse_rho(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v > 0.0,
        || "rho must be a finite number more than 0".to_string(),
    )
}

/// The ρ added to an allocation (`budget allocate NAME RHO`): finite and at least 0, since 0
/// adds only δ to an existing allocation.
pub(super) fn parse_rho_to_add(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v >= 0.0,
        || "rho must be a finite number of at least 0".to_string(),
    )
}

/// A δ (`budget init`, `allocate`, `renew` and `release --delta`): from 0 up to, not
/// including, 1. A release's δ has a lower ceiling, which its spec check gives.
pub(super) fn parse_delta(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| (0.0..1.0).contains(&v),
        || "delta must be a number from 0 up to, not including, 1".to_string(),
    )
}

/// `--display-delta`, the δ at which ρ is shown as (ε, δ): more than 0 and less than 1.
pub(super) fn parse_display_delta(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v > 0.0 && v < 1.0,
        || "the display delta must be a number more than 0 and less than 1".to_string(),
    )
}

/// A noise scale (`--sigma`, `--equity-sigma`, `--min-scale`): finite and more than 0.
pub(super) fn parse_scale(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v > 0.0,
        || "a noise scale must be a finite number more than 0".to_string(),
    )
}

/// `--k`, the most cells (or cohorts) one survivor may count in: 1 to [`MAX_K`], what the
/// engine supports.
pub(super) fn parse_k(s: &str) -> Result<u32, String> {
    whole_number(s, 1, u64::from(MAX_K), "k")
}

/// `--horizon`, the budget period in days: 1 to [`MAX_HORIZON_DAYS`].
pub(super) fn parse_horizon_days(s: &str) -> Result<u32, String> {
    whole_number(s, 1, u64::from(MAX_HORIZON_DAYS), "the horizon (days)")
}

/// `--max-reject-rate`: a share, from 0 to 1.
pub(super) fn parse_share(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| (0.0..=1.0).contains(&v),
        || "a share must be a number from 0 to 1".to_string(),
    )
}

/// `plan --target-halfwidth`, a rate's half-width: more than 0 and less than 1.
pub(super) fn parse_halfwidth(s: &str) -> Result<f64, String> {
    number(
        s,
        |v| v > 0.0 && v < 1.0,
        || "a rate's half-width must be a number more than 0 and less than 1".to_string(),
    )
}

/// `plan --at`, the survivors at which half-widths are shown: a whole number from 1 to
/// `u64::MAX`.
pub(super) fn parse_survivors(s: &str) -> Result<u64, String> {
    whole_number(s, 1, u64::MAX, "the number of survivors")
}

/// `synth --programs`, `demo --programs`: 1 to [`MAX_SYNTH_PROGRAMS`].
pub(super) fn parse_synth_programs(s: &str) -> Result<usize, String> {
    whole_number(s, 1, MAX_SYNTH_PROGRAMS as u64, "the number of programs")
}

/// `synth --persons`, `demo --persons`: 1 to [`MAX_SYNTH_PERSONS`].
pub(super) fn parse_synth_persons(s: &str) -> Result<usize, String> {
    whole_number(s, 1, MAX_SYNTH_PERSONS as u64, "the number of persons")
}

/// `synth --quarters`: 1 to [`MAX_SYNTH_QUARTERS`]. The period's last day is worked out from
/// it before anything else, so a larger count must stop here.
pub(super) fn parse_synth_quarters(s: &str) -> Result<u32, String> {
    whole_number(
        s,
        1,
        u64::from(MAX_SYNTH_QUARTERS),
        "the number of quarters",
    )
}

/// `synth --seed`, `demo --seed`: any whole number from 0 to `u64::MAX`.
pub(super) fn parse_seed(s: &str) -> Result<u64, String> {
    whole_number(s, 0, u64::MAX, "the seed")
}

/// A value of the release's flag form, read by `parse`. When `parse` refuses it, the error
/// is the command line's, exit 2, and its message starts with the flag and the value as
/// written (`--cell program_id: write COLUMN=DOMAIN`), passed through
/// [`crate::present::tables::terminal_safe`] since it is printed as given.
#[derive(Clone)]
pub(super) struct FlagForm<T>(fn(&str) -> Result<T, String>);

/// A [`FlagForm`] parser for clap's `value_parser`.
pub(super) fn flag_form<T>(parse: fn(&str) -> Result<T, String>) -> FlagForm<T> {
    FlagForm(parse)
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for FlagForm<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let Some(text) = value.to_str() else {
            return Err(clap::Error::new(ErrorKind::InvalidUtf8).with_cmd(cmd));
        };
        (self.0)(text).map_err(|why| {
            let flag = arg.map_or_else(String::new, |a| match a.get_long() {
                Some(long) => format!("--{long}"),
                None => a.get_id().to_string(),
            });
            let message = format!("{flag} {text}: {why}");
            cmd.clone().error(
                ErrorKind::ValueValidation,
                crate::present::tables::terminal_safe(&message),
            )
        })
    }
}

/// `--cell COLUMN=DOMAIN`: a cell key and its public domain, `programs`,
/// `quarters:FROM..TO`, `dictionary:TABLE.COLUMN`, `values:A,B,C` or `private`.
pub(super) fn parse_cell(c: &str) -> Result<CellSpec, String> {
    let (column, domain) = c
        .split_once('=')
        .ok_or_else(|| "write COLUMN=DOMAIN".to_string())?;
    let domain = match domain.split_once(':') {
        None if domain == "programs" => DomainSpec::Programs,
        None if domain == "private" => DomainSpec::Private,
        Some(("dictionary", d)) => DomainSpec::Dictionary(d.into()),
        Some(("values", list)) => DomainSpec::Values(list.split(',').map(String::from).collect()),
        Some(("quarters", range)) => {
            let (from, to) = range
                .split_once("..")
                .ok_or_else(|| "write quarters:FROM..TO".to_string())?;
            DomainSpec::Quarters {
                from: from.into(),
                to: to.into(),
            }
        }
        _ => {
            return Err(
                "unknown cell domain; use programs, quarters:FROM..TO, dictionary:TABLE.COLUMN, values:A,B,C or private"
                    .into(),
            );
        }
    };
    Ok(CellSpec {
        column: column.into(),
        domain,
    })
}

/// `--stat NAME:count` or `--stat NAME:sum:LOWER:UPPER`, with whole-number bounds.
pub(super) fn parse_statistic(s: &str) -> Result<StatisticSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [name, "count"] => Ok(StatisticSpec {
            name: (*name).into(),
            column: None,
            kind: StatisticKind::Count,
            lower: None,
            upper: None,
        }),
        [name, "sum", lower, upper] => {
            let num = |x: &str| {
                x.parse::<i64>().map_err(|_| {
                    format!("bounds must be integers, from {} to {}", i64::MIN, i64::MAX)
                })
            };
            Ok(StatisticSpec {
                name: (*name).into(),
                column: None,
                kind: StatisticKind::Sum,
                lower: Some(num(lower)?),
                upper: Some(num(upper)?),
            })
        }
        [_, "sum", ..] => Err("missing bounds; write NAME:sum:LOWER:UPPER".into()),
        _ => Err("write NAME:count or NAME:sum:LOWER:UPPER".into()),
    }
}

/// `--scale NAME=SCALE`: a statistic's noise scale, finite and more than 0.
pub(super) fn parse_named_scale(s: &str) -> Result<(String, f64), String> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| "write NAME=SCALE".to_string())?;
    let v: f64 = v
        .parse()
        .map_err(|_| "the scale must be a number".to_string())?;
    if !(v.is_finite() && v > 0.0) {
        return Err("the scale must be a finite number more than 0".into());
    }
    Ok((name.to_string(), v))
}

/// `--ratio NAME=NUMERATOR/DENOMINATOR`: a ratio of two statistics.
pub(super) fn parse_ratio(r: &str) -> Result<RatioSpec, String> {
    let write = || "write NAME=NUMERATOR/DENOMINATOR".to_string();
    let (name, rest) = r.split_once('=').ok_or_else(write)?;
    let (num, den) = rest.split_once('/').ok_or_else(write)?;
    Ok(RatioSpec {
        name: name.into(),
        numerator: num.into(),
        denominator: den.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_refuse_nan_infinities_and_values_out_of_range() {
        for bad in ["NaN", "inf", "-inf", "infinity", "-1", "0", "x", ""] {
            assert!(parse_rho(bad).is_err(), "{bad}");
            assert!(parse_scale(bad).is_err(), "{bad}");
            assert!(parse_halfwidth(bad).is_err(), "{bad}");
            assert!(parse_display_delta(bad).is_err(), "{bad}");
        }
        for bad in ["NaN", "inf", "-1", "1", "1.5"] {
            assert!(parse_delta(bad).is_err(), "{bad}");
        }
        for bad in ["NaN", "inf", "-0.1", "1.01"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rho_to_add("0"), Ok(0.0));
        assert!(parse_rho_to_add("-0.5").is_err());
        assert_eq!(parse_delta("0"), Ok(0.0));
        assert_eq!(parse_delta("1e-5"), Ok(1e-5));
        assert_eq!(parse_share("1"), Ok(1.0));
        assert_eq!(parse_k("1"), Ok(1));
        assert_eq!(parse_k(&MAX_K.to_string()), Ok(MAX_K));
        for bad in ["0", "-1", "1.5", "99999999999"] {
            assert!(parse_k(bad).is_err(), "{bad}");
        }
        assert!(parse_k(&(MAX_K + 1).to_string()).is_err());
        assert!(parse_horizon_days("0").is_err());
        assert!(parse_horizon_days("4294967296").is_err());
        assert!(parse_survivors("0").is_err());
    }

    #[test]
    fn whole_numbers_name_their_range_and_stop_where_the_code_behind_them_does() {
        assert_eq!(parse_burst("1"), Ok(1));
        assert_eq!(parse_burst(&u32::MAX.to_string()), Ok(u32::MAX));
        assert_eq!(
            parse_burst("4294967296"),
            Err("a burst must be a whole number from 1 to 4294967295".to_string())
        );
        assert_eq!(
            parse_connections(&MAX_CONNECTIONS.to_string()),
            Ok(MAX_CONNECTIONS)
        );
        assert!(parse_connections(&(MAX_CONNECTIONS + 1).to_string()).is_err());
        assert_eq!(parse_horizon_days("3650"), Ok(3650));
        assert!(parse_horizon_days("3651").is_err());
        assert_eq!(parse_synth_quarters("80"), Ok(80));
        assert!(parse_synth_quarters("4294967295").is_err());
        assert_eq!(parse_seed("0"), Ok(0));
        assert_eq!(parse_seed(&u64::MAX.to_string()), Ok(u64::MAX));
        for bad in ["1e300", "inf", "NaN", "-1", "1.5", ""] {
            assert!(parse_seed(bad).is_err(), "{bad}");
            assert!(parse_body_bytes(bad).is_err(), "{bad}");
            assert!(parse_survivors(bad).is_err(), "{bad}");
            assert!(parse_synth_persons(bad).is_err(), "{bad}");
        }
        for bad in ["0", "1e-7", "NaN", "inf", "1e300", "-1"] {
            assert!(parse_rate_per_second(bad).is_err(), "{bad}");
            assert!(parse_rate_per_minute(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate_per_second("1e-6"), Ok(1e-6));
        assert_eq!(parse_rate_per_minute("6e-5"), Ok(6e-5));
        assert!(parse_rate_per_minute("5e-5").is_err());
        assert_eq!(parse_rate_per_minute("1e9"), Ok(1e9));
    }

    /// The command line's bounds are the library's: the ledger takes the longest horizon and
    /// no longer, and the synthetic data refuses one program, person or quarter more.
    #[test]
    fn the_bounds_agree_with_the_checks_of_the_library() {
        use crate::ledger::{BudgetInit, Ledger, PrivacyConfig};
        use crate::synth::{SynthConfig, SynthError, synth};
        let tmp = tempfile::tempdir().unwrap();
        let init = |horizon_days| {
            Ledger::init(
                tmp.path(),
                &BudgetInit {
                    total_rho: 1.0,
                    total_delta: 0.0,
                    horizon_days,
                    config: PrivacyConfig::default(),
                },
            )
        };
        assert!(init(MAX_HORIZON_DAYS + 1).is_err());
        assert!(init(MAX_HORIZON_DAYS).is_ok());
        let nowhere = tmp.path().join("never-written");
        for cfg in [
            SynthConfig {
                programs: MAX_SYNTH_PROGRAMS + 1,
                ..SynthConfig::default()
            },
            SynthConfig {
                persons: MAX_SYNTH_PERSONS + 1,
                ..SynthConfig::default()
            },
            SynthConfig {
                quarters: MAX_SYNTH_QUARTERS + 1,
                ..SynthConfig::default()
            },
        ] {
            assert!(matches!(
                synth(&nowhere, &cfg, false),
                Err(SynthError::Invalid(_))
            ));
        }
        assert!(!nowhere.exists());
    }

    #[test]
    fn the_flag_form_reads_what_it_always_read() {
        assert_eq!(
            parse_cell("quarter=quarters:2024Q3..2026Q2").unwrap(),
            CellSpec {
                column: "quarter".into(),
                domain: DomainSpec::Quarters {
                    from: "2024Q3".into(),
                    to: "2026Q2".into()
                }
            }
        );
        assert_eq!(
            parse_cell("g=values:a,b").unwrap().domain,
            DomainSpec::Values(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_cell("p=private").unwrap().domain, DomainSpec::Private);
        assert_eq!(
            parse_cell("p=dictionary:t.c").unwrap().domain,
            DomainSpec::Dictionary("t.c".into())
        );
        assert!(parse_cell("program_id").is_err());
        assert!(parse_cell("program_id=everything").is_err());
        assert!(parse_cell("q=quarters:2024Q3").is_err());
        let sum = parse_statistic("days:sum:0:30").unwrap();
        assert_eq!((sum.lower, sum.upper), (Some(0), Some(30)));
        assert_eq!(
            parse_statistic("n:count").unwrap().kind,
            StatisticKind::Count
        );
        assert!(parse_statistic("n:median").is_err());
        assert!(parse_statistic("n:sum:0:x").is_err());
        assert!(parse_statistic("n:sum:0").is_err());
        assert_eq!(parse_named_scale("n=2.5"), Ok(("n".into(), 2.5)));
        for bad in ["n=wide", "n=NaN", "n=inf", "n=0", "n=-1", "n"] {
            assert!(parse_named_scale(bad).is_err(), "{bad}");
        }
        let r = parse_ratio("rate=engaged/attempted").unwrap();
        assert_eq!(
            (
                r.name.as_str(),
                r.numerator.as_str(),
                r.denominator.as_str()
            ),
            ("rate", "engaged", "attempted")
        );
        assert!(parse_ratio("r").is_err());
        assert!(parse_ratio("r=a").is_err());
    }
}
