//! Normalisation of linkage fields, so that one survivor written differently in two
//! programs' exports gives the same text to key: accents folded (Unicode NFKD, combining marks
//! dropped), lower case, whitespace and punctuation removed, nicknames mapped to a formal
//! name, dates of birth in their usual written forms read as `YYYY-MM-DD`, sex codes as `m`,
//! `f` or `x`.
//!
//! Nothing here keeps, logs or reports a value: a value that cannot be read is an
//! [`Unreadable`] reason, which names the expected forms and never the value.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::config::DateOrder;

/// A sex as keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    M,
    F,
    X,
}

impl Sex {
    pub fn code(self) -> &'static str {
        match self {
            Sex::M => "m",
            Sex::F => "f",
            Sex::X => "x",
        }
    }
}

/// Why a field's value cannot be keyed; the text names the forms accepted, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    Date,
    DateTwoDigitYear,
    DateOutOfRange,
    Sex,
}

impl Unreadable {
    pub fn describe(self) -> &'static str {
        match self {
            Unreadable::Date => {
                "is no date in a form pseudonymize reads (YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD, \
                 MM/DD/YYYY or DD/MM/YYYY as date_order says, 12 March 1980, March 12, 1980)"
            }
            Unreadable::DateTwoDigitYear => {
                "is a date with a two-digit year, whose century cannot be known: write the year whole"
            }
            Unreadable::DateOutOfRange => "is a date before 1900 or after today",
            Unreadable::Sex => {
                "is no sex code pseudonymize knows (m, male, man, f, female, woman, x, other, \
                 nonbinary, u, unknown, declined; more in the config's [sex_codes])"
            }
        }
    }
}

/// The words of `s`: accents folded, lower case, split at anything that is not a letter or
/// a digit.
pub fn words(s: &str) -> Vec<String> {
    let folded: String = s
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `s` as one word: [`words`] joined, so `O'Brien`, `O Brien` and `OBRIEN` agree.
pub fn word(s: &str) -> String {
    words(s).concat()
}

/// A name: its words, each mapped through `nicknames` when given, joined. Empty when the
/// value holds no letter or digit (a missing field).
pub fn name(s: &str, nicknames: Option<&BTreeMap<String, String>>) -> String {
    words(s)
        .into_iter()
        .map(|w| match nicknames.and_then(|n| n.get(&w)) {
            Some(formal) => formal.clone(),
            None => w,
        })
        .collect()
}

/// A sex code: `Ok(None)` when the value is blank or says unknown.
pub fn sex(s: &str, extra: &BTreeMap<String, Option<Sex>>) -> Result<Option<Sex>, Unreadable> {
    let w = word(s);
    if let Some(s) = extra.get(&w) {
        return Ok(*s);
    }
    match w.as_str() {
        "" | "u" | "unk" | "unknown" | "declined" | "refused" | "notknown" | "notrecorded"
        | "na" | "nk" => Ok(None),
        "m" | "male" | "man" => Ok(Some(Sex::M)),
        "f" | "female" | "woman" => Ok(Some(Sex::F)),
        "x" | "other" | "nonbinary" | "nb" | "intersex" => Ok(Some(Sex::X)),
        _ => Err(Unreadable::Sex),
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The month a word names: its English name or its first three letters (`sept` too).
fn month(w: &str) -> Option<u32> {
    if w == "sept" {
        return Some(9);
    }
    MONTHS
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w)))
        .map(|i| i as u32 + 1)
}

/// A date as `YYYY-MM-DD`, from `1980-03-12`, `1980/3/12`, `19800312`, `03/12/1980` (or
/// `12/03/1980` with `date_order = "dmy"`), `12 March 1980`, `March 12, 1980` or `Mar-12-1980`;
/// a time after the date (`1980-03-12T00:00:00`, `3/12/1980 0:00`) is ignored. `Ok(None)`
/// when blank. A year must be written whole, from 1900 to `today`'s.
pub fn date(s: &str, order: DateOrder, today: NaiveDate) -> Result<Option<String>, Unreadable> {
    let mut s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    // A time of day: cut at the space or `T` before its first `:`.
    if let Some(colon) = s.find(':') {
        let cut = s[..colon].rfind([' ', 'T', 't']).ok_or(Unreadable::Date)?;
        s = s[..cut].trim_end();
    }
    let ws = words(s);
    let num = |w: &str| -> Option<u32> {
        (w.len() <= 4 && w.bytes().all(|b| b.is_ascii_digit()))
            .then(|| w.parse().ok())
            .flatten()
    };
    let (y, m, d, year_len) = match ws.as_slice() {
        [one] if one.len() == 8 && one.bytes().all(|b| b.is_ascii_digit()) => (
            one[..4].parse::<u32>().map_err(|_| Unreadable::Date)?,
            one[4..6].parse::<u32>().map_err(|_| Unreadable::Date)?,
            one[6..].parse::<u32>().map_err(|_| Unreadable::Date)?,
            4,
        ),
        [a, b, c] => {
            if let Some(mo) = [a, b, c].iter().find_map(|w| month(w)) {
                // A month by name; of the two numbers, the one of four digits is the year.
                let nums: Vec<&String> = [a, b, c]
                    .into_iter()
                    .filter(|w| month(w).is_none())
                    .collect();
                let [p, q] = nums.as_slice() else {
                    return Err(Unreadable::Date);
                };
                let (yw, dw) = if p.len() == 4 { (p, q) } else { (q, p) };
                let y = num(yw.as_str()).ok_or(Unreadable::Date)?;
                let d = num(dw.as_str()).ok_or(Unreadable::Date)?;
                if dw.len() > 2 {
                    return Err(Unreadable::Date);
                }
                (y, mo, d, yw.len())
            } else {
                let (x, y, z) = (
                    num(a.as_str()).ok_or(Unreadable::Date)?,
                    num(b.as_str()).ok_or(Unreadable::Date)?,
                    num(c.as_str()).ok_or(Unreadable::Date)?,
                );
                if a.len() == 4 {
                    (x, y, z, 4)
                } else if b.len() > 2 || a.len() > 2 {
                    return Err(Unreadable::Date);
                } else {
                    match order {
                        DateOrder::Mdy => (z, x, y, c.len()),
                        DateOrder::Dmy => (z, y, x, c.len()),
                    }
                }
            }
        }
        _ => return Err(Unreadable::Date),
    };
    if year_len != 4 {
        return Err(if year_len <= 2 {
            Unreadable::DateTwoDigitYear
        } else {
            Unreadable::Date
        });
    }
    let date = NaiveDate::from_ymd_opt(y as i32, m, d).ok_or(Unreadable::Date)?;
    if date.year() < 1900 || date > today {
        return Err(Unreadable::DateOutOfRange);
    }
    Ok(Some(date.format("%Y-%m-%d").to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
    }

    #[test]
    fn names_fold_case_accents_spacing_and_punctuation() {
        for v in [
            "José",
            "JOSE",
            " jose ",
            "Jose\u{301}",
            "J.O.S.E",
            "Jos\u{e9}",
        ] {
            assert_eq!(name(v, None), "jose", "{v:?}");
        }
        for v in ["O'Brien", "o brien", "OBRIEN", "O\u{2019}Brien", "Ó-Brien"] {
            assert_eq!(name(v, None), "obrien", "{v:?}");
        }
        // Full-width letters fold too (NFKD).
        assert_eq!(name("\u{ff2a}\u{ff4f}", None), "jo");
        assert_eq!(name(" - ", None), "");
    }

    #[test]
    fn nicknames_map_each_word_once() {
        let n: BTreeMap<String, String> = [("bill", "william"), ("will", "william")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(name("Bill", Some(&n)), "william");
        assert_eq!(name("BILL  Henry", Some(&n)), "williamhenry");
        assert_eq!(name("William", Some(&n)), "william");
        assert_eq!(name("Billy", Some(&n)), "billy");
        assert_eq!(name("Bill", None), "bill");
    }

    #[test]
    fn dates_in_their_written_forms_agree() {
        for v in [
            "1980-03-12",
            "1980/3/12",
            "19800312",
            "03/12/1980",
            "3/12/1980",
            "3-12-1980",
            "12 March 1980",
            "March 12, 1980",
            "mar 12 1980",
            "12-MAR-1980",
            "1980-03-12T00:00:00",
            "3/12/1980 0:00",
            " 1980-03-12 ",
        ] {
            assert_eq!(
                date(v, DateOrder::Mdy, today()),
                Ok(Some("1980-03-12".to_string())),
                "{v}"
            );
        }
        assert_eq!(
            date("12/03/1980", DateOrder::Dmy, today()),
            Ok(Some("1980-03-12".to_string()))
        );
        assert_eq!(date("", DateOrder::Mdy, today()), Ok(None));
    }

    #[test]
    fn dates_that_cannot_be_known_are_refused() {
        for (v, why) in [
            ("3/12/80", Unreadable::DateTwoDigitYear),
            ("1980-02-30", Unreadable::Date),
            ("13/13/1980", Unreadable::Date),
            ("soon", Unreadable::Date),
            ("1980-03", Unreadable::Date),
            ("1899-12-31", Unreadable::DateOutOfRange),
            ("2026-07-01", Unreadable::DateOutOfRange),
            ("12345-01-01", Unreadable::Date),
            ("1980-03-12-07", Unreadable::Date),
            ("99999999999999999999", Unreadable::Date),
        ] {
            assert_eq!(date(v, DateOrder::Mdy, today()), Err(why), "{v}");
        }
    }

    #[test]
    fn sex_codes_read_in_their_usual_forms() {
        let none = BTreeMap::new();
        for (v, s) in [
            ("M", Some(Sex::M)),
            ("male", Some(Sex::M)),
            (" Female ", Some(Sex::F)),
            ("F", Some(Sex::F)),
            ("non-binary", Some(Sex::X)),
            ("Unknown", None),
            ("", None),
        ] {
            assert_eq!(sex(v, &none), Ok(s), "{v}");
        }
        assert_eq!(sex("7", &none), Err(Unreadable::Sex));
        let extra = [("1".to_string(), Some(Sex::M)), ("9".to_string(), None)]
            .into_iter()
            .collect();
        assert_eq!(sex("1", &extra), Ok(Some(Sex::M)));
        assert_eq!(sex("9", &extra), Ok(None));
    }
}
