//! Row validation: splits CSV lines, checks every field against the dictionary, and builds
//! Arrow columns of the valid rows, split by quarter. Runs on one chunk of lines at a time so
//! that chunks can be validated in parallel.
//!
//! Every line is first scanned for direct identifiers, whatever its shape: a line with the
//! wrong number of fields or broken quotes is still read field by field for them. Rejected
//! rows are reported by line, column and rule, and the value only in redacted form (letters
//! become `a`/`A`, digits `9`): a near-miss of an identifier must not reach the quarantine.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, DictionaryArray, Int32Builder,
    RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};

use super::identifiers::{IdentifierKind, identifier_value};
use crate::dictionary::{
    Column, ColumnClass, ColumnType, ID_BYTE, IdPattern, PERSON_KEY_FORMS, Table, TableKind,
    epoch_days, from_epoch_days,
};
use crate::quarter::Quarter;

/// A line longer than this is refused as a damaged file (no line breaks or an open quote).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One rejected field (or whole row, when `column` is empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reject {
    /// 1-based line number in the file; the header is line 1.
    pub line: u64,
    pub column: String,
    /// The rule the field breaks, with its value redacted.
    pub reason: String,
}

/// A problem that refuses the whole file, found while reading rows.
#[derive(Debug, Clone, PartialEq)]
pub enum FileProblem {
    Identifier {
        line: u64,
        /// The value's column, when the line has the header's fields.
        column: Option<String>,
        kind: IdentifierKind,
    },
    Encoding {
        line: u64,
        byte: u8,
    },
    OverlongLine {
        line: u64,
        bytes: usize,
    },
    Truncated {
        line: u64,
        fields: usize,
        expected: usize,
    },
    /// A quoted field runs past its line: a value with a line break, or a quote left open.
    OpenQuote {
        line: u64,
    },
}

/// The rows of the table that a file's rows reference (the programs of a person table), as
/// far as they are loaded or staged.
#[derive(Debug, Clone, Copy)]
pub struct Referenced<'a> {
    pub table: &'a Table,
    /// Each row's key and the first day of its period (epoch days; `i32::MIN` for a table
    /// without a start column).
    pub starts: &'a HashMap<String, i32>,
}

/// What the rules of one file need to know.
#[derive(Debug)]
pub struct RowRules<'a> {
    pub table: &'a Table,
    /// For each table column, the position of its field in the file.
    pub field_of_column: Vec<usize>,
    /// For each field of the header, its table column.
    column_of_field: Vec<usize>,
    /// Number of fields in the header.
    pub n_fields: usize,
    /// The referencing column, with the rows it may name and their start dates (epoch days).
    reference: Option<(usize, Referenced<'a>)>,
    /// Keys of the referenced rows, for look-ups by the bytes of a field.
    reference_starts: HashMap<&'a [u8], i32, ahash::RandomState>,
    /// Whether other tables reference this one: then each loaded row's key and start date
    /// are kept for the files loaded after it.
    pub keep_starts: bool,
    /// The column that starts each row's period, if the table has one.
    pub start_column: Option<usize>,
    pub min_date: i32,
    pub max_date: i32,
    pub schema: SchemaRef,
    /// Each enum column's dictionary values, in the dictionary's order.
    enum_values: Vec<Option<ArrayRef>>,
    date_column: Option<usize>,
    pk_column: usize,
    start_end: Option<(usize, usize)>,
    /// Each enum column's matcher.
    enum_matchers: Vec<EnumMatcher>,
    /// Each column's declared id pattern.
    patterns: Vec<Option<IdPattern>>,
    /// First day (epoch days) of every quarter from `min_date` to `max_date`, ascending.
    quarter_starts: Vec<(i32, Quarter)>,
}

/// Matches a field against an enum's values without a `memcmp` call per value: the length and
/// the first eight bytes decide nearly every comparison.
#[derive(Debug, Default)]
pub(super) struct EnumMatcher {
    values: Vec<(usize, u64, Vec<u8>)>,
}

fn prefix8(v: &[u8]) -> u64 {
    // A byte loop for short values: a `copy_from_slice` of a run-time length is a `memcpy`
    // call, which cost more than the whole comparison.
    match v.first_chunk::<8>() {
        Some(head) => u64::from_le_bytes(*head),
        None => v
            .iter()
            .enumerate()
            .fold(0, |w, (i, b)| w | u64::from(*b) << (8 * i)),
    }
}

impl EnumMatcher {
    pub(super) fn new(values: &[String]) -> Self {
        Self {
            values: values
                .iter()
                .map(|v| (v.len(), prefix8(v.as_bytes()), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    pub(super) fn find(&self, v: &[u8]) -> Option<usize> {
        let p = prefix8(v);
        self.values.iter().position(|(len, pre, full)| {
            *len == v.len() && *pre == p && (v.len() <= 8 || full[8..] == v[8..])
        })
    }
}

impl<'a> RowRules<'a> {
    /// The rules for a file of `table` whose header puts column `i` at field
    /// `field_of_column[i]`. `referenced` gives the rows its referencing column may name;
    /// `keep_starts` says other tables reference this one.
    pub fn new(
        table: &'a Table,
        field_of_column: Vec<usize>,
        n_fields: usize,
        referenced: Option<Referenced<'a>>,
        keep_starts: bool,
        min_date: NaiveDate,
        max_date: NaiveDate,
    ) -> Self {
        let enum_values = table
            .columns
            .iter()
            .map(|c| {
                (c.ty == ColumnType::Enum)
                    .then(|| Arc::new(StringArray::from(c.values.clone())) as ArrayRef)
            })
            .collect();
        let column = |name: &Option<String>| name.as_deref().and_then(|n| table.column_index(n));
        let start_end = column(&table.start_column).zip(column(&table.end_column));
        let enum_matchers = table
            .columns
            .iter()
            .map(|c| EnumMatcher::new(&c.values))
            .collect();
        let mut column_of_field = vec![0; n_fields];
        for (ci, fi) in field_of_column.iter().enumerate() {
            column_of_field[*fi] = ci;
        }
        let mut quarter_starts = Vec::new();
        let mut q = Quarter::of(min_date);
        while q.first_day() <= max_date {
            quarter_starts.push((epoch_days(q.first_day()), q));
            q = q.next();
        }
        let reference = table
            .reference()
            .zip(referenced)
            .map(|((ci, _), r)| (ci, r));
        let reference_starts: HashMap<&'a [u8], i32, ahash::RandomState> = referenced
            .map(|r| r.starts.iter().map(|(k, v)| (k.as_bytes(), *v)).collect())
            .unwrap_or_default();
        Self {
            table,
            field_of_column,
            column_of_field,
            n_fields,
            reference,
            reference_starts,
            keep_starts,
            start_column: column(&table.start_column),
            enum_matchers,
            patterns: table.patterns(),
            quarter_starts,
            min_date: epoch_days(min_date),
            max_date: epoch_days(max_date),
            schema: table.schema(),
            enum_values,
            date_column: column(&table.date_column),
            pk_column: table
                .column_index(&table.primary_key)
                .expect("the dictionary checks the primary key"),
            start_end,
        }
    }
}

/// The valid rows of one quarter (or of the whole chunk, for a table without dates).
#[derive(Debug)]
pub struct Bucket {
    pub quarter: Option<Quarter>,
    pub batch: RecordBatch,
}

/// The result of validating one chunk of lines.
#[derive(Debug, Default)]
pub struct ChunkResult {
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub buckets: Vec<Bucket>,
    /// For each valid row, in line order: a 128-bit hash of its primary key and its line.
    pub keys: Vec<(u128, u64)>,
    /// For each valid row, in line order: the index of its bucket. A bucket's rows are in
    /// line order, so this tells which row of which bucket each key belongs to.
    pub order: Vec<u32>,
    pub rejects: Vec<Reject>,
    pub problem: Option<FileProblem>,
}

/// Two fixed-seed hashers whose digests make a 128-bit key hash.
///
/// `with_seeds` XORs each seed with ahash's own constants, so a seed must never equal them.
/// B once used exactly those constants (0x4528_21E6_38D0_1377, …): its keys were all zero, it
/// hashed every key to 0, and the "128-bit" hash had 64 bits. The test
/// `both_halves_of_the_key_hash_vary` guards this. B's seeds are now SplitMix64's constants.
const KEY_HASH_A: ahash::RandomState = ahash::RandomState::with_seeds(
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
);
const KEY_HASH_B: ahash::RandomState = ahash::RandomState::with_seeds(
    0x9E37_79B9_7F4A_7C15,
    0xBF58_476D_1CE4_E5B9,
    0x94D0_49BB_1331_11EB,
    0xD6E8_FEB8_6659_FD93,
);

/// A 128-bit hash of a primary key, for the uniqueness check: two independently seeded
/// digests. A false duplicate among 10^8 keys has probability below 10^-22.
pub fn key_hash(key: &[u8]) -> u128 {
    (u128::from(KEY_HASH_A.hash_one(key)) << 64) | u128::from(KEY_HASH_B.hash_one(key))
}

/// One parsed field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    Null,
    Str(usize, usize),
    Code(i32),
    Date(i32),
    Bool(bool),
}

enum Builder {
    /// Bytes of validated UTF-8, checked once per batch when the column is finished.
    Str(BinaryBuilder),
    Enum(Int32Builder),
    Date(Date32Builder),
    Bool(BooleanBuilder),
}

struct BucketBuilder {
    quarter: Option<Quarter>,
    columns: Vec<Builder>,
}

impl BucketBuilder {
    fn new(rules: &RowRules, quarter: Option<Quarter>) -> Self {
        let columns = rules
            .table
            .columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Id | ColumnType::Text => Builder::Str(BinaryBuilder::new()),
                ColumnType::Enum => Builder::Enum(Int32Builder::new()),
                ColumnType::Date => Builder::Date(Date32Builder::new()),
                ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            })
            .collect();
        Self { quarter, columns }
    }

    fn push(&mut self, base: &[u8], values: &[Value]) {
        for (b, v) in self.columns.iter_mut().zip(values) {
            match (b, *v) {
                (Builder::Str(b), Value::Str(s, e)) => b.append_value(&base[s..e]),
                (Builder::Str(b), Value::Null) => b.append_null(),
                (Builder::Enum(b), Value::Code(c)) => b.append_value(c),
                (Builder::Enum(b), Value::Null) => b.append_null(),
                (Builder::Date(b), Value::Date(d)) => b.append_value(d),
                (Builder::Date(b), Value::Null) => b.append_null(),
                (Builder::Bool(b), Value::Bool(x)) => b.append_value(x),
                (Builder::Bool(b), Value::Null) => b.append_null(),
                _ => unreachable!("values are parsed by the column's own type"),
            }
        }
    }

    fn finish(self, rules: &RowRules) -> Bucket {
        let arrays: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .zip(&rules.enum_values)
            .map(|(b, dict)| match b {
                Builder::Str(mut b) => {
                    let (offsets, values, nulls) = b.finish().into_parts();
                    // The chunk was checked as UTF-8 before splitting.
                    Arc::new(StringArray::try_new(offsets, values, nulls).expect("validated UTF-8"))
                        as ArrayRef
                }
                Builder::Enum(mut b) => {
                    let values = dict.clone().expect("enum columns have values");
                    Arc::new(
                        DictionaryArray::<Int32Type>::try_new(b.finish(), values)
                            .expect("codes index the dictionary's own values"),
                    )
                }
                Builder::Date(mut b) => Arc::new(b.finish()),
                Builder::Bool(mut b) => Arc::new(b.finish()),
            })
            .collect();
        Bucket {
            quarter: self.quarter,
            batch: RecordBatch::try_new(rules.schema.clone(), arrays)
                .expect("builders follow the table's schema"),
        }
    }
}

/// The bytes of `w` equal to `b`, as their high bits. Exact: unlike the classic
/// `(x - 0x01…) & !x & 0x80…`, no borrow runs from a match into the next byte.
#[inline]
pub(super) fn bytes_equal(w: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = w ^ (0x0101_0101_0101_0101 * u64::from(b));
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// What one pass over a line finds: where its commas are, and whether it holds a `"` (the
/// quoted-field parser is needed) or an `@` (the email test is). Eight bytes at a time:
/// fields are short, and a search call per field cost more than the line's bytes.
#[derive(Debug, Default)]
pub(super) struct LineScan {
    commas: Vec<usize>,
    has_quote: bool,
    pub(super) has_at: bool,
}

impl LineScan {
    pub(super) fn scan(&mut self, line: &[u8]) {
        self.commas.clear();
        let mut specials = 0u64;
        let words = line.chunks_exact(8);
        let tail = words.remainder();
        let mut find = |at: usize, w: u64| {
            let mut commas = bytes_equal(w, b',');
            specials |= bytes_equal(w, b'"') | (bytes_equal(w, b'@') >> 7);
            while commas != 0 {
                self.commas.push(at + commas.trailing_zeros() as usize / 8);
                commas &= commas - 1;
            }
        };
        for (i, w) in words.enumerate() {
            find(i * 8, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(tail);
            find(line.len() - tail.len(), u64::from_le_bytes(last));
        }
        self.has_quote = specials & 0x8080_8080_8080_8080 != 0;
        self.has_at = specials & 0x0101_0101_0101_0101 != 0;
    }
}

/// Why a line does not split into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SplitError {
    /// A quoted field is not closed on its line: a value with a line break, or an open quote.
    OpenQuote,
    TextAfterQuote,
    QuoteInField,
}

impl SplitError {
    pub(super) fn reason(self) -> &'static str {
        match self {
            SplitError::OpenQuote => "a quoted field is not closed on its line",
            SplitError::TextAfterQuote => "text follows a closing quote",
            SplitError::QuoteInField => "a quote appears inside an unquoted field",
        }
    }
}

/// Splits one CSV line (without its line break) into fields, given its [`LineScan`].
/// Unquoted fields are trimmed of spaces; a quoted field may hold commas and doubled quotes.
/// Returns the buffer the ranges point into: the line itself, or `scratch` when a quoted field
/// had to be unescaped.
pub(super) fn split_fields<'a>(
    line: &'a [u8],
    scan: &LineScan,
    scratch: &'a mut Vec<u8>,
    out: &mut Vec<(usize, usize)>,
) -> Result<&'a [u8], SplitError> {
    out.clear();
    if !scan.has_quote {
        let mut start = 0;
        for pos in scan
            .commas
            .iter()
            .copied()
            .chain(std::iter::once(line.len()))
        {
            out.push(trim(line, start, pos));
            start = pos + 1;
        }
        return Ok(line);
    }
    // Each quoted field is first taken as the text between its quotes, where it lies. Only
    // a line with a doubled quote inside one is copied, and those fields unescaped in place:
    // unescaping only ever shortens a field. An unquoted field holds no quote, so a field
    // with one is a quoted field to unescape.
    if !split_quoted(line, &scan.commas, out)? {
        return Ok(line);
    }
    scratch.clear();
    scratch.extend_from_slice(line);
    for (s, e) in out.iter_mut() {
        if memchr::memchr(b'"', &scratch[*s..*e]).is_none() {
            continue;
        }
        let (mut r, mut w) = (*s, *s);
        while r < *e {
            scratch[w] = scratch[r];
            // The first quote of a pair is kept, the second skipped.
            r += if scratch[r] == b'"' { 2 } else { 1 };
            w += 1;
        }
        *e = w;
    }
    Ok(scratch)
}

/// Splits a line that holds a quote into `out`, given the positions of its commas (quoted
/// ones too: an unquoted field ends at the first one past its start). A quoted field's range
/// is its text between the quotes, doubled quotes still doubled; returns whether there are any.
/// The next quote's place is kept, so an unquoted field is checked for one without reading it.
fn split_quoted(
    line: &[u8],
    commas: &[usize],
    out: &mut Vec<(usize, usize)>,
) -> Result<bool, SplitError> {
    let len = line.len();
    let quote_from = |i: usize| memchr::memchr(b'"', &line[i..]).map_or(len, |p| i + p);
    let mut next_quote = quote_from(0);
    let mut escaped = false;
    let (mut i, mut c) = (0, 0);
    loop {
        // Leading spaces of the field, then its quote if it is quoted.
        let mut f = i;
        while f < len && line[f] == b' ' {
            f += 1;
        }
        if f < len && f == next_quote {
            let start = f + 1;
            i = start;
            loop {
                let Some(p) = memchr::memchr(b'"', &line[i..]) else {
                    return Err(SplitError::OpenQuote);
                };
                i += p + 1;
                if line.get(i) == Some(&b'"') {
                    escaped = true;
                    i += 1;
                } else {
                    break;
                }
            }
            out.push((start, i - 1));
            while i < len && line[i] == b' ' {
                i += 1;
            }
            match line.get(i) {
                None => return Ok(escaped),
                Some(b',') => i += 1,
                Some(_) => return Err(SplitError::TextAfterQuote),
            }
            next_quote = quote_from(i);
        } else {
            while c < commas.len() && commas[c] < i {
                c += 1;
            }
            let end = commas.get(c).copied().unwrap_or(len);
            if next_quote < end {
                return Err(SplitError::QuoteInField);
            }
            out.push(trim(line, i, end));
            if end == len {
                return Ok(escaped);
            }
            i = end + 1;
        }
    }
}

fn trim(line: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && line[s] == b' ' {
        s += 1;
    }
    while e > s && line[e - 1] == b' ' {
        e -= 1;
    }
    (s, e)
}

/// Parses `YYYY-MM-DD` into epoch days (days since 1970-01-01), rejecting impossible dates.
pub fn parse_date(v: &[u8]) -> Option<i32> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let digit = |i: usize| -> Option<u32> {
        let d = v[i].wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let y = digit(0)? * 1000 + digit(1)? * 100 + digit(2)? * 10 + digit(3)?;
    let m = digit(5)? * 10 + digit(6)?;
    let d = digit(8)? * 10 + digit(9)?;
    if !is_calendar_day(y, m, d) {
        return None;
    }
    Some(days_from_civil(y as i32, m, d))
}

/// Whether day `d` of month `m` of year `y` (proleptic Gregorian) is a calendar day.
#[inline]
pub(super) fn is_calendar_day(y: u32, m: u32, d: u32) -> bool {
    let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=month_days).contains(&d)
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (H. Hinnant's algorithm).
#[inline]
pub(super) fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" => Some(true),
        b"0" => Some(false),
        _ if v.eq_ignore_ascii_case(b"true") => Some(true),
        _ if v.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

/// The value that [`RowValidator::row`] would parse `v` into for `col`, for a value a source
/// mapping fixes (a constant, a map's output), parsed once when the mapping is read: an enum's
/// code, a boolean, or a date (not yet held to the plausible range, which the row checks).
/// `None` for ids and text, and for a value the column refuses (the row check reports it).
pub(super) fn known_value(col: &Column, v: &[u8]) -> Option<Value> {
    if v.is_empty() {
        return None;
    }
    match col.ty {
        ColumnType::Enum => col
            .values
            .iter()
            .position(|x| x.as_bytes() == v)
            .map(|i| Value::Code(i as i32)),
        ColumnType::Bool => parse_bool(v).map(Value::Bool),
        ColumnType::Date => parse_date(v).map(Value::Date),
        ColumnType::Id | ColumnType::Text => None,
    }
}

/// What the caller of [`RowValidator::row`] knows of a row's fields already: none of them for
/// a dictionary file's line; for a mapped row, the values its mapping scanned or parsed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Known<'v> {
    /// Bit `i`: field `i` was scanned for a direct identifier, with the email test.
    pub(super) scanned: u64,
    /// Bit `i`: field `i` is parsed already, as `values[i]`, which [`known_value`] (or, for a
    /// date, the same date) gives for its text. The text of a parsed enum or boolean is not
    /// read, and may be left empty if the field is also scanned.
    pub(super) parsed: u64,
    pub(super) values: &'v [Value],
}

impl Known<'_> {
    #[inline]
    fn parsed(&self, fi: usize) -> Option<Value> {
        if fi < 64 && self.parsed & (1 << fi) != 0 {
            Some(self.values[fi])
        } else {
            None
        }
    }
}

/// Longest stretch of a value that a reason shows, in redacted form.
const SHOWN_CHARS: usize = 24;

/// A value as a quarantine report may show it: its shape, not its content. Letters become
/// `a` or `A`, digits `9`, other characters `*`; spaces and ASCII punctuation stay, so the
/// steward sees what is wrong (`'99/99/9999'`, `'999 999-99'`) without the value, which may
/// be a near-miss of a direct identifier. Long values are cut, with their length.
pub fn redacted(v: &[u8]) -> String {
    let text = String::from_utf8_lossy(v);
    let mut out = String::from("'");
    out.extend(text.chars().take(SHOWN_CHARS).map(|c| match c {
        'A'..='Z' => 'A',
        'a'..='z' => 'a',
        '0'..='9' => '9',
        c if c == ' ' || c.is_ascii_punctuation() => c,
        _ => '*',
    }));
    let total = text.chars().count();
    if total > SHOWN_CHARS {
        out.push_str(&format!("…' ({total} characters)"));
    } else {
        out.push('\'');
    }
    out
}

/// The first direct identifier among a line's fields. Every field is scanned, those past the
/// header's too; a line with another count of fields than the header names no column. No
/// column's declared id pattern exempts a value: the id patterns accept letters before digits
/// (`[A-Za-z][A-Za-z0-9_.:-]{0,63}`), which `SSN-123-45-6789` and `tel:6175550100` have, and
/// none accepts a number with the digits of an SSN or a phone number (checked by the tests).
fn identifier_in_fields(
    rules: &RowRules,
    base: &[u8],
    ranges: &[(usize, usize)],
    has_at: bool,
    line: u64,
    scanned: u64,
) -> Option<FileProblem> {
    let aligned = ranges.len() == rules.n_fields;
    for (fi, &(s, e)) in ranges.iter().enumerate() {
        if fi < 64 && scanned & (1 << fi) != 0 {
            continue;
        }
        let Some(kind) = identifier_value(&base[s..e], has_at) else {
            continue;
        };
        let column = aligned.then(|| rules.column_of_field[fi]);
        return Some(FileProblem::Identifier {
            line,
            column: column.map(|ci| rules.table.columns[ci].name.clone()),
            kind,
        });
    }
    None
}

/// The first direct identifier in a line that does not split into fields (broken quotes):
/// every stretch between commas and quotes is scanned, trimmed of spaces.
pub(super) fn identifier_in_raw(text: &[u8], has_at: bool, line: u64) -> Option<FileProblem> {
    text.split(|b| *b == b',' || *b == b'"').find_map(|piece| {
        let (s, e) = trim(piece, 0, piece.len());
        identifier_value(&piece[s..e], has_at).map(|kind| FileProblem::Identifier {
            line,
            column: None,
            kind,
        })
    })
}

/// The first byte of `chunk` that is not UTF-8, as the problem that refuses the file, with
/// its line (`first_line` is the chunk's first).
pub(super) fn encoding_problem(chunk: &[u8], first_line: u64) -> Option<FileProblem> {
    let e = std::str::from_utf8(chunk).err()?;
    let at = e.valid_up_to();
    Some(FileProblem::Encoding {
        line: first_line + memchr::memchr_iter(b'\n', &chunk[..at]).count() as u64,
        byte: chunk[at],
    })
}

/// One line of a chunk that holds something: its text without the line break, its line in
/// the file, and whether it is the file's last line cut off before its line break.
pub(super) struct Line<'a> {
    pub text: &'a [u8],
    pub number: u64,
    pub cut_off: bool,
}

/// The lines of a chunk that are not blank, in order; a line past [`MAX_LINE_BYTES`] is the
/// problem that refuses the file. `last_unterminated` says the chunk is the file's end and
/// lacks a final line break.
pub(super) struct Lines<'a> {
    rest: &'a [u8],
    next_line: u64,
    last_unterminated: bool,
}

impl<'a> Lines<'a> {
    pub(super) fn new(chunk: &'a [u8], first_line: u64, last_unterminated: bool) -> Self {
        Lines {
            rest: chunk,
            next_line: first_line,
            last_unterminated,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, FileProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (raw, next, terminated) = match memchr::memchr(b'\n', self.rest) {
                Some(p) => (&self.rest[..p], &self.rest[p + 1..], true),
                None => (self.rest, &self.rest[self.rest.len()..], false),
            };
            self.rest = next;
            let number = self.next_line;
            self.next_line += 1;
            let text = raw.strip_suffix(b"\r").unwrap_or(raw);
            if text.len() > MAX_LINE_BYTES {
                self.rest = &[];
                return Some(Err(FileProblem::OverlongLine {
                    line: number,
                    bytes: text.len(),
                }));
            }
            if text.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue; // blank lines carry no row
            }
            return Some(Ok(Line {
                text,
                number,
                cut_off: !terminated && self.last_unterminated,
            }));
        }
        None
    }
}

/// Why a line is no row of `expected` fields: a problem that refuses the file, or a reject
/// of the line alone.
pub(super) enum BadShape {
    Refuse(FileProblem),
    Reject(Reject),
}

/// What a line is that did not split into `expected` fields: the file's cut-off last line,
/// an open quote (a value with a line break would split into two bad rows, and an open quote
/// would swallow the next line's fields), or a bad line. `split` is how splitting it went and
/// `fields` how many fields it gave (before the error, if any). The caller has scanned the
/// line for direct identifiers first: one refuses the file whatever the line's shape.
pub(super) fn bad_shape(
    split: Result<(), SplitError>,
    fields: usize,
    expected: usize,
    line: &Line,
) -> BadShape {
    let reject = |reason: String| {
        BadShape::Reject(Reject {
            line: line.number,
            column: String::new(),
            reason,
        })
    };
    let truncated = BadShape::Refuse(FileProblem::Truncated {
        line: line.number,
        fields,
        expected,
    });
    match split {
        Ok(()) if line.cut_off && fields < expected => truncated,
        Ok(()) => reject(format!("has {fields} fields, the header has {expected}")),
        Err(_) if line.cut_off => truncated,
        Err(SplitError::OpenQuote) => {
            BadShape::Refuse(FileProblem::OpenQuote { line: line.number })
        }
        Err(e) => reject(e.reason().to_string()),
    }
}

/// Validates the lines of one chunk. `first_line` is the file line number of the chunk's first
/// line; `last_chunk_unterminated` says the chunk is the file's end and lacks a final line
/// break, so a short last line means the file was cut off.
pub fn validate_chunk(
    rules: &RowRules,
    chunk: &[u8],
    first_line: u64,
    last_chunk_unterminated: bool,
) -> ChunkResult {
    let mut result = ChunkResult::default();
    if let Some(problem) = encoding_problem(chunk, first_line) {
        result.problem = Some(problem);
        return result;
    }
    let mut rows = RowValidator::new(rules);
    let mut ranges = Vec::with_capacity(rules.n_fields);
    let mut scratch = Vec::new();
    let mut scan = LineScan::default();
    for line in Lines::new(chunk, first_line, last_chunk_unterminated) {
        let line = match line {
            Ok(line) => line,
            Err(problem) => {
                result.problem = Some(problem);
                return result;
            }
        };
        let line_here = line.number;
        result.rows_read += 1;
        // One scan finds the commas and tells whether the line needs the quoted-field parser
        // or the email test.
        scan.scan(line.text);
        let has_at = scan.has_at;
        // A direct identifier anywhere in the line refuses the whole file, before any other
        // check and whatever the line's shape: a line that does not split, or splits into
        // another count of fields than the header, is scanned here, and a row by
        // `RowValidator::row`.
        let split = split_fields(line.text, &scan, &mut scratch, &mut ranges);
        let base = match split {
            Ok(base) if ranges.len() == rules.n_fields => base,
            split => {
                let identifier = match &split {
                    Ok(base) => identifier_in_fields(rules, base, &ranges, has_at, line_here, 0),
                    Err(_) => identifier_in_raw(line.text, has_at, line_here),
                };
                if let Some(problem) = identifier {
                    result.problem = Some(problem);
                    return result;
                }
                match bad_shape(split.map(|_| ()), ranges.len(), rules.n_fields, &line) {
                    BadShape::Refuse(problem) => {
                        result.problem = Some(problem);
                        return result;
                    }
                    BadShape::Reject(reject) => {
                        result.rows_rejected += 1;
                        result.rejects.push(reject);
                    }
                }
                continue;
            }
        };
        if let Err(problem) = rows.row(
            &mut result,
            base,
            &ranges,
            has_at,
            line_here,
            Known::default(),
        ) {
            result.problem = Some(problem);
            return result;
        }
    }
    rows.finish(&mut result);
    result
}

/// The rows of one chunk as they are validated: each quarter's column builders, and the
/// buffers every row reuses. A dictionary file's rows come to [`RowValidator::row`] as the
/// fields of their lines; a mapped file's as the values its mapping made of each source row.
pub(super) struct RowValidator<'r, 'a> {
    rules: &'r RowRules<'a>,
    buckets: Vec<BucketBuilder>,
    /// Each column's parsed value in the current row.
    values: Vec<Value>,
    row_rejects: Vec<Reject>,
}

impl<'r, 'a> RowValidator<'r, 'a> {
    pub(super) fn new(rules: &'r RowRules<'a>) -> Self {
        Self {
            rules,
            buckets: Vec::new(),
            values: vec![Value::Null; rules.table.columns.len()],
            row_rejects: Vec::new(),
        }
    }

    /// Checks one row of `rules.n_fields` fields, field `i` being `base[ranges[i].0..ranges[i].1]`
    /// in the order of the header the rules were made for, from line `line_here`. Every field
    /// is first scanned for a direct identifier (`has_at` false promises that no field holds
    /// an `@`), but those `known.scanned` names: the caller has scanned that very value
    /// already, with the email test (a source mapping's copy of a source field, a value its
    /// mapping fixes, a date it wrote). An identifier is returned, and refuses the whole file.
    /// Then each field is parsed, or taken as `known` gives it parsed, and checked; the row's
    /// rejects, or its key, go into `result`, and a valid row's values into its quarter's
    /// builders.
    #[inline]
    pub(super) fn row(
        &mut self,
        result: &mut ChunkResult,
        base: &[u8],
        ranges: &[(usize, usize)],
        has_at: bool,
        line_here: u64,
        known: Known<'_>,
    ) -> Result<(), FileProblem> {
        debug_assert_eq!(ranges.len(), self.rules.n_fields);
        let RowValidator {
            rules,
            buckets,
            values,
            row_rejects,
        } = self;
        let rules = *rules;
        if let Some(problem) =
            identifier_in_fields(rules, base, ranges, has_at, line_here, known.scanned)
        {
            return Err(problem);
        }
        let table = rules.table;
        row_rejects.clear();
        for (ci, col) in table.columns.iter().enumerate() {
            let fi = rules.field_of_column[ci];
            let (s, e) = ranges[fi];
            let v = &base[s..e];
            let given = known.parsed(fi);
            let parsed = if let Some(g) = given.filter(|_| col.ty != ColumnType::Date) {
                // An enum's code or a boolean the mapping parsed (never empty): nothing left
                // to check, and the caller need not have written its text.
                Ok(g)
            } else if v.is_empty() {
                if col.required {
                    Err("is required but empty".to_string())
                } else {
                    Ok(Value::Null)
                }
            } else {
                match col.ty {
                    ColumnType::Id => {
                        if v.len() > col.max_len() {
                            Err(format!(
                                "is {} characters long; at most {} are allowed",
                                v.len(),
                                col.max_len()
                            ))
                        } else if rules.patterns[ci].as_ref().is_some_and(|p| p.matches(v)) {
                            // The dictionary refuses a pattern that accepts a byte no id may
                            // hold, so a value that matches one needs no byte check.
                            if col.class == ColumnClass::PersonKey
                                && v.iter().all(u8::is_ascii_digit)
                            {
                                // A hex or base64url digest of digits only is a raw number.
                                Err(format!(
                                    "{} is digits only, a raw number and no pseudonymous key: {} takes {PERSON_KEY_FORMS}",
                                    redacted(v),
                                    col.name
                                ))
                            } else {
                                Ok(Value::Str(s, e))
                            }
                        } else if !v.iter().all(|b| ID_BYTE[usize::from(*b)]) {
                            Err(format!(
                                "{} is not an id: use letters, digits and _ . : - only",
                                redacted(v)
                            ))
                        } else if col.class == ColumnClass::PersonKey {
                            Err(format!(
                                "{} is no pseudonymous key: {} takes {PERSON_KEY_FORMS}",
                                redacted(v),
                                col.name
                            ))
                        } else if rules.patterns[ci].is_some() {
                            Err(format!(
                                "{} does not match the pattern of {}: {}",
                                redacted(v),
                                col.name,
                                col.pattern.as_deref().unwrap_or_default()
                            ))
                        } else {
                            Ok(Value::Str(s, e))
                        }
                    }
                    ColumnType::Text => {
                        let chars = std::str::from_utf8(v).map_or(v.len(), |t| t.chars().count());
                        if chars > col.max_len() {
                            Err(format!(
                                "is {chars} characters long; at most {} are allowed",
                                col.max_len()
                            ))
                        } else if v.iter().any(|b| b.is_ascii_control()) {
                            Err("contains a control character".to_string())
                        } else {
                            Ok(Value::Str(s, e))
                        }
                    }
                    ColumnType::Enum => match rules.enum_matchers[ci].find(v) {
                        Some(i) => Ok(Value::Code(i as i32)),
                        None => Err(format!(
                            "{} is not one of {}",
                            redacted(v),
                            col.values.join(", ")
                        )),
                    },
                    ColumnType::Date => match match given {
                        Some(Value::Date(d)) => Some(d),
                        _ => parse_date(v),
                    } {
                        None => Err(format!("{} is not a date written YYYY-MM-DD", redacted(v))),
                        // The date itself is shown by its shape only: a date out of range
                        // may be a date of birth typed into the wrong column.
                        Some(d) if d < rules.min_date => Err(format!(
                            "{} is before {}, the earliest plausible date",
                            redacted(v),
                            from_epoch_days(rules.min_date)
                        )),
                        Some(d) if d > rules.max_date => Err(format!(
                            "{} is after {}, the latest plausible date",
                            redacted(v),
                            from_epoch_days(rules.max_date)
                        )),
                        Some(d) => Ok(Value::Date(d)),
                    },
                    ColumnType::Bool => parse_bool(v)
                        .map(Value::Bool)
                        .ok_or_else(|| format!("{} is not true or false", redacted(v))),
                }
            };
            match parsed {
                Ok(p) => values[ci] = p,
                Err(reason) => {
                    values[ci] = Value::Null;
                    row_rejects.push(Reject {
                        line: line_here,
                        column: col.name.clone(),
                        reason,
                    });
                }
            }
        }
        // Rules across fields, checked once each field is valid on its own.
        if row_rejects.is_empty() {
            if let Some((rc, referenced)) = &rules.reference
                && let Value::Str(s, e) = values[*rc]
            {
                let key = &base[s..e];
                let col = &table.columns[*rc];
                match rules.reference_starts.get(key) {
                    // Not a known row: the value could be anything, so it is redacted.
                    None => row_rejects.push(Reject {
                        line: line_here,
                        column: col.name.clone(),
                        reason: format!(
                            "{} {} is not in the {} table; load its row first",
                            col.name,
                            redacted(key),
                            referenced.table.name
                        ),
                    }),
                    Some(&start) => {
                        if let Some(dc) = rules.date_column
                            && let Value::Date(d) = values[dc]
                            && d < start
                        {
                            let (ds, de) = ranges[rules.field_of_column[dc]];
                            // The key of a known row of a public table (a program) is public.
                            let shown = if col.class == ColumnClass::Public {
                                format!("'{}'", String::from_utf8_lossy(key))
                            } else {
                                redacted(key)
                            };
                            row_rejects.push(Reject {
                                line: line_here,
                                column: table.columns[dc].name.clone(),
                                reason: format!(
                                    "{} is before the {} {} of {} {}",
                                    redacted(&base[ds..de]),
                                    referenced.table.start_column.as_deref().unwrap_or("start"),
                                    from_epoch_days(start),
                                    col.name,
                                    shown
                                ),
                            });
                        }
                    }
                }
            }
            if let Some((si, ei)) = rules.start_end
                && let (Value::Date(s), Value::Date(e)) = (values[si], values[ei])
                && e < s
            {
                // A public table's dates are public; any other table's are shown by shape.
                let shown = |ci: usize, d: i32| {
                    if table.kind == TableKind::Public {
                        from_epoch_days(d).to_string()
                    } else {
                        let (a, b) = ranges[rules.field_of_column[ci]];
                        redacted(&base[a..b])
                    }
                };
                row_rejects.push(Reject {
                    line: line_here,
                    column: table.columns[ei].name.clone(),
                    reason: format!(
                        "{} is before the {} {}",
                        shown(ei, e),
                        table.columns[si].name,
                        shown(si, s)
                    ),
                });
            }
        }
        if !row_rejects.is_empty() {
            result.rows_rejected += 1;
            result.rejects.append(row_rejects);
            return Ok(());
        }
        let quarter = rules.date_column.map(|dc| match values[dc] {
            Value::Date(d) => {
                let i = rules
                    .quarter_starts
                    .partition_point(|(start, _)| *start <= d);
                rules.quarter_starts[i - 1].1
            }
            _ => unreachable!("the date column is required"),
        });
        let bucket = match buckets.iter().position(|b| b.quarter == quarter) {
            Some(i) => i,
            None => {
                buckets.push(BucketBuilder::new(rules, quarter));
                buckets.len() - 1
            }
        };
        let Value::Str(ks, ke) = values[rules.pk_column] else {
            unreachable!("the primary key is a required id")
        };
        // Keys go in line order across buckets: the collector admits them in that order, so
        // the first line of a key is the one kept, whatever the quarters of its repeats.
        result.keys.push((key_hash(&base[ks..ke]), line_here));
        result.order.push(bucket as u32);
        buckets[bucket].push(base, values);
        Ok(())
    }

    /// Puts the chunk's valid rows into `result`, one batch per quarter.
    pub(super) fn finish(self, result: &mut ChunkResult) {
        let rules = self.rules;
        result.buckets = self.buckets.into_iter().map(|b| b.finish(rules)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, String> {
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        let mut scan = LineScan::default();
        scan.scan(line.as_bytes());
        assert_eq!(scan.has_quote, line.contains('"'), "{line}");
        let base = split_fields(line.as_bytes(), &scan, &mut scratch, &mut out)
            .map_err(|e| e.reason().to_string())?;
        Ok(out
            .iter()
            .map(|(s, e)| String::from_utf8(base[*s..*e].to_vec()).unwrap())
            .collect())
    }

    #[test]
    fn the_line_scan_finds_every_comma_quote_and_at_sign() {
        // Lengths around the 8-byte words, and bytes one off the searched ones (a `-` after a
        // comma would fool the classic zero-byte trick with a borrow).
        let mut scan = LineScan::default();
        for line in [
            "",
            ",",
            "a,b",
            ",-,-,-,-,-,-,-,-",
            "abcdefg,",
            "abcdefgh,",
            "1234567,9,",
            ",,,,,,,,,,,,,,,,,",
            "x@y.org,\"q\",A?+-!#",
            "\u{e9}t\u{e9},caf\u{e9},na\u{ef}ve,,",
        ] {
            scan.scan(line.as_bytes());
            let commas: Vec<usize> = line.match_indices(',').map(|(i, _)| i).collect();
            assert_eq!(scan.commas, commas, "{line:?}");
            assert_eq!(scan.has_quote, line.contains('"'), "{line:?}");
            assert_eq!(scan.has_at, line.contains('@'), "{line:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_line_scan_agrees_with_a_byte_by_byte_search(
            line in proptest::collection::vec(proptest::sample::select(
                b",\"@-+!\x00\x01\x7f\x80\xffa ".to_vec()), 0..40)
        ) {
            let mut scan = LineScan::default();
            scan.scan(&line);
            let commas: Vec<usize> = (0..line.len()).filter(|i| line[*i] == b',').collect();
            proptest::prop_assert_eq!(&scan.commas, &commas);
            proptest::prop_assert_eq!(scan.has_quote, line.contains(&b'"'));
            proptest::prop_assert_eq!(scan.has_at, line.contains(&b'@'));
        }
    }

    #[test]
    fn id_bytes_are_letters_digits_and_four_marks() {
        let allowed: Vec<u8> = (0..=255u8).filter(|b| ID_BYTE[usize::from(*b)]).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend(b"_.:-");
        expected.sort();
        assert_eq!(allowed, expected);
    }

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(split(" a , b").unwrap(), ["a", "b"]);
        assert_eq!(split("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(
            split("x,\"say \"\"hi\"\"\",").unwrap(),
            ["x", "say \"hi\"", ""]
        );
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert!(split("\"open,b").unwrap_err().contains("not closed"));
        assert!(
            split("\"a\"b,c")
                .unwrap_err()
                .contains("follows a closing quote")
        );
        assert!(split("a\"b,c").unwrap_err().contains("inside an unquoted"));
    }

    /// The enum matcher finds exactly the place a search of the values gives: values that
    /// share their first eight bytes at the same or another length, a value that is a prefix
    /// of another, the empty value, and a set of more than 64 values.
    #[test]
    fn the_enum_matcher_finds_each_value_at_its_place_and_nothing_else() {
        let base = [
            "",
            "a",
            "male",
            "female",
            "nh_white",
            "nh_white_x",
            "nh_white_y",
            "nh_whitex",
            "under_18",
            "65_plus",
            "hispanic",
            "nh_whit",
            "nh_white_xy",
        ];
        let many: Vec<String> = (0..70)
            .map(|i| format!("value_{i:02}"))
            .chain(base.iter().map(|v| v.to_string()))
            .collect();
        for values in [base.iter().map(|v| v.to_string()).collect(), many] {
            let m = EnumMatcher::new(&values);
            let probes = values.iter().cloned().chain(
                [
                    "b",
                    "Male",
                    "nh_white_z",
                    "nh_white ",
                    "under_1",
                    "value_70",
                    "nh_white_x ",
                ]
                .map(String::from),
            );
            for probe in probes {
                assert_eq!(
                    m.find(probe.as_bytes()),
                    values.iter().position(|v| *v == probe),
                    "{} values: {probe:?}",
                    values.len()
                );
            }
        }
    }

    #[test]
    fn a_quoted_field_without_a_doubled_quote_is_split_where_it_lies() {
        let line = b" \"1,204,377\" ,vk1,\"a b\"";
        let (mut scan, mut scratch, mut out) = (LineScan::default(), Vec::new(), Vec::new());
        scan.scan(line);
        let base = split_fields(line, &scan, &mut scratch, &mut out).unwrap();
        assert!(std::ptr::eq(base.as_ptr(), line.as_ptr()), "no copy");
        assert_eq!(out, [(2, 11), (14, 17), (19, 22)]);
        let line = b"\"say \"\"hi\"\"\",\"1,2\"";
        scan.scan(line);
        let base = split_fields(line, &scan, &mut scratch, &mut out).unwrap();
        assert!(
            !std::ptr::eq(base.as_ptr(), line.as_ptr()),
            "a copy to unescape"
        );
        let fields: Vec<&[u8]> = out.iter().map(|&(s, e)| &base[s..e]).collect();
        assert_eq!(fields, [&b"say \"hi\""[..], b"1,2"]);
    }

    /// A byte-by-byte CSV reader with the splitter's rules, to check it against.
    fn split_byte_by_byte(line: &str) -> Result<Vec<String>, String> {
        let b = line.as_bytes();
        let err = |e: SplitError| Err(e.reason().to_string());
        let (mut fields, mut i) = (Vec::new(), 0);
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'"' {
                let mut f = Vec::new();
                i += 1;
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (None, _) => return err(SplitError::OpenQuote),
                        (Some(b'"'), Some(b'"')) => {
                            f.push(b'"');
                            i += 2;
                        }
                        (Some(b'"'), _) => {
                            i += 1;
                            break;
                        }
                        (Some(c), _) => {
                            f.push(*c);
                            i += 1;
                        }
                    }
                }
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                fields.push(String::from_utf8(f).unwrap());
                match b.get(i) {
                    None => return Ok(fields),
                    Some(b',') => i += 1,
                    Some(_) => return err(SplitError::TextAfterQuote),
                }
            } else {
                let end = b[i..]
                    .iter()
                    .position(|c| *c == b',')
                    .map_or(b.len(), |p| i + p);
                if b[i..end].contains(&b'"') {
                    return err(SplitError::QuoteInField);
                }
                fields.push(line[i..end].trim_end_matches(' ').to_string());
                if end == b.len() {
                    return Ok(fields);
                }
                i = end + 1;
            }
        }
    }

    proptest::proptest! {
        /// Any line of letters, spaces, commas and quotes splits, or fails, as a byte-by-byte
        /// reader says.
        #[test]
        fn the_splitter_agrees_with_a_byte_by_byte_reader(line in "[a \",]{0,14}") {
            proptest::prop_assert_eq!(split(&line), split_byte_by_byte(&line), "{:?}", line);
        }
    }

    proptest::proptest! {
        /// Fields written as CSV (quoted when asked, or when they hold a quote, a comma or an
        /// edge space) split back into themselves.
        #[test]
        fn a_written_line_splits_back_into_its_fields(
            fields in proptest::collection::vec(("[ab \",]{0,5}", proptest::bool::ANY), 1..6)
        ) {
            let line = fields
                .iter()
                .map(|(f, quote)| {
                    let needs = f.contains(['"', ',']) || f.starts_with(' ') || f.ends_with(' ');
                    if *quote || needs {
                        format!("\"{}\"", f.replace('"', "\"\""))
                    } else {
                        f.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            let want: Vec<String> = fields.into_iter().map(|(f, _)| f).collect();
            proptest::prop_assert_eq!(split(&line).unwrap(), want, "{}", line);
        }
    }

    #[test]
    fn redaction_keeps_the_shape_and_drops_the_value() {
        assert_eq!(redacted(b"617 555-01"), "'999 999-99'");
        assert_eq!(redacted(b"Jane Doe"), "'Aaaa Aaa'");
        assert_eq!(redacted("Zoë".as_bytes()), "'Aa*'");
        assert_eq!(
            redacted(b"abcdefghijklmnopqrstuvwxyz"),
            "'aaaaaaaaaaaaaaaaaaaaaaaa…' (26 characters)"
        );
    }

    #[test]
    fn a_line_that_does_not_split_is_still_scanned_for_identifiers() {
        for line in [
            "E1,\"123-45-6789",
            "E1,\"617 555 0100\"x,more",
            "E1,a\"b, jane@example.org ,c",
        ] {
            let mut scan = LineScan::default();
            scan.scan(line.as_bytes());
            let found = identifier_in_raw(line.as_bytes(), scan.has_at, 7);
            assert!(
                matches!(
                    found,
                    Some(FileProblem::Identifier {
                        line: 7,
                        column: None,
                        ..
                    })
                ),
                "{line}: {found:?}"
            );
        }
        assert_eq!(identifier_in_raw(b"E1,\"open,2025-01-01", false, 7), None);
    }

    #[test]
    fn parses_dates_strictly() {
        assert_eq!(parse_date(b"1970-01-02"), Some(1));
        assert_eq!(
            parse_date(b"2024-02-29")
                .map(from_epoch_days)
                .unwrap()
                .to_string(),
            "2024-02-29"
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "01/02/2024",
            "2024-01-0x",
            "20240101",
        ] {
            assert_eq!(parse_date(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn date_parser_agrees_with_chrono_on_every_day() {
        let mut d = NaiveDate::from_ymd_opt(1899, 12, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2101, 3, 1).unwrap();
        while d < end {
            let text = d.format("%Y-%m-%d").to_string();
            assert_eq!(parse_date(text.as_bytes()), Some(epoch_days(d)), "{text}");
            d = d.succ_opt().unwrap();
        }
        for bad in [
            "2100-02-29",
            "1900-02-29",
            "2025-04-31",
            "2025-00-10",
            "2025-01-00",
            "2025-01-32",
        ] {
            assert_eq!(parse_date(bad.as_bytes()), None, "{bad}");
        }
        assert!(parse_date(b"2000-02-29").is_some());
    }

    #[test]
    fn a_row_given_as_values_is_checked_as_the_same_line_is() {
        // What a mapped file hands over: the fields in a buffer of their own, not a line.
        let dict = crate::dictionary::Dictionary::builtin().unwrap();
        let table = dict.table("overdose_events").unwrap();
        let n = table.columns.len();
        let rules = RowRules::new(
            table,
            (0..n).collect(),
            n,
            None,
            false,
            NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2030, 12, 31).unwrap(),
        );
        for line in [
            "PD-7-1,pkC,P001,2025-01-02,police,false,true,false,unknown,unknown,unknown",
            "PD-8-1,pkD,P001,2026-07-30,ems,true,false,true,25_34,male,nh_white",
            "E1,123456,P001,2025-13-01,cops,maybe,true,false,unknown,unknown,unknown",
            "E4,,P001,,police,false,true,false,unknown,unknown,",
            "E2,pkA,P001,2025-01-02,police,false,true,false,unknown,unknown,617-555-0100",
            "E3,jane@example.org,P001,2025-01-02,police,false,true,false,unknown,unknown,unknown",
        ] {
            let by_line = validate_chunk(&rules, format!("{line}\n").as_bytes(), 7, false);
            let mut base = Vec::new();
            let mut ranges = Vec::new();
            for field in line.split(',') {
                base.push(b'#');
                ranges.push((base.len(), base.len() + field.len()));
                base.extend_from_slice(field.as_bytes());
            }
            let mut by_values = ChunkResult {
                rows_read: 1,
                ..ChunkResult::default()
            };
            let mut rows = RowValidator::new(&rules);
            match rows.row(
                &mut by_values,
                &base,
                &ranges,
                line.contains('@'),
                7,
                Known::default(),
            ) {
                Ok(()) => rows.finish(&mut by_values),
                Err(problem) => by_values.problem = Some(problem),
            }
            assert_eq!(by_values.problem, by_line.problem, "{line}");
            if by_line.problem.is_some() {
                continue;
            }
            assert_eq!(
                (by_values.rows_read, by_values.rows_rejected),
                (by_line.rows_read, by_line.rows_rejected),
                "{line}"
            );
            assert_eq!(by_values.rejects, by_line.rejects, "{line}");
            assert_eq!(by_values.keys, by_line.keys, "{line}");
            let batches = |r: &ChunkResult| {
                r.buckets
                    .iter()
                    .map(|b| (b.quarter, b.batch.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(batches(&by_values), batches(&by_line), "{line}");
        }
    }

    #[test]
    fn key_hash_separates_keys() {
        assert_eq!(key_hash(b"E1"), key_hash(b"E1"));
        assert_ne!(key_hash(b"E1"), key_hash(b"E2"));
    }

    #[test]
    fn both_halves_of_the_key_hash_vary() {
        // The uniqueness check trusts all 128 bits: each 64-bit half must be a hash of its
        // own, distinct across keys, or a false duplicate is a 64-bit (not 128-bit) event.
        let n = 10_000;
        let hashes: Vec<u128> = (0..n)
            .map(|i| key_hash(format!("E{i:07}").as_bytes()))
            .collect();
        let high: std::collections::HashSet<u64> =
            hashes.iter().map(|h| (h >> 64) as u64).collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| *h as u64).collect();
        assert_eq!(high.len(), n);
        assert_eq!(low.len(), n);
        // And the halves differ from each other.
        assert!(hashes.iter().all(|h| (h >> 64) as u64 != *h as u64));
    }
}
