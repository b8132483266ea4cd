//! CSV as the warehouse writes it, on the `csv` crate: the quarantine reports of ingest, the
//! API's CSV bodies, `report.csv`, and the steward's listings with `--format csv`.
//!
//! Every body has one header line, then one line per row, each ended by `\n`; a field is
//! quoted only when it holds a comma, a quote or a line break (`"` doubled inside). Text that
//! others wrote (cell values, column and program names from specs and suppliers) passes
//! [`defuse`] first, so a spreadsheet does not run it as a formula; numbers are written as
//! they are, a negative one included. Each caller says which of its fields are such text.

use std::borrow::Cow;

/// Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first),
/// prefixed with `'` so that it is shown as text; anything else as it is, not copied. For
/// fields of text that others wrote; numbers never pass through it.
pub fn defuse(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A CSV body being written in memory.
pub struct Writer {
    inner: csv::Writer<Vec<u8>>,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::new()
    }
}

impl Writer {
    /// An empty body. Lines may have different numbers of fields: the writer checks nothing
    /// about the shape of what it is given.
    pub fn new() -> Writer {
        Writer {
            inner: csv::WriterBuilder::new()
                .flexible(true)
                .quote_style(csv::QuoteStyle::Necessary)
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new()),
        }
    }

    /// Writes one line: the fields as given, each quoted if it needs it, then `\n`.
    pub fn line<I, F>(&mut self, fields: I)
    where
        I: IntoIterator<Item = F>,
        F: AsRef<[u8]>,
    {
        self.inner
            .write_record(fields)
            .expect("writing CSV to memory cannot fail");
    }

    /// The body written.
    pub fn finish(self) -> String {
        let bytes = self
            .inner
            .into_inner()
            .expect("writing CSV to memory cannot fail");
        String::from_utf8(bytes).expect("every field written is text")
    }
}

/// One field as a line would hold it, quoted if it needs it, for a line put together by
/// hand (the synthetic exports).
pub fn field(s: &str) -> String {
    // A record of one empty field is written `""` (so that it is not an empty line); a
    // field among others is written as nothing.
    if s.is_empty() {
        return String::new();
    }
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // A whole record, so that the writer closes a quoted field before it is read back.
    w.write_record([s])
        .expect("writing CSV to memory cannot fail");
    let mut bytes = w.into_inner().expect("writing CSV to memory cannot fail");
    bytes.pop();
    String::from_utf8(bytes).expect("the field is text")
}

/// A value in one CSV field, as text not yet quoted.
pub trait CsvField {
    fn csv(&self) -> String;
}

impl CsvField for String {
    /// Guarded against spreadsheet formulas ([`defuse`]).
    fn csv(&self) -> String {
        defuse(self).into_owned()
    }
}

macro_rules! display_field {
    ($($t:ty),*) => {$(
        impl CsvField for $t {
            fn csv(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_field!(f64, i64, u32, usize, bool);

impl<T: CsvField> CsvField for Option<T> {
    fn csv(&self) -> String {
        self.as_ref().map(CsvField::csv).unwrap_or_default()
    }
}

/// A range of days, `first-last`.
impl CsvField for [i64; 2] {
    fn csv(&self) -> String {
        format!("{}-{}", self[0], self[1])
    }
}

/// A type that is one CSV line.
pub trait CsvRow {
    /// The column names, in order.
    fn header() -> Vec<&'static str>;
    /// The fields, in the header's order, not yet quoted.
    fn fields(&self) -> Vec<String>;
}

/// Implements [`CsvRow`] for a struct: the fields named, in that order, each a
/// [`CsvField`] named after its field; then, after `+`, the columns of one field that is a
/// [`CsvRow`] itself (a struct flattened into the JSON the same way).
macro_rules! csv_row {
    ($t:ty { $($f:ident),* $(,)? } $(+ $flat:ident: $ft:ty)?) => {
        impl $crate::csv_out::CsvRow for $t {
            fn header() -> Vec<&'static str> {
                [
                    vec![$(stringify!($f)),*],
                    $(<$ft as $crate::csv_out::CsvRow>::header(),)?
                ]
                .into_iter()
                .flatten()
                .collect()
            }
            fn fields(&self) -> Vec<String> {
                [
                    vec![$($crate::csv_out::CsvField::csv(&self.$f)),*],
                    $($crate::csv_out::CsvRow::fields(&self.$flat),)?
                ]
                .into_iter()
                .flatten()
                .collect()
            }
        }
    };
}
pub(crate) use csv_row;

/// Rows as a CSV body with its header.
pub fn rows<T: CsvRow>(rows: &[T]) -> String {
    let mut w = Writer::new();
    w.line(T::header());
    for r in rows {
        w.line(r.fields());
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoting the hand-written writers had: quotes only around a comma, a quote or a
    /// line break, the guard before the quoting.
    fn by_hand(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }

    #[test]
    fn fields_are_quoted_exactly_when_they_need_it() {
        for s in [
            "",
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "=1+1",
            "-3",
            "'already",
            "日本語",
            " spaced ",
            "tab\there",
        ] {
            assert_eq!(field(s), by_hand(s), "{s:?}");
            let mut w = Writer::new();
            w.line([s, "x"]);
            assert_eq!(w.finish(), format!("{},x\n", by_hand(s)), "{s:?}");
        }
    }

    #[test]
    fn formulas_are_defused_and_nothing_else() {
        assert_eq!(defuse("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(defuse("+1"), "'+1");
        assert_eq!(defuse("-1"), "'-1");
        assert_eq!(defuse("@x"), "'@x");
        assert_eq!(defuse("\tx"), "'\tx");
        assert_eq!(defuse("\rx"), "'\rx");
        assert!(matches!(defuse("P001"), Cow::Borrowed("P001")));
        // The guard comes first, then the quoting.
        let mut w = Writer::new();
        w.line([&*defuse("=a,b"), "-2"]);
        assert_eq!(w.finish(), "\"'=a,b\",-2\n");
    }
}
