//! Calendar quarters: the public time key of every standard metric and the partition key of
//! the warehouse's Parquet layout.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A calendar quarter such as `2025Q1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quarter {
    year: i32,
    /// 1 to 4.
    q: u8,
}

impl Quarter {
    /// Builds a quarter; `q` must be 1 to 4.
    pub fn new(year: i32, q: u8) -> Option<Self> {
        (1..=4).contains(&q).then_some(Self { year, q })
    }

    /// The quarter that holds `date`.
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            q: (date.month0() / 3 + 1) as u8,
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn number(self) -> u8 {
        self.q
    }

    /// First day of the quarter.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, u32::from(self.q - 1) * 3 + 1, 1)
            .expect("a quarter's first day is a valid date")
    }

    /// Last day of the quarter.
    pub fn last_day(self) -> NaiveDate {
        self.next()
            .first_day()
            .pred_opt()
            .expect("a quarter has a last day")
    }

    /// The quarter after this one.
    pub fn next(self) -> Self {
        if self.q == 4 {
            Self {
                year: self.year + 1,
                q: 1,
            }
        } else {
            Self {
                year: self.year,
                q: self.q + 1,
            }
        }
    }

    /// The quarter before this one.
    pub fn previous(self) -> Self {
        if self.q == 1 {
            Self {
                year: self.year - 1,
                q: 4,
            }
        } else {
            Self {
                year: self.year,
                q: self.q - 1,
            }
        }
    }

    /// This quarter and the `n - 1` that follow it.
    pub fn range(self, n: u32) -> Vec<Quarter> {
        std::iter::successors(Some(self), |q| Some(q.next()))
            .take(n as usize)
            .collect()
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Q{}", self.year, self.q)
    }
}

/// Why a text is not a quarter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a quarter: write it as YYYYQn, for example 2025Q1")]
pub struct ParseQuarterError(pub String);

/// How the API writes a quarter, in its paths, its parameters and its OpenAPI document: four
/// digits, `Q`, then 1 to 4. Parsing ([`Quarter::from_str`]) is kinder, for the command line
/// (it trims, and takes a lowercase `q`); the API takes this form only, so that the pattern
/// its document states is the whole rule.
pub const QUARTER_PATTERN: &str = "^[0-9]{4}Q[1-4]$";

/// Whether `s` is written as [`QUARTER_PATTERN`] says.
pub fn is_quarter(s: &str) -> bool {
    match s.as_bytes() {
        [year @ .., b'Q', q] if year.len() == 4 => {
            year.iter().all(u8::is_ascii_digit) && (b'1'..=b'4').contains(q)
        }
        _ => false,
    }
}

impl FromStr for Quarter {
    type Err = ParseQuarterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseQuarterError(s.to_string());
        let (year, q) = s.trim().split_once(['Q', 'q']).ok_or_else(err)?;
        if year.len() != 4 || q.len() != 1 {
            return Err(err());
        }
        let year: i32 = year.parse().map_err(|_| err())?;
        let q: u8 = q.parse().map_err(|_| err())?;
        Quarter::new(year, q).ok_or_else(err)
    }
}

impl TryFrom<String> for Quarter {
    type Error = ParseQuarterError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Quarter> for String {
    fn from(q: Quarter) -> String {
        q.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn quarter_boundaries() {
        let q: Quarter = "2024Q1".parse().unwrap();
        assert_eq!(q.first_day(), d(2024, 1, 1));
        assert_eq!(q.last_day(), d(2024, 3, 31));
        let q4: Quarter = "2024Q4".parse().unwrap();
        assert_eq!(q4.last_day(), d(2024, 12, 31));
        assert_eq!(q4.next().to_string(), "2025Q1");
        assert_eq!(Quarter::of(d(2024, 6, 30)).to_string(), "2024Q2");
        assert_eq!(Quarter::of(d(2024, 7, 1)).to_string(), "2024Q3");
    }

    #[test]
    fn the_previous_quarter_crosses_years() {
        let q: Quarter = "2025Q1".parse().unwrap();
        assert_eq!(q.previous().to_string(), "2024Q4");
        assert_eq!(q.previous().next(), q);
        assert_eq!(q.next().previous(), q);
        assert_eq!(
            "2025Q3".parse::<Quarter>().unwrap().previous().to_string(),
            "2025Q2"
        );
    }

    #[test]
    fn range_spans_years() {
        let qs: Vec<String> = "2024Q3"
            .parse::<Quarter>()
            .unwrap()
            .range(4)
            .iter()
            .map(|q| q.to_string())
            .collect();
        assert_eq!(qs, ["2024Q3", "2024Q4", "2025Q1", "2025Q2"]);
    }

    #[test]
    fn rejects_malformed_quarters() {
        for bad in ["2024", "2024Q5", "2024Q0", "24Q1", "2024-Q1", "Q1 2024", ""] {
            let err = bad.parse::<Quarter>().unwrap_err();
            assert!(err.to_string().contains("YYYYQn"), "{bad}: {err}");
        }
        assert_eq!("2025q2".parse::<Quarter>().unwrap().to_string(), "2025Q2");
    }

    #[test]
    fn the_apis_form_of_a_quarter_is_its_pattern_exactly() {
        for good in ["2025Q1", "0000Q4", "9999Q2"] {
            assert!(is_quarter(good), "{good}");
            assert!(good.parse::<Quarter>().is_ok(), "{good}");
        }
        for bad in [
            "2025q1",
            " 2025Q1",
            "2025Q1 ",
            "2025Q1\n",
            "2025Q5",
            "2025Q0",
            "+202Q1",
            "-202Q1",
            "20250Q1",
            "225Q1",
            "2025Q",
            "Q1",
            "",
            "２０２５Q1",
        ] {
            assert!(!is_quarter(bad), "{bad:?}");
        }
    }
}
