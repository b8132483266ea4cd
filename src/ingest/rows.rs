//! Row validation: splits CSV lines, checks every field against the dictionary, and builds
//! Arrow columns of the valid rows, split by quarter. Runs on one chunk of lines at a time so
//! that chunks can be validated in parallel.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, DictionaryArray, Int32Builder,
    RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};

use super::identifiers::{IdentifierKind, identifier_value};
use crate::dictionary::{ColumnType, Table};
use crate::quarter::Quarter;

/// Days from 0001-01-01 to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// A line longer than this is refused as a damaged file (no line breaks or an open quote).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Days since 1970-01-01, as Arrow's Date32 counts them.
pub fn epoch_days(d: NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

/// The date of a Date32 value.
pub fn from_epoch_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE).expect("Date32 in range")
}

/// One rejected field (or whole row, when `column` is empty).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reject {
    /// 1-based line number in the file; the header is line 1.
    pub line: u64,
    pub column: String,
    pub reason: String,
}

/// A problem that refuses the whole file, found while reading rows.
#[derive(Debug, Clone, PartialEq)]
pub enum FileProblem {
    Identifier {
        line: u64,
        column: String,
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
}

/// What the rules of one file need to know.
#[derive(Debug)]
pub struct RowRules<'a> {
    pub table: &'a Table,
    /// For each table column, the position of its field in the file.
    pub field_of_column: Vec<usize>,
    /// Number of fields in the header.
    pub n_fields: usize,
    /// Known programs and their start dates (epoch days).
    programs: HashMap<&'a [u8], i32, ahash::RandomState>,
    pub min_date: i32,
    pub max_date: i32,
    pub schema: SchemaRef,
    /// Each enum column's dictionary values, in the dictionary's order.
    enum_values: Vec<Option<ArrayRef>>,
    date_column: Option<usize>,
    program_column: Option<usize>,
    pk_column: usize,
    start_end: Option<(usize, usize)>,
    /// Each enum column's matcher.
    enum_matchers: Vec<EnumMatcher>,
    /// First day (epoch days) of every quarter from `min_date` to `max_date`, ascending.
    quarter_starts: Vec<(i32, Quarter)>,
}

/// Matches a field against an enum's values without a `memcmp` call per value: the length and
/// the first eight bytes decide nearly every comparison.
#[derive(Debug, Default)]
struct EnumMatcher {
    values: Vec<(usize, u64, Vec<u8>)>,
}

fn prefix8(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_le_bytes(b)
}

impl EnumMatcher {
    fn new(values: &[String]) -> Self {
        Self {
            values: values
                .iter()
                .map(|v| (v.len(), prefix8(v.as_bytes()), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn find(&self, v: &[u8]) -> Option<usize> {
        let p = prefix8(v);
        self.values.iter().position(|(len, pre, full)| {
            *len == v.len() && *pre == p && (v.len() <= 8 || full[8..] == v[8..])
        })
    }
}

impl<'a> RowRules<'a> {
    pub fn new(
        table: &'a Table,
        field_of_column: Vec<usize>,
        n_fields: usize,
        programs: &'a HashMap<String, i32>,
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
        let start_end = table
            .column_index("start_date")
            .zip(table.column_index("end_date"));
        let enum_matchers = table
            .columns
            .iter()
            .map(|c| EnumMatcher::new(&c.values))
            .collect();
        let mut quarter_starts = Vec::new();
        let mut q = Quarter::of(min_date);
        while q.first_day() <= max_date {
            quarter_starts.push((epoch_days(q.first_day()), q));
            q = q.next();
        }
        Self {
            table,
            field_of_column,
            n_fields,
            programs: programs.iter().map(|(k, v)| (k.as_bytes(), *v)).collect(),
            enum_matchers,
            quarter_starts,
            min_date: epoch_days(min_date),
            max_date: epoch_days(max_date),
            schema: table.schema(),
            enum_values,
            date_column: table
                .date_column
                .as_deref()
                .and_then(|d| table.column_index(d)),
            program_column: table.program_column(),
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
    /// For each row: a 128-bit hash of its primary key and its line number.
    pub keys: Vec<(u128, u64)>,
}

/// The result of validating one chunk of lines.
#[derive(Debug, Default)]
pub struct ChunkResult {
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub buckets: Vec<Bucket>,
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
#[derive(Debug, Clone, Copy)]
enum Value {
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
    keys: Vec<(u128, u64)>,
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
        Self {
            quarter,
            columns,
            keys: Vec::new(),
        }
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
            keys: self.keys,
        }
    }
}

/// The bytes of `w` equal to `b`, as their high bits. Exact: unlike the classic
/// `(x - 0x01…) & !x & 0x80…`, no borrow runs from a match into the next byte.
#[inline]
fn bytes_equal(w: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = w ^ (0x0101_0101_0101_0101 * u64::from(b));
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// What one pass over a line finds: where its commas are, and whether it holds a `"` (the
/// quoted-field parser is needed) or an `@` (the email test is). Eight bytes at a time:
/// fields are short, and a search call per field cost more than the line's bytes.
#[derive(Debug, Default)]
struct LineScan {
    commas: Vec<usize>,
    has_quote: bool,
    has_at: bool,
}

impl LineScan {
    fn scan(&mut self, line: &[u8]) {
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

/// The bytes an id may hold: ASCII letters and digits, `_`, `.`, `:` and `-`. A table, since
/// every byte of every id is looked up.
const ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-');
        b += 1;
    }
    t
};

/// Splits one CSV line (without its line break) into fields, given its [`LineScan`].
/// Unquoted fields are trimmed of spaces; a quoted field may hold commas and doubled quotes.
/// Returns the buffer the ranges point into: the line itself, or `scratch` when a quoted field
/// had to be unescaped.
fn split_fields<'a>(
    line: &'a [u8],
    scan: &LineScan,
    scratch: &'a mut Vec<u8>,
    out: &mut Vec<(usize, usize)>,
) -> Result<&'a [u8], String> {
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
    scratch.clear();
    let mut i = 0;
    loop {
        // Skip leading spaces of the field.
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        if i < line.len() && line[i] == b'"' {
            let start = scratch.len();
            i += 1;
            loop {
                match line.get(i) {
                    None => return Err("a quoted field is not closed on its line".into()),
                    Some(b'"') if line.get(i + 1) == Some(&b'"') => {
                        scratch.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&b) => {
                        scratch.push(b);
                        i += 1;
                    }
                }
            }
            out.push((start, scratch.len()));
            while i < line.len() && line[i] == b' ' {
                i += 1;
            }
            match line.get(i) {
                None => return Ok(scratch),
                Some(b',') => i += 1,
                Some(_) => return Err("text follows a closing quote".into()),
            }
        } else {
            let end = memchr::memchr(b',', &line[i..]).map_or(line.len(), |p| i + p);
            let field = &line[i..end];
            if memchr::memchr(b'"', field).is_some() {
                return Err("a quote appears inside an unquoted field".into());
            }
            let (s, e) = trim(line, i, end);
            let start = scratch.len();
            scratch.extend_from_slice(&line[s..e]);
            out.push((start, scratch.len()));
            if end == line.len() {
                return Ok(scratch);
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
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_days {
        return None;
    }
    Some(days_from_civil(y as i32, m, d))
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
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

fn shown(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.chars().count() > 40 {
        format!("'{}…'", s.chars().take(40).collect::<String>())
    } else {
        format!("'{s}'")
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
    if let Err(e) = std::str::from_utf8(chunk) {
        let at = e.valid_up_to();
        let line = first_line + memchr::memchr_iter(b'\n', &chunk[..at]).count() as u64;
        result.problem = Some(FileProblem::Encoding {
            line,
            byte: chunk[at],
        });
        return result;
    }
    let table = rules.table;
    let mut buckets: Vec<BucketBuilder> = Vec::new();
    let mut ranges = Vec::with_capacity(rules.n_fields);
    let mut scratch = Vec::new();
    let mut scan = LineScan::default();
    let mut values = vec![Value::Null; table.columns.len()];
    let mut row_rejects: Vec<Reject> = Vec::new();

    let mut line_no = first_line;
    let mut rest = chunk;
    while !rest.is_empty() {
        let (raw, next, terminated) = match memchr::memchr(b'\n', rest) {
            Some(p) => (&rest[..p], &rest[p + 1..], true),
            None => (rest, &rest[rest.len()..], false),
        };
        rest = next;
        let line_here = line_no;
        line_no += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.len() > MAX_LINE_BYTES {
            result.problem = Some(FileProblem::OverlongLine {
                line: line_here,
                bytes: line.len(),
            });
            return result;
        }
        if line.iter().all(|b| *b == b' ' || *b == b'\t') {
            continue; // blank lines carry no row
        }
        result.rows_read += 1;
        let cut_off = !terminated && last_chunk_unterminated;
        // One scan finds the commas and tells whether the line needs the quoted-field parser
        // or the email test.
        scan.scan(line);
        let has_at = scan.has_at;
        let base = match split_fields(line, &scan, &mut scratch, &mut ranges) {
            Ok(base) => base,
            Err(_) if cut_off => {
                result.problem = Some(FileProblem::Truncated {
                    line: line_here,
                    fields: ranges.len(),
                    expected: rules.n_fields,
                });
                return result;
            }
            Err(reason) => {
                result.rows_rejected += 1;
                result.rejects.push(Reject {
                    line: line_here,
                    column: String::new(),
                    reason,
                });
                continue;
            }
        };
        if ranges.len() != rules.n_fields {
            if cut_off && ranges.len() < rules.n_fields {
                result.problem = Some(FileProblem::Truncated {
                    line: line_here,
                    fields: ranges.len(),
                    expected: rules.n_fields,
                });
                return result;
            }
            result.rows_rejected += 1;
            result.rejects.push(Reject {
                line: line_here,
                column: String::new(),
                reason: format!(
                    "has {} fields, the header has {}",
                    ranges.len(),
                    rules.n_fields
                ),
            });
            continue;
        }
        // A direct identifier anywhere refuses the whole file, before any other check.
        for (ci, col) in table.columns.iter().enumerate() {
            let (s, e) = ranges[rules.field_of_column[ci]];
            if let Some(kind) = identifier_value(&base[s..e], has_at) {
                result.problem = Some(FileProblem::Identifier {
                    line: line_here,
                    column: col.name.clone(),
                    kind,
                });
                return result;
            }
        }
        row_rejects.clear();
        for (ci, col) in table.columns.iter().enumerate() {
            let (s, e) = ranges[rules.field_of_column[ci]];
            let v = &base[s..e];
            let parsed = if v.is_empty() {
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
                        } else if !v.iter().all(|b| ID_BYTE[usize::from(*b)]) {
                            Err(format!(
                                "{} is not an id: use letters, digits and _ . : - only",
                                shown(v)
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
                            shown(v),
                            col.values.join(", ")
                        )),
                    },
                    ColumnType::Date => match parse_date(v) {
                        None => Err(format!("{} is not a date written YYYY-MM-DD", shown(v))),
                        Some(d) if d < rules.min_date => Err(format!(
                            "{} is before {}, the earliest plausible date",
                            shown(v),
                            from_epoch_days(rules.min_date)
                        )),
                        Some(d) if d > rules.max_date => Err(format!(
                            "{} is after {}, the latest plausible date",
                            shown(v),
                            from_epoch_days(rules.max_date)
                        )),
                        Some(d) => Ok(Value::Date(d)),
                    },
                    ColumnType::Bool => parse_bool(v)
                        .map(Value::Bool)
                        .ok_or_else(|| format!("{} is not true or false", shown(v))),
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
            if let Some(pc) = rules.program_column {
                let Value::Str(s, e) = values[pc] else {
                    unreachable!("program_id is a required id")
                };
                let pid_bytes = &base[s..e];
                let pid = String::from_utf8_lossy(pid_bytes);
                match rules.programs.get(pid_bytes) {
                    None => row_rejects.push(Reject {
                        line: line_here,
                        column: table.columns[pc].name.clone(),
                        reason: format!(
                            "program '{pid}' is not in the programs table; load its row first"
                        ),
                    }),
                    Some(&start) => {
                        if let Some(dc) = rules.date_column
                            && let Value::Date(d) = values[dc]
                            && d < start
                        {
                            row_rejects.push(Reject {
                                line: line_here,
                                column: table.columns[dc].name.clone(),
                                reason: format!(
                                    "{} is before program '{pid}' started on {}",
                                    from_epoch_days(d),
                                    from_epoch_days(start)
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
                row_rejects.push(Reject {
                    line: line_here,
                    column: table.columns[ei].name.clone(),
                    reason: format!(
                        "{} is before the start date {}",
                        from_epoch_days(e),
                        from_epoch_days(s)
                    ),
                });
            }
        }
        if !row_rejects.is_empty() {
            result.rows_rejected += 1;
            result.rejects.append(&mut row_rejects);
            continue;
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
            Some(i) => &mut buckets[i],
            None => {
                buckets.push(BucketBuilder::new(rules, quarter));
                buckets.last_mut().expect("just pushed")
            }
        };
        let Value::Str(ks, ke) = values[rules.pk_column] else {
            unreachable!("the primary key is a required id")
        };
        bucket.keys.push((key_hash(&base[ks..ke]), line_here));
        bucket.push(base, &values);
    }
    result.buckets = buckets.into_iter().map(|b| b.finish(rules)).collect();
    result
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
        let base = split_fields(line.as_bytes(), &scan, &mut scratch, &mut out)?;
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
