//! The values the command line takes, each read and checked as clap parses the flags: the
//! server's limits (rates, bursts, byte sizes, connections, timeouts). A bad value is clap's
//! usage error, exit 2, naming the flag and what it accepts; `NaN` and infinities never pass.

/// The shortest `--timeout-seconds`: a shorter one rounds to no time at all, and every
/// request would be answered 504.
pub const MIN_TIMEOUT_SECONDS: f64 = 0.001;
/// The longest `--timeout-seconds`: an hour. Far longer than any request takes; beyond it a
/// value only hides a mistake (and past about 1.8e19 it cannot be a duration at all).
pub const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
/// The largest `--per-ip-per-second` and `--per-token-per-minute`: one request per
/// nanosecond, the rate limiter's finest period. A larger rate rounds to a period of zero,
/// which the limiter cannot take.
pub const MAX_REQUEST_RATE: f64 = 1e9;

/// A flag's value as a number; `NaN` and `inf` parse, and each check below refuses them.
fn parse_number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("{s:?} is not a number"))
}

/// A whole number of at least 1.
fn parse_positive_whole(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// `--timeout-seconds`: finite, from [`MIN_TIMEOUT_SECONDS`] to [`MAX_TIMEOUT_SECONDS`].
pub(super) fn parse_timeout_seconds(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && (MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "the timeout must be a number of seconds from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}"
        ))
    }
}

/// `--per-ip-per-second`, `--per-token-per-minute`: finite, more than 0, at most
/// [`MAX_REQUEST_RATE`].
pub(super) fn parse_request_rate(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && v > 0.0 && v <= MAX_REQUEST_RATE {
        Ok(v)
    } else {
        Err(format!(
            "a request rate must be a number more than 0 and at most {MAX_REQUEST_RATE:e}"
        ))
    }
}

/// `--per-ip-burst`, `--per-token-burst`: a whole number of at least 1.
pub(super) fn parse_burst(s: &str) -> Result<u32, String> {
    u32::try_from(parse_positive_whole(s)?).map_err(|_| format!("a burst is at most {}", u32::MAX))
}

/// `--max-body-bytes`: a whole number of at least 1.
pub(super) fn parse_body_bytes(s: &str) -> Result<usize, String> {
    usize::try_from(parse_positive_whole(s)?)
        .map_err(|_| format!("the body limit is at most {}", usize::MAX))
}

/// `--max-connections`: a whole number of at least 1.
pub(super) fn parse_connections(s: &str) -> Result<usize, String> {
    usize::try_from(parse_positive_whole(s)?)
        .map_err(|_| format!("the connection limit is at most {}", usize::MAX))
}

/// `--small-cell`: a finite number of at least 0.
pub(super) fn parse_small_cell(s: &str) -> Result<f64, String> {
    let v = parse_number(s)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("the small-cell threshold must be a number of at least 0".into())
    }
}
