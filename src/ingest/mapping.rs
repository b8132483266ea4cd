//! Source mappings: how one source system's export becomes rows of the dictionary's tables.
//!
//! A mapping file (TOML) names the source files it describes (`[[source]]`, by a file-name
//! pattern) and what each feeds (`[[feed]]`: one table per feed, so one source row may feed
//! an overdose event, a referral and an arrest, each under its own condition). A feed's
//! `[feed.columns]` give each dictionary column its source: a source column (renamed), several
//! joined, or a constant; with separators stripped, a prefix added, a value map for codes
//! (`[maps.NAME]`, with a default or `refuse` for an unmapped code) or a date format. A feed
//! with `first_per_key` keeps the first row of each primary key and drops the later ones, for
//! sources that repeat a survivor per drug or dose.
//!
//! The mapping is checked against the dictionary when it is read, and each error names the
//! mapping file, the section and the key; mapping files hold no person data, but no error
//! quotes a source file's values.
//!
//! In `ingest --mapping`, each chunk of source lines is scanned for direct identifiers field
//! by field (columns no feed uses included). Each source row the feed takes is then mapped
//! into one buffer of the target table's values, which the row validation of a dictionary
//! file takes in place, as it takes a dictionary line's fields: the same identifier scan of
//! every value (stripping separators from a case number can make an SSN's nine digits), the
//! same checks, keys and column builders, with the source line's number; the key checks,
//! quarantine and Parquet writing follow as for a dictionary file. Dates in the common plain
//! layouts (`%m/%d/%Y`, `%d/%m/%Y`, `%Y-%m-%d`, …) are read without chrono's general parser,
//! deciding as it does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono::format::{Item, Parsed, StrftimeItems};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::IngestError;
use super::identifiers::{identifier_column, identifier_value};
use super::rows::{
    BadShape, ChunkResult, EnumMatcher, FileProblem, Known, LineScan, Lines, Reject, RowRules,
    RowValidator, Value, bad_shape, encoding_problem, identifier_in_raw, known_value, redacted,
    split_fields,
};
use super::source::Header;
use crate::dictionary::{ColumnType, Dictionary, Table};
use crate::fault::Fault;
use crate::warehouse::hex;

/// Errors of a mapping file, or of a source file read through one. Each names the mapping
/// file (or the source file), the section and the key; none quotes a source file's values.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("--mapping {0}: no such file")]
    Missing(PathBuf),
    #[error("--mapping {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a valid mapping file: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {place}: {message}")]
    Invalid {
        path: PathBuf,
        place: String,
        message: String,
    },
    #[error("{file}: {message} (mapping {mapping}, {place})")]
    Source {
        file: PathBuf,
        mapping: PathBuf,
        place: String,
        message: String,
    },
}

impl MappingError {
    pub fn fault(&self) -> Fault {
        match self {
            MappingError::Read { .. } => Fault::Internal,
            _ => Fault::BadInput,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    maps: BTreeMap<String, RawMap>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    feed: Vec<RawFeed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    #[serde(default)]
    files: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    codes: BTreeMap<String, String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    refuse: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    source: String,
    table: String,
    #[serde(default)]
    when: Option<RawWhen>,
    #[serde(default)]
    first_per_key: bool,
    columns: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    column: String,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default, rename = "in")]
    one_of: Option<Vec<String>>,
    #[serde(default)]
    not_empty: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    from: Option<RawFrom>,
    #[serde(default)]
    join: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    map: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    strip: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFrom {
    One(String),
    Many(Vec<String>),
}

// ---------------------------------------------------------------------------------------
// The checked mapping.

/// What a map does with a code it does not list.
#[derive(Debug, Clone, PartialEq)]
enum Unmapped {
    Default(String),
    Refuse,
}

/// A value map: source codes to dictionary values.
#[derive(Debug)]
struct ValueMap {
    name: String,
    /// Each code's value, in the order of `lookup`.
    values: Vec<String>,
    lookup: CodeLookup,
    unmapped: Unmapped,
}

/// Finds a code's place in its map: codes of one byte each (`Y`/`N`, `M`/`F`, race letters)
/// by a table of the 256 bytes, without a branch per code; a few longer codes by their length
/// and first bytes, without hashing; many by a hash table.
#[derive(Debug)]
enum CodeLookup {
    /// Each byte's place plus one; 0 for a byte that is no code.
    Bytes(Box<[u8; 256]>),
    Few(EnumMatcher),
    Many(HashMap<Box<[u8]>, usize, ahash::RandomState>),
}

/// The most codes a map looks up one by one.
const FEW_CODES: usize = 16;

impl ValueMap {
    fn new(name: &str, codes: &BTreeMap<String, String>, unmapped: Unmapped) -> ValueMap {
        // A code of one byte is an ASCII character: at most 128 of them.
        let lookup = if codes.keys().all(|k| k.len() == 1) {
            let mut places = Box::new([0u8; 256]);
            for (i, k) in codes.keys().enumerate() {
                places[usize::from(k.as_bytes()[0])] = i as u8 + 1;
            }
            CodeLookup::Bytes(places)
        } else if codes.len() <= FEW_CODES {
            CodeLookup::Few(EnumMatcher::new(&codes.keys().cloned().collect::<Vec<_>>()))
        } else {
            CodeLookup::Many(
                codes
                    .keys()
                    .enumerate()
                    .map(|(i, k)| (k.as_bytes().to_vec().into_boxed_slice(), i))
                    .collect(),
            )
        };
        ValueMap {
            name: name.to_string(),
            values: codes.values().cloned().collect(),
            lookup,
            unmapped,
        }
    }

    /// The place of `code` among the map's codes.
    fn find(&self, code: &[u8]) -> Option<usize> {
        match &self.lookup {
            CodeLookup::Bytes(places) => match code {
                [b] => usize::from(places[usize::from(*b)]).checked_sub(1),
                _ => None,
            },
            CodeLookup::Few(m) => m.find(code),
            CodeLookup::Many(m) => m.get(code).copied(),
        }
    }

    /// Every value the map can give: its codes' values and its default.
    fn outputs(&self) -> impl Iterator<Item = &String> {
        self.values.iter().chain(match &self.unmapped {
            Unmapped::Default(d) => Some(d),
            Unmapped::Refuse => None,
        })
    }
}

/// A column rule's fixed values parsed once for its dictionary column ([`known_value`]), so
/// that a row takes them as they are: its constant, and each of its map's values and default,
/// with the prefix. `None` where the row check must read the text (ids, text, a value the
/// column refuses).
#[derive(Debug, Default)]
struct FixedValues {
    constant: Option<Value>,
    codes: Vec<Option<Value>>,
    default: Option<Value>,
}

/// Where a column's value comes from.
#[derive(Debug)]
enum Input {
    /// The same value on every row.
    Constant(String),
    /// Source columns, joined by `join` when there are several.
    Columns { names: Vec<String>, join: String },
    /// An optional dictionary column the mapping gives no source: left empty.
    Empty,
}

/// How one dictionary column is made from a source row.
#[derive(Debug)]
struct ColumnRule {
    target: String,
    input: Input,
    strip: Vec<u8>,
    map: Option<std::sync::Arc<ValueMap>>,
    date: Option<DateRule>,
    prefix: String,
    fixed: FixedValues,
}

/// A source date format: as written in the mapping, as chrono's items, and as a plain layout
/// read without chrono when it is one.
#[derive(Debug)]
struct DateRule {
    format: String,
    items: Vec<Item<'static>>,
    plain: Option<PlainDate>,
}

/// A calendar date as a mapping reads it: a year, a month and a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilDate {
    year: i32,
    month: u32,
    day: u32,
}

impl CivilDate {
    fn of(d: NaiveDate) -> CivilDate {
        use chrono::Datelike;
        CivilDate {
            year: d.year(),
            month: d.month(),
            day: d.day(),
        }
    }

    /// Days since 1970-01-01, as a `Date32`.
    fn epoch_days(self) -> i32 {
        super::rows::days_from_civil(self.year, self.month, self.day)
    }
}

impl DateRule {
    /// The date a source value holds in this format, exactly as chrono reads it.
    fn read(&self, v: &[u8]) -> Option<CivilDate> {
        match self.plain.and_then(|p| p.read(v)) {
            Some(read) => read,
            // The chunk was checked as UTF-8, and the separators stripped are ASCII.
            None => parse_with(&self.items, std::str::from_utf8(v).ok()?).map(CivilDate::of),
        }
    }
}

/// The order of a plain date layout's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateOrder {
    /// `%m/%d/%Y`
    MonthDayYear,
    /// `%d/%m/%Y`
    DayMonthYear,
    /// `%Y-%m-%d`
    YearMonthDay,
}

/// A date format of three numbers joined by one separator (`/`, `-` or `.`): a month and a
/// day (`%m`, `%d`) and a year (`%Y`), the formats most exports use. Read without chrono's
/// general parser, which took a tenth of a mapped ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlainDate {
    order: DateOrder,
    separator: u8,
}

impl PlainDate {
    /// The plain layout a mapping's date format names, if it is one.
    fn of(format: &str) -> Option<PlainDate> {
        let b = format.as_bytes();
        if b.len() != 8 || b[2] != b[5] || !b"/-.".contains(&b[2]) {
            return None;
        }
        let order = match (&b[0..2], &b[3..5], &b[6..8]) {
            (b"%m", b"%d", b"%Y") => DateOrder::MonthDayYear,
            (b"%d", b"%m", b"%Y") => DateOrder::DayMonthYear,
            (b"%Y", b"%m", b"%d") => DateOrder::YearMonthDay,
            _ => return None,
        };
        Some(PlainDate {
            order,
            separator: b[2],
        })
    }

    /// The date in `v` when `v` has the layout's plain shape: a month and a day of one or two
    /// ASCII digits and a year of four, joined by the separator, and nothing else. `None` for
    /// any other shape (spaces, signs, other digits or characters), which chrono then reads.
    /// On this shape chrono reads each number whole, and refuses a month outside 1 to 12, a day
    /// outside 1 to 31 and a day its month does not have; so does this.
    fn read(self, v: &[u8]) -> Option<Option<CivilDate>> {
        let mut groups = [(0usize, 0u32); 3];
        let mut k = 0;
        let mut len = 0;
        let mut n = 0u32;
        for &c in v {
            if c.is_ascii_digit() {
                len += 1;
                if len > 4 {
                    return None;
                }
                n = n * 10 + u32::from(c - b'0');
            } else if c == self.separator && k < 2 {
                groups[k] = (len, n);
                k += 1;
                len = 0;
                n = 0;
            } else {
                return None;
            }
        }
        if k != 2 {
            return None;
        }
        groups[2] = (len, n);
        let (year, month, day) = match self.order {
            DateOrder::MonthDayYear => (groups[2], groups[0], groups[1]),
            DateOrder::DayMonthYear => (groups[2], groups[1], groups[0]),
            DateOrder::YearMonthDay => (groups[0], groups[1], groups[2]),
        };
        if year.0 != 4 || !(1..=2).contains(&month.0) || !(1..=2).contains(&day.0) {
            return None;
        }
        // Year 0 to 9999, month and day below 100: in chrono's range, so only the calendar
        // decides.
        Some(
            super::rows::is_calendar_day(year.1, month.1, day.1).then_some(CivilDate {
                year: year.1 as i32,
                month: month.1,
                day: day.1,
            }),
        )
    }
}

impl ColumnRule {
    /// The source of the column as a quarantine reason names it.
    fn described(&self) -> String {
        match &self.input {
            Input::Constant(_) => "the mapping's constant".to_string(),
            Input::Empty => "no source column".to_string(),
            Input::Columns { names, .. } => names
                .iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(" + "),
        }
    }
}

/// A feed's condition on a source column's raw value.
#[derive(Debug)]
enum Test {
    Equals(String),
    OneOf(Vec<String>),
    NotEmpty,
}

impl Test {
    fn holds(&self, v: &[u8]) -> bool {
        match self {
            Test::Equals(x) => v == x.as_bytes(),
            Test::OneOf(xs) => xs.iter().any(|x| v == x.as_bytes()),
            Test::NotEmpty => !v.is_empty(),
        }
    }
}

/// One table fed by a source: its condition and a rule per dictionary column.
#[derive(Debug)]
pub struct Feed {
    /// 1-based position among the file's `[[feed]]` sections.
    number: usize,
    source: String,
    pub table: &'static Table,
    when: Option<(String, Test)>,
    pub first_per_key: bool,
    columns: Vec<ColumnRule>,
    /// The mapping file, as errors name it, and its SHA-256, as the manifest records it.
    pub mapping_path: PathBuf,
    pub mapping_sha256: String,
}

impl Feed {
    fn place(&self) -> String {
        format!(
            "[[feed]] {} ({} → {})",
            self.number, self.source, self.table.name
        )
    }
}

/// One source system's export: the file-name patterns that recognise it and its feeds.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    patterns: Vec<String>,
    pub feeds: Vec<Feed>,
}

impl Source {
    /// Whether the file name matches one of the source's patterns (ASCII case ignored).
    fn recognises(&self, file: &Path) -> bool {
        let Some(name) = file.file_name().map(|n| n.to_string_lossy().to_lowercase()) else {
            return false;
        };
        self.patterns
            .iter()
            .any(|p| glob_matches(p.to_lowercase().as_bytes(), name.as_bytes()))
    }
}

/// A checked mapping file.
#[derive(Debug)]
pub struct Mapping {
    pub path: PathBuf,
    /// SHA-256 of the mapping file's bytes, recorded beside each file it loaded.
    pub sha256: String,
    pub sources: Vec<Source>,
}

impl Mapping {
    /// Reads and checks the mapping file at `path` against the built-in dictionary.
    pub fn load(path: &Path) -> Result<Mapping, IngestError> {
        let dict = Dictionary::builtin().map_err(IngestError::Dictionary)?;
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                MappingError::Missing(path.to_path_buf())
            } else {
                MappingError::Read {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let text = String::from_utf8(bytes.clone()).map_err(|e| MappingError::Syntax {
            path: path.to_path_buf(),
            line: bytes[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
            message: "not UTF-8 text".to_string(),
        })?;
        Ok(Self::parse(path, &text, dict)?)
    }

    /// Parses and checks a mapping's text; `path` only names it in errors.
    pub fn parse(
        path: &Path,
        text: &str,
        dict: &'static Dictionary,
    ) -> Result<Mapping, MappingError> {
        let invalid = |place: &str, message: String| MappingError::Invalid {
            path: path.to_path_buf(),
            place: place.to_string(),
            message,
        };
        // Only the message and the line: a file given as a mapping by mistake may be data.
        let raw: RawMapping = toml::from_str(text).map_err(|e| MappingError::Syntax {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim_end().to_string(),
        })?;
        let sha256 = hex(&Sha256::digest(text.as_bytes()));

        let mut maps = HashMap::new();
        for (name, m) in &raw.maps {
            let place = format!("[maps.{name}]");
            let unmapped = match (&m.default, m.refuse) {
                (Some(d), false) => Unmapped::Default(d.clone()),
                (None, true) => Unmapped::Refuse,
                (Some(_), true) => {
                    return Err(invalid(
                        &place,
                        "both `default` and `refuse = true`: choose one for codes the map does not list".into(),
                    ));
                }
                (None, false) => {
                    return Err(invalid(
                        &place,
                        "say what an unlisted code becomes: `default = \"…\"` or `refuse = true`"
                            .into(),
                    ));
                }
            };
            if m.codes.is_empty() {
                return Err(invalid(&place, "key `codes` lists no code".into()));
            }
            maps.insert(
                name.clone(),
                std::sync::Arc::new(ValueMap::new(name, &m.codes, unmapped)),
            );
        }

        let mut sources: Vec<Source> = Vec::new();
        for s in &raw.source {
            let place = format!("[[source]] '{}'", s.name);
            if s.name.trim().is_empty() {
                return Err(invalid("[[source]]", "key `name` is empty".into()));
            }
            if sources.iter().any(|x| x.name == s.name) {
                return Err(invalid(
                    &place,
                    "key `name`: a source of this name comes earlier".into(),
                ));
            }
            let patterns = if s.files.is_empty() {
                vec![format!("{}*.csv", s.name)]
            } else {
                s.files.clone()
            };
            if let Some(p) = patterns.iter().find(|p| p.contains(['/', '\\'])) {
                return Err(invalid(
                    &place,
                    format!("key `files`: '{p}' names a folder; patterns match file names only"),
                ));
            }
            sources.push(Source {
                name: s.name.clone(),
                patterns,
                feeds: Vec::new(),
            });
        }
        if sources.is_empty() {
            return Err(invalid(
                "[[source]]",
                "the mapping describes no source file".into(),
            ));
        }

        for (i, f) in raw.feed.iter().enumerate() {
            let number = i + 1;
            let place = format!("[[feed]] {number} ({} → {})", f.source, f.table);
            let table = dict.table(&f.table).ok_or_else(|| {
                invalid(
                    &place,
                    format!(
                        "key `table`: no table '{}'; the tables are {}",
                        f.table,
                        dict.table_names().join(", ")
                    ),
                )
            })?;
            let Some(source) = sources.iter_mut().find(|s| s.name == f.source) else {
                return Err(invalid(
                    &place,
                    format!("key `source`: no [[source]] is named '{}'", f.source),
                ));
            };
            let when = f
                .when
                .as_ref()
                .map(|w| {
                    let test = match (&w.equals, &w.one_of, w.not_empty) {
                        (Some(x), None, false) => Test::Equals(x.clone()),
                        (None, Some(xs), false) if !xs.is_empty() => Test::OneOf(xs.clone()),
                        (None, None, true) => Test::NotEmpty,
                        _ => {
                            return Err(invalid(
                                &place,
                                "key `when`: give exactly one of `equals = \"…\"`, `in = [\"…\"]` or `not_empty = true`".into(),
                            ));
                        }
                    };
                    Ok((w.column.clone(), test))
                })
                .transpose()?;
            for name in f.columns.keys() {
                if table.column(name).is_none() {
                    return Err(invalid(
                        &place,
                        format!(
                            "key `columns.{name}`: table {} has no column '{name}'; its columns are {}",
                            table.name,
                            table.column_names().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            let mut columns = Vec::with_capacity(table.columns.len());
            for col in &table.columns {
                let key = format!("columns.{}", col.name);
                let at = |message: String| invalid(&place, format!("key `{key}`: {message}"));
                let Some(v) = f.columns.get(&col.name) else {
                    if col.required {
                        return Err(invalid(
                            &place,
                            format!(
                                "key `{key}` is missing: {}.{} is required, so give it a source column (`{} = \"SOURCE_COLUMN\"`) or a constant (`{} = {{ value = \"…\" }}`)",
                                table.name, col.name, col.name, col.name
                            ),
                        ));
                    }
                    columns.push(ColumnRule {
                        target: col.name.clone(),
                        input: Input::Empty,
                        strip: Vec::new(),
                        map: None,
                        date: None,
                        prefix: String::new(),
                        fixed: FixedValues::default(),
                    });
                    continue;
                };
                let rule: RawRule = match v {
                    toml::Value::String(s) => RawRule {
                        from: Some(RawFrom::One(s.clone())),
                        join: None,
                        value: None,
                        map: None,
                        date: None,
                        strip: None,
                        prefix: None,
                    },
                    toml::Value::Table(_) => v
                        .clone()
                        .try_into()
                        .map_err(|e: toml::de::Error| at(e.message().trim_end().to_string()))?,
                    _ => {
                        return Err(at(
                            "give a source column's name, or a table such as { from = \"…\" }"
                                .into(),
                        ));
                    }
                };
                let input = match (&rule.from, &rule.value) {
                    (Some(from), None) => {
                        let names = match from {
                            RawFrom::One(n) => vec![n.clone()],
                            RawFrom::Many(ns) => ns.clone(),
                        };
                        if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                            return Err(at("`from` names an empty column".into()));
                        }
                        Input::Columns {
                            names,
                            join: rule.join.clone().unwrap_or_else(|| "-".to_string()),
                        }
                    }
                    (None, Some(value)) => {
                        if rule.map.is_some() || rule.date.is_some() || rule.strip.is_some() {
                            return Err(at(
                                "a constant (`value`) takes no `map`, `date` or `strip`".into(),
                            ));
                        }
                        Input::Constant(format!("{}{value}", rule.prefix.as_deref().unwrap_or("")))
                    }
                    (Some(_), Some(_)) => {
                        return Err(at("give `from` or `value`, not both".into()));
                    }
                    (None, None) => {
                        return Err(at(
                            "give a source column (`from = \"…\"`) or a constant (`value = \"…\"`)"
                                .into(),
                        ));
                    }
                };
                if rule.join.is_some() && !matches!(&rule.from, Some(RawFrom::Many(_))) {
                    return Err(at("`join` needs several source columns in `from`".into()));
                }
                let strip = rule.strip.clone().unwrap_or_default();
                if !strip.is_ascii() {
                    return Err(at("`strip` takes ASCII characters only".into()));
                }
                let map = match &rule.map {
                    None => None,
                    Some(name) => {
                        let m = maps.get(name).ok_or_else(|| {
                            at(format!("`map`: no [maps.{name}] in this mapping"))
                        })?;
                        // Every value the map can give must be one the column takes.
                        for t in m.outputs() {
                            if let Err(why) = check_value(col, t) {
                                return Err(invalid(
                                    &format!("[maps.{name}]"),
                                    format!(
                                        "'{t}' {why} (the map feeds {}.{} in {place})",
                                        table.name, col.name
                                    ),
                                ));
                            }
                        }
                        Some(std::sync::Arc::clone(m))
                    }
                };
                let date = match &rule.date {
                    None => None,
                    Some(fmt) => {
                        if col.ty != ColumnType::Date {
                            return Err(at(format!(
                                "`date`: {}.{} is no date column",
                                table.name, col.name
                            )));
                        }
                        if map.is_some() {
                            return Err(at("give `map` or `date`, not both".into()));
                        }
                        Some(DateRule {
                            format: fmt.clone(),
                            items: date_items(fmt)
                                .map_err(|why| at(format!("`date = \"{fmt}\"`: {why}")))?,
                            plain: PlainDate::of(fmt),
                        })
                    }
                };
                if let Input::Constant(c) = &input
                    && let Err(why) = check_value(col, c)
                {
                    return Err(at(format!("the constant '{c}' {why}")));
                }
                let prefix = match &rule.value {
                    Some(_) => String::new(),
                    None => rule.prefix.clone().unwrap_or_default(),
                };
                let known = |v: &str| known_value(col, format!("{prefix}{v}").as_bytes());
                let fixed = FixedValues {
                    constant: match &input {
                        Input::Constant(c) => known_value(col, c.as_bytes()),
                        _ => None,
                    },
                    codes: map
                        .as_ref()
                        .map(|m| m.values.iter().map(|v| known(v)).collect())
                        .unwrap_or_default(),
                    default: match map.as_ref().map(|m| &m.unmapped) {
                        Some(Unmapped::Default(d)) => known(d),
                        _ => None,
                    },
                };
                columns.push(ColumnRule {
                    target: col.name.clone(),
                    input,
                    strip: strip.into_bytes(),
                    map,
                    date,
                    prefix,
                    fixed,
                });
            }
            source.feeds.push(Feed {
                number,
                source: f.source.clone(),
                table,
                when,
                first_per_key: f.first_per_key,
                columns,
                mapping_path: path.to_path_buf(),
                mapping_sha256: sha256.clone(),
            });
        }
        if let Some(s) = sources.iter().find(|s| s.feeds.is_empty()) {
            return Err(invalid(
                &format!("[[source]] '{}'", s.name),
                "no [[feed]] takes rows from this source".into(),
            ));
        }
        Ok(Mapping {
            path: path.to_path_buf(),
            sha256,
            sources,
        })
    }

    /// The source whose pattern the file's name matches, the first one in the file.
    pub fn source_of(&self, file: &Path) -> Option<&Source> {
        self.sources.iter().find(|s| s.recognises(file))
    }

    /// Every source's patterns, for an error about a file none matches.
    pub fn patterns(&self) -> String {
        self.sources
            .iter()
            .flat_map(|s| s.patterns.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether `v` is a value column `col` takes as the mapping's output: an enum's value, a
/// boolean, a date written `YYYY-MM-DD`. Ids and text are checked row by row.
fn check_value(col: &crate::dictionary::Column, v: &str) -> Result<(), String> {
    match col.ty {
        ColumnType::Enum if !col.values.iter().any(|x| x == v) => Err(format!(
            "is not a value of {}: it takes {}",
            col.name,
            col.values.join(", ")
        )),
        ColumnType::Bool
            if !["true", "false", "1", "0"].contains(&v.to_ascii_lowercase().as_str()) =>
        {
            Err(format!(
                "is not a value of {}: it takes true or false",
                col.name
            ))
        }
        ColumnType::Date if super::rows::parse_date(v.as_bytes()).is_none() => Err(format!(
            "is not a date written YYYY-MM-DD, which {} takes",
            col.name
        )),
        _ => Ok(()),
    }
}

/// The parsed items of a date format, checked to read a whole calendar date back.
fn date_items(fmt: &str) -> Result<Vec<Item<'static>>, String> {
    let items = StrftimeItems::new(fmt).parse_to_owned().map_err(|_| {
        "not a date format: use chrono's specifiers such as %m/%d/%Y or %d.%m.%Y".to_string()
    })?;
    let sample = NaiveDate::from_ymd_opt(2024, 11, 28).expect("valid");
    let mut written = String::new();
    write!(written, "{}", sample.format_with_items(items.iter()))
        .map_err(|_| "the format writes more than a date (a time or a zone)".to_string())?;
    match parse_with(&items, &written) {
        Some(d) if d == sample => Ok(items),
        _ => Err("the format does not give a year, a month and a day".to_string()),
    }
}

fn parse_with(items: &[Item<'static>], v: &str) -> Option<NaiveDate> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, v, items.iter()).ok()?;
    parsed.to_naive_date().ok()
}

/// Whether a file name matches a pattern of `*` (any run) and `?` (one character).
fn glob_matches(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

// ---------------------------------------------------------------------------------------
// A feed bound to one source file's header.

/// A column rule with the header positions of its source columns.
#[derive(Debug)]
struct BoundColumn<'m> {
    rule: &'m ColumnRule,
    fields: Vec<usize>,
    /// Whether every value this column can give has been scanned for a direct identifier
    /// before it reaches the dictionary's checks ([`BoundColumn::scanned`]).
    scanned: bool,
    /// Whether a fixed value that the mapping parsed need not be written as text: the column
    /// is scanned, and no value the mapping fixes holds an `@` (which would have every value
    /// scanned again, and looked for).
    lean: bool,
}

impl BoundColumn<'_> {
    /// Whether a fixed value the mapping parsed as `given` is left unwritten: a code or a
    /// boolean of a lean column, which the row takes parsed ([`Known`]) and need not scan.
    fn unwritten(&self, given: Option<Value>) -> bool {
        self.lean && matches!(given, Some(Value::Code(_) | Value::Bool(_)))
    }

    /// Whether this column's mapped value needs no second identifier scan: it is empty, a
    /// copy of one source field as it is (every source field is scanned, with the email test
    /// whenever the mapped row could need it: a copied `@` is in the source line too), or one
    /// of the values the mapping itself fixes (a constant, a map's values and default, each
    /// with the prefix), scanned here with the email test. Anything made from the data (a
    /// stripped or joined id, a date, a prefixed copy) is scanned again: stripping the
    /// separators of `"1,204,377,890"` makes a 10-digit run that no source field holds.
    fn scanned(rule: &ColumnRule, fields: &[usize]) -> bool {
        let clean = |v: &str| {
            let mut bytes = rule.prefix.as_bytes().to_vec();
            bytes.extend_from_slice(v.as_bytes());
            identifier_value(&bytes, true).is_none()
        };
        match (&rule.input, &rule.map, &rule.date) {
            (Input::Empty, _, _) => true,
            (Input::Constant(v), _, _) => identifier_value(v.as_bytes(), true).is_none(),
            (Input::Columns { .. }, Some(m), _) => m.outputs().all(|o| clean(o)),
            (Input::Columns { .. }, None, None) => {
                fields.len() == 1 && rule.strip.is_empty() && rule.prefix.is_empty()
            }
            (Input::Columns { .. }, None, Some(_)) => false,
        }
    }
}

/// A feed applied to one source file: where each source column sits in its header.
#[derive(Debug)]
pub struct BoundFeed<'m> {
    pub feed: &'m Feed,
    /// The source file's name, as reasons name it.
    file: String,
    header: Vec<String>,
    when: Option<(usize, &'m Test)>,
    columns: Vec<BoundColumn<'m>>,
    /// Whether a value the mapping fixes (a constant, a map's value or default, a prefix, a
    /// join) holds an `@`: only then can a mapped row hold an `@` its source line lacks.
    fixed_at: bool,
}

/// Counts that `mapping check` reports for one feed.
#[derive(Debug, Default, Clone)]
pub struct FeedStats {
    /// Rows whose condition holds (every row when the feed has none).
    pub rows_fed: u64,
    /// Per column rule (table column order) and code: how often a map did not list it.
    pub unmapped: BTreeMap<(usize, Vec<u8>), u64>,
    /// Rows refused by the mapping, per (dictionary column, rule).
    pub refused: BTreeMap<(String, String), u64>,
    /// Mapped rows refused by the dictionary's rules, per rule (the first the row breaks).
    pub dictionary_refused: BTreeMap<String, u64>,
}

impl Feed {
    /// Binds the feed to a source file's header. Refuses the file whole when the header holds
    /// a value shaped like a direct identifier or names an identifier column (whether or not
    /// the mapping uses it), and names every source column the feed needs that is missing.
    pub fn bind<'m>(
        &'m self,
        mapping: &Path,
        path: &Path,
        header: &Header,
    ) -> Result<BoundFeed<'m>, IngestError> {
        check_source_header(path, header)?;
        let position = |name: &str, key: String| {
            let found: Vec<usize> = header
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.as_str() == name)
                .map(|(i, _)| i)
                .collect();
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(MappingError::Source {
                    file: path.to_path_buf(),
                    mapping: mapping.to_path_buf(),
                    place: format!("{}, key `{key}`", self.place()),
                    message: format!("the header has no column '{name}'"),
                }),
                _ => Err(MappingError::Source {
                    file: path.to_path_buf(),
                    mapping: mapping.to_path_buf(),
                    place: format!("{}, key `{key}`", self.place()),
                    message: format!("the header names column '{name}' more than once"),
                }),
            }
        };
        let when = match &self.when {
            None => None,
            Some((column, test)) => Some((position(column, "when.column".into())?, test)),
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for rule in &self.columns {
            let fields = match &rule.input {
                Input::Columns { names, .. } => names
                    .iter()
                    .map(|n| position(n, format!("columns.{}", rule.target)))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => Vec::new(),
            };
            let scanned = BoundColumn::scanned(rule, &fields);
            columns.push(BoundColumn {
                rule,
                fields,
                scanned,
                lean: false,
            });
        }
        let fixed_at = self.columns.iter().any(|rule| {
            let at = |v: &str| v.contains('@');
            at(&rule.prefix)
                || match &rule.input {
                    Input::Constant(v) => at(v),
                    Input::Columns { join, .. } => at(join),
                    Input::Empty => false,
                }
                || rule
                    .map
                    .as_ref()
                    .is_some_and(|m| m.outputs().any(|v| at(v)))
        });
        for c in &mut columns {
            c.lean = c.scanned && !fixed_at;
        }
        Ok(BoundFeed {
            feed: self,
            fixed_at,
            file: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            header: header.fields.clone(),
            when,
            columns,
        })
    }
}

/// Refuses a source file whose header line holds a direct identifier's value or names an
/// identifier column: a mapped source is held to the dictionary files' rule, every column
/// of it, used or not.
fn check_source_header(path: &Path, header: &Header) -> Result<(), IngestError> {
    if let Some(kind) = header
        .fields
        .iter()
        .find_map(|f| identifier_value(f.as_bytes(), true))
    {
        return Err(IngestError::DirectIdentifier {
            file: path.to_path_buf(),
            place: "a value in the header line (line 1)".into(),
            kind: kind.describe(),
        });
    }
    if let Some((f, kind)) = header
        .fields
        .iter()
        .find_map(|f| identifier_column(f).map(|k| (f, k)))
    {
        return Err(IngestError::DirectIdentifier {
            file: path.to_path_buf(),
            place: format!("column '{f}'"),
            kind: kind.describe(),
        });
    }
    Ok(())
}

impl BoundFeed<'_> {
    /// Number of fields of the source header.
    pub fn n_fields(&self) -> usize {
        self.header.len()
    }

    /// Header positions that this feed reads (its condition and its columns).
    pub fn used_fields(&self) -> impl Iterator<Item = usize> + '_ {
        self.when
            .iter()
            .map(|(f, _)| *f)
            .chain(self.columns.iter().flat_map(|c| c.fields.iter().copied()))
    }

    /// Validates one chunk of source lines through the feed. Each source line is split and
    /// every field of it scanned for direct identifiers (columns no feed uses included); a
    /// line the feed takes is then mapped, column by column, into `values` (the caller's
    /// buffer, reused across chunks), and those values are validated in place as the target
    /// table's row by the rules of a dictionary file ([`RowValidator::row`]): scanned for
    /// identifiers again (stripping separators can make one), checked, keyed and built into
    /// columns. Rejects and keys name the source line.
    pub fn validate_chunk(
        &self,
        rules: &RowRules,
        chunk: &[u8],
        first_line: u64,
        last_unterminated: bool,
        values: &mut Vec<u8>,
    ) -> ChunkResult {
        self.validate_rows(rules, chunk, first_line, last_unterminated, values, None)
    }

    /// Rewrites the rejects of a file staged through this feed so that each names the source
    /// file and column beside the dictionary column it was mapped to.
    pub fn describe_rejects(&self, rejects: &mut [Reject]) {
        for r in rejects {
            let from = self
                .columns
                .iter()
                .find(|c| c.rule.target == r.column)
                .map(|c| c.rule.described());
            r.reason = match from {
                Some(from) => format!(
                    "{}, column {from} mapped to {}: {}",
                    self.file, r.column, r.reason
                ),
                None => format!("{}: {}", self.file, r.reason),
            };
        }
    }

    /// [`Self::validate_chunk`], with `stats` collecting `mapping check`'s counts.
    fn validate_rows(
        &self,
        rules: &RowRules,
        chunk: &[u8],
        first_line: u64,
        last_unterminated: bool,
        values: &mut Vec<u8>,
        mut stats: Option<&mut FeedStats>,
    ) -> ChunkResult {
        let mut result = ChunkResult::default();
        if let Some(problem) = encoding_problem(chunk, first_line) {
            result.problem = Some(problem);
            return result;
        }
        // The mapped row reaches the rules in the table's column order, as `self.columns`.
        debug_assert_eq!(rules.n_fields, self.columns.len());
        let n_fields = self.header.len();
        let mut ranges = Vec::with_capacity(n_fields);
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(self.columns.len());
        let mut scratch = Vec::new();
        let mut scan = LineScan::default();
        let mut rows = RowValidator::new(rules);
        // The mapped values that need no second identifier scan ([`BoundColumn::scanned`]).
        let scanned = self
            .columns
            .iter()
            .enumerate()
            .filter(|(ci, c)| *ci < 64 && c.scanned)
            .fold(0u64, |bits, (ci, _)| bits | 1 << ci);
        // Each mapped value the mapping parsed already, by column.
        let mut parsed = vec![Value::Null; self.columns.len()];
        let mut joined = Vec::new();
        let mut row_rejects: Vec<Reject> = Vec::new();
        // The first direct identifier that a mapped value holds. The source lines of the
        // whole chunk are still read: a problem in one of them refuses the file first, as the
        // raw lines are scanned before any mapped value.
        let mut mapped_identifier: Option<FileProblem> = None;
        for line in Lines::new(chunk, first_line, last_unterminated) {
            let line = match line {
                Ok(line) => line,
                Err(problem) => {
                    result.problem = Some(problem);
                    return result;
                }
            };
            let line_here = line.number;
            scan.scan(line.text);
            let has_at = scan.has_at;
            let split = split_fields(line.text, &scan, &mut scratch, &mut ranges);
            // Every field of the source line is scanned, the columns no feed uses too.
            let identifier = match &split {
                Ok(base) => {
                    let aligned = ranges.len() == n_fields;
                    ranges.iter().enumerate().find_map(|(fi, &(s, e))| {
                        identifier_value(&base[s..e], has_at).map(|kind| FileProblem::Identifier {
                            line: line_here,
                            column: aligned.then(|| self.header[fi].clone()),
                            kind,
                        })
                    })
                }
                Err(_) => identifier_in_raw(line.text, has_at, line_here),
            };
            if let Some(problem) = identifier {
                result.problem = Some(problem);
                return result;
            }
            let base = match split {
                Ok(base) if ranges.len() == n_fields => base,
                split => match bad_shape(split.map(|_| ()), ranges.len(), n_fields, &line) {
                    BadShape::Refuse(problem) => {
                        result.problem = Some(problem);
                        return result;
                    }
                    BadShape::Reject(reject) => {
                        result.rows_read += 1;
                        result.rows_rejected += 1;
                        result.rejects.push(reject);
                        continue;
                    }
                },
            };
            if let Some((fi, test)) = self.when {
                let (s, e) = ranges[fi];
                if !test.holds(&base[s..e]) {
                    continue;
                }
            }
            if let Some(st) = stats.as_deref_mut() {
                st.rows_fed += 1;
            }
            if mapped_identifier.is_some() {
                // The file is refused: the rest of the chunk is only read for the source
                // lines' own problems.
                continue;
            }
            result.rows_read += 1;
            row_rejects.clear();
            values.clear();
            spans.clear();
            let (mut parsed_bits, mut written_dates) = (0u64, 0u64);
            for (ci, c) in self.columns.iter().enumerate() {
                let start = values.len();
                match self.value(
                    c,
                    ci,
                    base,
                    &ranges,
                    values,
                    &mut joined,
                    stats.as_deref_mut(),
                ) {
                    Ok(given) => {
                        spans.push((start, values.len()));
                        if let Some(v) = given
                            && ci < 64
                        {
                            parsed[ci] = v;
                            parsed_bits |= 1 << ci;
                            if c.rule.date.is_some() {
                                written_dates |= 1 << ci;
                            }
                        }
                    }
                    Err(reason) => {
                        values.truncate(start);
                        spans.push((start, start));
                        if let Some(st) = stats.as_deref_mut() {
                            *st.refused
                                .entry((c.rule.target.clone(), refusal_kind(c.rule)))
                                .or_default() += 1;
                        }
                        row_rejects.push(Reject {
                            line: line_here,
                            column: c.rule.target.clone(),
                            reason,
                        });
                    }
                }
            }
            if !row_rejects.is_empty() {
                result.rows_rejected += 1;
                result.rejects.append(&mut row_rejects);
                continue;
            }
            // The mapped values are scanned as a dictionary line's fields would be, the email
            // test included whenever one of them may hold an `@`: one from the source line,
            // or one the mapping fixes.
            let mapped_at = has_at || (self.fixed_at && memchr::memchr(b'@', values).is_some());
            // A copied field was scanned with the source line's `@` test; had the line no `@`
            // but a value the mapping fixes has one, every value is scanned again. A date the
            // mapping wrote as `YYYY-MM-DD` is no identifier (checked for every such date by
            // the tests).
            let known = Known {
                scanned: if mapped_at && !has_at {
                    0
                } else {
                    scanned | written_dates
                },
                parsed: parsed_bits,
                values: &parsed,
            };
            let (rejected, first_reject) = (result.rows_rejected, result.rejects.len());
            if let Err(problem) = rows.row(&mut result, values, &spans, mapped_at, line_here, known)
            {
                mapped_identifier = Some(problem);
                continue;
            }
            if let Some(st) = stats.as_deref_mut()
                && result.rows_rejected > rejected
            {
                let first = &result.rejects[first_reject];
                let rule = if first.column.is_empty() {
                    "the row's shape".to_string()
                } else {
                    format!("fails the dictionary's rule for {}", first.column)
                };
                *st.dictionary_refused.entry(rule).or_default() += 1;
            }
        }
        if let Some(problem) = mapped_identifier {
            return ChunkResult {
                problem: Some(problem),
                ..ChunkResult::default()
            };
        }
        rows.finish(&mut result);
        result
    }

    /// Appends one dictionary column's value of a source row to `out`, and returns it parsed
    /// when the mapping knows it so ([`FixedValues`], or a date it read and wrote as
    /// `YYYY-MM-DD`); the reason, with the value redacted, when a rule refuses it (what was
    /// appended is then the caller's to cut). A source field is read where it lies; only
    /// fields to strip or join are first written to `joined`.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &self,
        c: &BoundColumn,
        ci: usize,
        base: &[u8],
        ranges: &[(usize, usize)],
        out: &mut Vec<u8>,
        joined: &mut Vec<u8>,
        stats: Option<&mut FeedStats>,
    ) -> Result<Option<Value>, String> {
        let rule = c.rule;
        let text: &[u8] = match &rule.input {
            Input::Empty => return Ok(None),
            Input::Columns { .. } if c.fields.len() == 1 && rule.strip.is_empty() => {
                let (s, e) = ranges[c.fields[0]];
                &base[s..e]
            }
            Input::Constant(v) => {
                let given = rule.fixed.constant;
                if !c.unwritten(given) {
                    out.extend_from_slice(v.as_bytes());
                }
                return Ok(given);
            }
            Input::Columns { join, .. } => {
                joined.clear();
                for (k, fi) in c.fields.iter().enumerate() {
                    let (s, e) = ranges[*fi];
                    if s == e {
                        // A key made of parts is only whole with every part.
                        return Ok(None);
                    }
                    if k > 0 {
                        joined.extend_from_slice(join.as_bytes());
                    }
                    match rule.strip[..] {
                        [] => joined.extend_from_slice(&base[s..e]),
                        // One separator, the usual case: copied a run at a time.
                        [sep] => base[s..e]
                            .split(|b| *b == sep)
                            .for_each(|run| joined.extend_from_slice(run)),
                        _ => joined.extend(base[s..e].iter().filter(|b| !rule.strip.contains(b))),
                    }
                }
                joined
            }
        };
        if text.is_empty() {
            // An empty field, or nothing but separators: an empty value, without its prefix.
            return Ok(None);
        }
        // Each write is a copy call: an empty prefix is not written at all.
        if !rule.prefix.is_empty() {
            out.extend_from_slice(rule.prefix.as_bytes());
        }
        if let Some(m) = &rule.map {
            if let Some(i) = m.find(text) {
                let given = rule.fixed.codes[i];
                if !c.unwritten(given) {
                    out.extend_from_slice(m.values[i].as_bytes());
                }
                return Ok(given);
            }
            if let Some(st) = stats {
                *st.unmapped.entry((ci, text.to_vec())).or_default() += 1;
            }
            match &m.unmapped {
                Unmapped::Default(d) => {
                    let given = rule.fixed.default;
                    if !c.unwritten(given) {
                        out.extend_from_slice(d.as_bytes());
                    }
                    Ok(given)
                }
                Unmapped::Refuse => Err(format!(
                    "{} is not a code of map '{}', which refuses unlisted codes",
                    redacted(text),
                    m.name
                )),
            }
        } else if let Some(date) = &rule.date {
            match date.read(text) {
                // A year of four digits is written as the dictionary's rows read it: the row
                // takes the date as it is, and no identifier can hide in it.
                Some(d) => Ok((push_iso_date(out, d) && rule.prefix.is_empty())
                    .then(|| Value::Date(d.epoch_days()))),
                None => Err(format!(
                    "{} is not a date written {}",
                    redacted(text),
                    date.format
                )),
            }
        } else {
            out.extend_from_slice(text);
            Ok(None)
        }
    }
}

/// The rule a refused value broke, as `mapping check` counts it.
fn refusal_kind(rule: &ColumnRule) -> String {
    match (&rule.map, &rule.date) {
        (Some(m), _) => format!("code not in map '{}' (refuse)", m.name),
        (None, Some(date)) => format!("not a date written {}", date.format),
        _ => "refused".to_string(),
    }
}

/// Appends a date as `YYYY-MM-DD`, the dictionary's form, without a formatter per value, and
/// says whether it was that form. A year outside 0 to 9999 is written as it is, which the row
/// validation then refuses.
fn push_iso_date(buf: &mut Vec<u8>, d: CivilDate) -> bool {
    let (y, m, day) = (d.year, d.month, d.day);
    if !(0..=9999).contains(&y) {
        buf.extend_from_slice(format!("{y}-{m:02}-{day:02}").as_bytes());
        return false;
    }
    let y = y as u32;
    let digit = |n: u32| b'0' + (n % 10) as u8;
    buf.extend_from_slice(&[
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(day / 10),
        digit(day),
    ]);
    true
}

// ---------------------------------------------------------------------------------------
// `outreach mapping check`.

/// An unmapped code of a coded column, with its count.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnmappedCode {
    /// The source column(s) the code came from.
    pub source_column: String,
    pub column: String,
    pub map: String,
    /// The code as found, or `[redacted]` when it is shaped like a direct identifier.
    pub code: String,
    pub rows: u64,
    /// What the map did with it: `default 'x'` or `refused`.
    pub outcome: String,
}

/// Rows that would be refused under one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Refusal {
    pub column: String,
    pub rule: String,
    pub rows: u64,
}

/// One feed's findings over one source file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeedCheck {
    pub feed: usize,
    pub table: String,
    /// Rows whose condition holds.
    pub rows_fed: u64,
    /// Later rows of a key already fed, dropped by `first_per_key`.
    pub rows_folded: u64,
    /// Rows that would be refused, per rule.
    pub refused: Vec<Refusal>,
    pub rows_refused: u64,
    pub unmapped: Vec<UnmappedCode>,
}

/// One source file's findings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileCheck {
    pub file: String,
    pub source: String,
    pub rows: u64,
    /// Source columns that no feed reads: scanned for identifiers, never stored.
    pub unused_columns: Vec<String>,
    /// Set when the file would be refused whole (a direct identifier, a damaged line).
    pub refused_whole: Option<String>,
    pub feeds: Vec<FeedCheck>,
}

/// What `mapping check` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckReport {
    pub mapping: String,
    pub mapping_sha256: String,
    pub files: Vec<FileCheck>,
}

/// What `check` tallies per feed while it reads a source: the feed's statistics, the keys it
/// has seen, the repeats folded by "first row per key", and the rows refused.
type FeedTally = (FeedStats, HashSet<u128>, u64, u64);

/// The rules `check` validates a feed's mapped rows by: the dictionary's, with the default
/// plausible dates, without the referenced table's rows (nothing is loaded to look them up).
fn check_rules(table: &Table) -> RowRules<'_> {
    let defaults = super::IngestOptions::default();
    RowRules::new(
        table,
        (0..table.columns.len()).collect(),
        table.columns.len(),
        None,
        false,
        defaults.min_date,
        defaults.max_date,
    )
}

/// Reads each source file through the mapping and counts what an ingest would do with it,
/// without writing anything. A file that no source of the mapping recognises is an error.
pub fn check(mapping: &Mapping, files: &[PathBuf]) -> Result<CheckReport, IngestError> {
    let files = super::expand_inputs(files)?;
    let mut report = CheckReport {
        mapping: mapping.path.display().to_string(),
        mapping_sha256: mapping.sha256.clone(),
        files: Vec::new(),
    };
    for path in &files {
        let source = mapping
            .source_of(path)
            .ok_or_else(|| MappingError::Source {
                file: path.clone(),
                mapping: mapping.path.clone(),
                place: "[[source]]".into(),
                message: format!(
                    "no source of the mapping recognises this file name (patterns: {})",
                    mapping.patterns()
                ),
            })?;
        let header = super::source::read_header(path)?;
        let bound = source
            .feeds
            .iter()
            .map(|f| f.bind(&mapping.path, path, &header))
            .collect::<Result<Vec<_>, _>>()?;
        let used: BTreeSet<usize> = bound.iter().flat_map(|b| b.used_fields()).collect();
        let mut fc = FileCheck {
            file: path.display().to_string(),
            source: source.name.clone(),
            rows: 0,
            unused_columns: header
                .fields
                .iter()
                .enumerate()
                .filter(|(i, _)| !used.contains(i))
                .map(|(_, f)| f.clone())
                .collect(),
            refused_whole: None,
            feeds: Vec::new(),
        };
        let mut states: Vec<FeedTally> = bound.iter().map(|_| Default::default()).collect();
        let rules: Vec<RowRules> = bound.iter().map(|b| check_rules(b.feed.table)).collect();
        let mut values = Vec::new();
        for_each_chunk(path, header.body_offset, |chunk, first_line, last| {
            fc.rows += chunk
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')))
                .count() as u64;
            for (k, b) in bound.iter().enumerate() {
                let (stats, keys, folded, refused_rows) = &mut states[k];
                let r =
                    b.validate_rows(&rules[k], chunk, first_line, last, &mut values, Some(stats));
                if let Some(p) = r.problem {
                    return Err(IngestError::from_problem(path, p));
                }
                *refused_rows += r.rows_rejected;
                for (h, _) in &r.keys {
                    if !keys.insert(*h) {
                        *folded += 1;
                    }
                }
            }
            Ok(())
        })
        .or_else(|e| match e {
            IngestError::DirectIdentifier { place, kind, .. } => {
                fc.refused_whole = Some(format!("{place} looks like {kind}"));
                Ok(())
            }
            e @ (IngestError::MultilineField { .. }
            | IngestError::Truncated { .. }
            | IngestError::OverlongLine { .. }
            | IngestError::Encoding { .. }) => {
                fc.refused_whole = Some(e.to_string());
                Ok(())
            }
            e => Err(e),
        })?;
        if fc.refused_whole.is_none() {
            for (b, (stats, _, folded, refused_rows)) in bound.iter().zip(states) {
                let mut refused: Vec<Refusal> = stats
                    .refused
                    .iter()
                    .map(|((column, rule), rows)| Refusal {
                        column: column.clone(),
                        rule: rule.clone(),
                        rows: *rows,
                    })
                    .collect();
                refused.extend(stats.dictionary_refused.iter().map(|(rule, rows)| Refusal {
                    column: String::new(),
                    rule: rule.clone(),
                    rows: *rows,
                }));
                if folded > 0 && !b.feed.first_per_key {
                    refused.push(Refusal {
                        column: b.feed.table.primary_key.clone(),
                        rule: "repeats the key of an earlier row (set first_per_key to keep the first)".into(),
                        rows: folded,
                    });
                }
                let unmapped = stats
                    .unmapped
                    .iter()
                    .map(|((ci, code), rows)| {
                        let c = &b.columns[*ci];
                        let m = c
                            .rule
                            .map
                            .as_ref()
                            .expect("only mapped columns count codes");
                        UnmappedCode {
                            source_column: c.rule.described(),
                            column: c.rule.target.clone(),
                            map: m.name.clone(),
                            code: match identifier_value(code, true) {
                                Some(_) => "[redacted]".to_string(),
                                None => String::from_utf8_lossy(code).into_owned(),
                            },
                            rows: *rows,
                            outcome: match &m.unmapped {
                                Unmapped::Default(d) => format!("default '{d}'"),
                                Unmapped::Refuse => "refused".to_string(),
                            },
                        }
                    })
                    .collect();
                fc.feeds.push(FeedCheck {
                    feed: b.feed.number,
                    table: b.feed.table.name.clone(),
                    rows_fed: stats.rows_fed,
                    rows_folded: if b.feed.first_per_key { folded } else { 0 },
                    rows_refused: refused_rows + if b.feed.first_per_key { 0 } else { folded },
                    refused,
                    unmapped,
                });
            }
        }
        report.files.push(fc);
    }
    Ok(report)
}

/// Calls `each` with the body of a file in chunks of whole lines (about 4 MiB), their first
/// line number, and whether the chunk is the file's end without a final line break.
fn for_each_chunk(
    path: &Path,
    body_offset: u64,
    mut each: impl FnMut(&[u8], u64, bool) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path).map_err(IngestError::io(path))?;
    file.seek(std::io::SeekFrom::Start(body_offset))
        .map_err(IngestError::io(path))?;
    let mut carry: Vec<u8> = Vec::new();
    let mut line = 2u64;
    loop {
        let mut buf = std::mem::take(&mut carry);
        let n = (&mut file)
            .take(4 << 20)
            .read_to_end(&mut buf)
            .map_err(IngestError::io(path))?;
        let eof = n < (4 << 20);
        let cut = if eof {
            buf.len()
        } else {
            memchr::memrchr(b'\n', &buf).map_or(buf.len(), |p| p + 1)
        };
        carry = buf[cut..].to_vec();
        buf.truncate(cut);
        if !buf.is_empty() {
            each(&buf, line, eof && !buf.ends_with(b"\n"))?;
            line += memchr::memchr_iter(b'\n', &buf).count() as u64;
        }
        if eof {
            return Ok(());
        }
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Mapping {} (sha256 {}) is valid against the data dictionary.",
            self.mapping,
            &self.mapping_sha256[..12.min(self.mapping_sha256.len())]
        )?;
        for file in &self.files {
            writeln!(f)?;
            writeln!(
                f,
                "{} (source '{}'): {} rows",
                file.file, file.source, file.rows
            )?;
            if file.unused_columns.is_empty() {
                writeln!(f, "  unused columns: none")?;
            } else {
                writeln!(
                    f,
                    "  unused columns (scanned for identifiers, never stored): {}",
                    file.unused_columns.join(", ")
                )?;
            }
            if let Some(why) = &file.refused_whole {
                writeln!(f, "  REFUSED WHOLE: {why}")?;
                continue;
            }
            for feed in &file.feeds {
                write!(
                    f,
                    "  [[feed]] {} → {}: {} rows feed it",
                    feed.feed, feed.table, feed.rows_fed
                )?;
                if feed.rows_folded > 0 {
                    write!(
                        f,
                        ", {} later rows of a key dropped (first per key)",
                        feed.rows_folded
                    )?;
                }
                writeln!(f)?;
                let fed = (feed.rows_fed.saturating_sub(feed.rows_folded)).max(1);
                writeln!(
                    f,
                    "    would be refused: {} rows ({:.1}%)",
                    feed.rows_refused,
                    100.0 * feed.rows_refused as f64 / fed as f64
                )?;
                for r in &feed.refused {
                    if r.column.is_empty() {
                        writeln!(f, "      {:>8}  {}", r.rows, r.rule)?;
                    } else {
                        writeln!(f, "      {:>8}  {}: {}", r.rows, r.column, r.rule)?;
                    }
                }
                if feed.unmapped.is_empty() {
                    writeln!(f, "    unmapped codes: none")?;
                } else {
                    writeln!(f, "    unmapped codes:")?;
                    for u in &feed.unmapped {
                        writeln!(
                            f,
                            "      {:>8}  {} → {} (map '{}'): {} → {}",
                            u.rows, u.source_column, u.column, u.map, u.code, u.outcome
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::super::identifiers::IdentifierKind;
    use super::*;

    const HEADER: &str =
        "INCIDENT_NO,VICTIM_SEQ,VICTIM_KEY,INCIDENT_DATE,DISPOSITION,NARCAN,NARRATIVE";

    fn dict() -> &'static Dictionary {
        Dictionary::builtin().unwrap()
    }

    fn mapping(text: &str) -> Result<Mapping, MappingError> {
        Mapping::parse(Path::new("m.toml"), text, dict())
    }

    const GOOD: &str = r#"
        [maps.yes_no]
        codes = { Y = "true", N = "false" }
        refuse = true

        [maps.charge]
        codes = { POSS = "drug_possession", SALE = "drug_sale" }
        default = "other"

        [[source]]
        name = "incidents"
        files = ["police_*.csv"]

        [[feed]]
        source = "incidents"
        table = "overdose_events"
        first_per_key = true
        [feed.columns]
        event_id = { from = ["INCIDENT_NO", "VICTIM_SEQ"], strip = ",", prefix = "PD-" }
        person_key = "VICTIM_KEY"
        program_id = { value = "P001" }
        event_date = { from = "INCIDENT_DATE", date = "%m/%d/%Y" }
        source = { value = "police" }
        fatal = { value = "false" }
        naloxone_administered = { from = "NARCAN", map = "yes_no" }
        transported_to_ed = { value = "false" }
        age_band = { value = "unknown" }
        sex = { value = "unknown" }
        race_ethnicity = { value = "unknown" }

        [[feed]]
        source = "incidents"
        table = "arrests"
        when = { column = "DISPOSITION", in = ["POSS", "SALE", "WARRANT"] }
        [feed.columns]
        arrest_id = { from = "INCIDENT_NO", strip = ",", prefix = "A" }
        person_key = "VICTIM_KEY"
        arrest_date = { from = "INCIDENT_DATE", date = "%m/%d/%Y" }
        agency = { value = "municipal_police" }
        charge = { from = "DISPOSITION", map = "charge" }
    "#;

    fn header() -> Header {
        Header {
            fields: HEADER.split(',').map(String::from).collect(),
            body_offset: 0,
        }
    }

    /// The rows a chunk stores, in line order: each as its line and its values joined by
    /// commas (nothing for a null).
    fn stored(r: &ChunkResult) -> Vec<String> {
        use datafusion::arrow::util::display::array_value_to_string;
        let mut next = vec![0usize; r.buckets.len()];
        r.keys
            .iter()
            .zip(&r.order)
            .map(|((_, line), b)| {
                let b = *b as usize;
                let (batch, i) = (&r.buckets[b].batch, next[b]);
                next[b] += 1;
                let values: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c.as_ref(), i).unwrap())
                    .collect();
                format!("{line}: {}", values.join(","))
            })
            .collect()
    }

    /// Validates `body`, source lines from line 2, through feed `feed` of the mapping GOOD.
    fn mapped(feed: usize, body: &str) -> (Vec<String>, ChunkResult, FeedStats) {
        let m = mapping(GOOD).unwrap();
        let b = m.sources[0].feeds[feed]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        let rules = check_rules(b.feed.table);
        let mut stats = FeedStats::default();
        let r = b.validate_rows(
            &rules,
            body.as_bytes(),
            2,
            false,
            &mut Vec::new(),
            Some(&mut stats),
        );
        (stored(&r), r, stats)
    }

    #[test]
    fn rows_are_renamed_joined_cleaned_dated_and_mapped() {
        let (rows, r, _) = mapped(
            0,
            "\"1,204,377\",1,pkA,03/14/2025,POSS,Y,said hi\n\"1,204,377\",2,pkB,3/4/2025,,N,\n",
        );
        assert!(r.rejects.is_empty(), "{:?}", r.rejects);
        assert_eq!(
            rows,
            [
                "2: PD-1204377-1,pkA,P001,2025-03-14,police,false,true,false,unknown,unknown,unknown",
                "3: PD-1204377-2,pkB,P001,2025-03-04,police,false,false,false,unknown,unknown,unknown"
            ]
        );
        assert_eq!((r.rows_read, r.rows_rejected), (2, 0));
    }

    /// What the mapping parses itself (its maps' codes and defaults, its constants, the dates
    /// it reads) is stored, and refused, exactly as the same values written in the dictionary's
    /// form: every value of a mapped row is compared with the same row read as a dictionary
    /// line, dates at the plausible range's edges and leap days included.
    #[test]
    fn what_a_mapping_parses_is_stored_and_refused_as_the_dictionary_form_is() {
        use super::super::rows::validate_chunk;
        let body = "\"1,204,377\",1,pkA,03/14/2025,POSS,Y,said hi\n\
                    \"1,204,377\",2,pkB,3/4/2025,,N,\n\
                    9,1,pkC,02/29/2024,SALE,Y,\n\
                    9,2,pkD,01/01/1900,,N,\n\
                    9,3,pkE,12/31/2099,,N,\n\
                    9,4,pkF,1/1/2017,WARRANT,Y,\n";
        for feed in [0, 1] {
            let (rows, r, _) = mapped(feed, body);
            let m = mapping(GOOD).unwrap();
            let table = m.sources[0].feeds[feed].table;
            let rules = check_rules(table);
            // The mapped rows as dictionary lines: the mapped values, line for line.
            let b = m.sources[0].feeds[feed]
                .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
                .unwrap();
            let mut lines = String::new();
            let mut numbers = Vec::new();
            let mut values = Vec::new();
            for (i, line) in body.lines().enumerate() {
                let (mut scan, mut scratch, mut ranges) =
                    (LineScan::default(), Vec::new(), Vec::new());
                scan.scan(line.as_bytes());
                let base = split_fields(line.as_bytes(), &scan, &mut scratch, &mut ranges).unwrap();
                if let Some((fi, test)) = b.when
                    && !test.holds(&base[ranges[fi].0..ranges[fi].1])
                {
                    continue;
                }
                let mut row = Vec::new();
                for (ci, c) in b.columns.iter().enumerate() {
                    values.clear();
                    // A parsed code or boolean may be left unwritten: its text is the
                    // column's value of that code.
                    let col = &table.columns[ci];
                    match b.value(c, ci, base, &ranges, &mut values, &mut Vec::new(), None) {
                        Ok(Some(Value::Code(k))) if values.is_empty() => {
                            row.push(col.values[k as usize].clone())
                        }
                        Ok(Some(Value::Bool(x))) if values.is_empty() => row.push(x.to_string()),
                        Ok(_) => row.push(String::from_utf8(values.clone()).unwrap()),
                        Err(_) => row.push("NOT-MAPPED".to_string()),
                    }
                }
                if row.iter().any(|v| v == "NOT-MAPPED") {
                    continue;
                }
                lines.push_str(&row.join(","));
                lines.push('\n');
                numbers.push(i as u64 + 2);
            }
            assert!(numbers.len() >= 3, "feed {feed}: {numbers:?}");
            let d = validate_chunk(&rules, lines.as_bytes(), 1, false);
            assert!(d.problem.is_none(), "{:?}", d.problem);
            // Line k of the dictionary form is source line numbers[k - 1].
            let renumbered: Vec<String> = stored(&d)
                .into_iter()
                .map(|row| {
                    let (k, rest) = row.split_once(": ").unwrap();
                    format!("{}: {rest}", numbers[k.parse::<usize>().unwrap() - 1])
                })
                .collect();
            assert_eq!(rows, renumbered, "feed {feed}");
            let reasons = |r: &ChunkResult| -> Vec<(String, String)> {
                r.rejects
                    .iter()
                    .map(|j| (j.column.clone(), j.reason.clone()))
                    .collect()
            };
            assert_eq!(reasons(&r), reasons(&d), "feed {feed}");
            // The range's edges were met: a date before 2000 is refused by both.
            assert!(
                feed == 1 || reasons(&r).iter().any(|(c, _)| c == "event_date"),
                "{:?}",
                r.rejects
            );
        }
    }

    /// A date the mapping writes as `YYYY-MM-DD` skips the second identifier scan: no such
    /// date, of any year from 0 to 9999, is shaped like a direct identifier. Each is read
    /// back as the same day, and the day the mapping stores is chrono's.
    #[test]
    fn no_date_written_yyyy_mm_dd_is_taken_for_an_identifier() {
        let mut d = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        let last = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        let mut written = Vec::with_capacity(10);
        loop {
            written.clear();
            assert!(push_iso_date(&mut written, CivilDate::of(d)));
            assert_eq!(identifier_value(&written, true), None, "{d}");
            let days = crate::dictionary::epoch_days(d);
            assert_eq!(super::super::rows::parse_date(&written), Some(days), "{d}");
            assert_eq!(CivilDate::of(d).epoch_days(), days, "{d}");
            if d == last {
                break;
            }
            d = d.succ_opt().unwrap();
        }
        written.clear();
        assert!(!push_iso_date(
            &mut written,
            CivilDate::of(last.succ_opt().unwrap())
        ));
    }

    /// A map of many codes is looked up by hash, a few one by one: both find every code and
    /// only those.
    #[test]
    fn a_map_finds_each_of_its_codes_however_many_it_has() {
        for n in [1, 2, FEW_CODES, FEW_CODES + 1, 200] {
            let codes: BTreeMap<String, String> = (0..n)
                .map(|i| (format!("C{i:0>9}"), format!("v{i}")))
                .collect();
            let m = ValueMap::new("m", &codes, Unmapped::Refuse);
            assert_eq!(
                matches!(m.lookup, CodeLookup::Few(_)),
                n <= FEW_CODES,
                "{n}"
            );
            for (code, value) in &codes {
                let i = m.find(code.as_bytes()).unwrap();
                assert_eq!(&m.values[i], value);
            }
            for other in [
                "",
                "C",
                "C00000000",
                "C0000000000",
                "c000000000",
                "C000000000 ",
            ] {
                assert_eq!(m.find(other.as_bytes()), None, "{n}: {other:?}");
            }
        }
        // Codes of one byte each, by the byte's table: every byte is tried, alone and doubled.
        for letters in ["YN", "MFU", "WBHAX\u{7f}", "\u{1}0123456789abcdef"] {
            let codes: BTreeMap<String, String> = letters
                .chars()
                .map(|c| (c.to_string(), format!("v{c}")))
                .collect();
            let m = ValueMap::new("m", &codes, Unmapped::Refuse);
            assert!(matches!(m.lookup, CodeLookup::Bytes(_)), "{letters}");
            for b in 0..=255u8 {
                let want = codes.get(&(b as char).to_string()).filter(|_| b < 128);
                assert_eq!(m.find(&[b]).map(|i| &m.values[i]), want, "{letters}: {b}");
                assert_eq!(m.find(&[b, b]), None, "{letters}: {b}");
            }
            assert_eq!(m.find(b""), None);
        }
    }

    #[test]
    fn a_refusing_map_and_a_bad_date_reject_the_row_and_keep_its_line() {
        let (rows, r, stats) = mapped(
            0,
            "1,1,pkA,2025-03-14,POSS,MAYBE,\n7,1,pkC,01/02/2025,,Y,\n",
        );
        // The refused row is line 2's; the next row keeps its own line.
        assert_eq!(
            rows,
            ["3: PD-7-1,pkC,P001,2025-01-02,police,false,true,false,unknown,unknown,unknown"]
        );
        assert_eq!((r.rows_read, r.rows_rejected), (2, 1));
        let columns: Vec<&str> = r.rejects.iter().map(|j| j.column.as_str()).collect();
        assert_eq!(columns, ["event_date", "naloxone_administered"]);
        assert!(r.rejects.iter().all(|j| j.line == 2));
        assert!(
            !r.rejects.iter().any(|j| j.reason.contains("MAYBE")),
            "{:?}",
            r.rejects
        );
        assert!(r.rejects[1].reason.contains("'AAAAA'"), "{:?}", r.rejects);
        assert_eq!(stats.unmapped.values().sum::<u64>(), 1);
        assert_eq!(stats.refused.values().sum::<u64>(), 2);
        assert!(stats.dictionary_refused.is_empty());
    }

    #[test]
    fn a_mapped_row_is_held_to_the_dictionarys_rules_and_counted_by_the_first_it_breaks() {
        // A person key of digits only is a raw number, whatever the mapping made of it.
        let (rows, r, stats) = mapped(0, "1,1,123456,01/02/2025,,Y,\n2,1,pkB,01/02/2025,,Y,\n");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].starts_with("3: PD-2-1,pkB,"), "{rows:?}");
        assert_eq!((r.rows_read, r.rows_rejected), (2, 1));
        assert_eq!(r.rejects.len(), 1);
        assert_eq!(
            (r.rejects[0].line, r.rejects[0].column.as_str()),
            (2, "person_key")
        );
        assert!(!r.rejects[0].reason.contains("123456"), "{:?}", r.rejects);
        assert_eq!(
            stats
                .dictionary_refused
                .get("fails the dictionary's rule for person_key"),
            Some(&1)
        );
    }

    #[test]
    fn a_feed_takes_only_the_rows_its_condition_holds_for_and_defaults_unlisted_codes() {
        let (rows, r, stats) = mapped(
            1,
            "11,1,pkA,01/02/2025,POSS,Y,\n12,1,pkB,01/02/2025,,Y,\n13,1,pkC,01/02/2025,WARRANT,N,\n",
        );
        assert!(r.rejects.is_empty());
        assert_eq!(
            rows,
            [
                "2: A11,pkA,2025-01-02,municipal_police,drug_possession",
                "4: A13,pkC,2025-01-02,municipal_police,other"
            ]
        );
        // A line the feed does not take is not one of its rows.
        assert_eq!(r.rows_read, 2);
        assert_eq!(stats.rows_fed, 2);
        assert_eq!(stats.unmapped.get(&(4, b"WARRANT".to_vec())), Some(&1));
    }

    #[test]
    fn an_unused_column_is_scanned_for_identifiers() {
        let (_, r, _) = mapped(0, "1,1,pkA,01/02/2025,,Y,ssn 123-45-6789\n");
        assert!(
            matches!(&r.problem, Some(FileProblem::Identifier { line: 2, column: Some(c), .. }) if c == "NARRATIVE"),
            "{:?}",
            r.problem
        );
    }

    #[test]
    fn a_value_that_stripping_separators_makes_an_identifier_refuses_the_file() {
        // In the source, "123,456,789" is three numbers; stripped of its commas, the event id
        // PD-123456789-1 holds nine digits in a row, written as an SSN is.
        assert_eq!(identifier_value(b"123,456,789", true), None);
        let (rows, r, _) = mapped(
            0,
            "7,1,pkA,01/02/2025,,Y,\n\"123,456,789\",1,pkB,01/02/2025,,Y,\n",
        );
        assert!(
            matches!(
                &r.problem,
                Some(FileProblem::Identifier {
                    line: 3,
                    column: Some(c),
                    kind: IdentifierKind::SocialSecurityNumber,
                }) if c == "event_id"
            ),
            "{:?}",
            r.problem
        );
        // A refused chunk hands on nothing but its problem.
        assert!(rows.is_empty() && r.rejects.is_empty() && r.rows_read == 0);
    }

    #[test]
    fn a_source_lines_identifier_is_named_before_a_mapped_values_on_an_earlier_line() {
        // The raw lines of a chunk are scanned before any mapped value: the refusal names the
        // line the source itself holds an identifier on.
        let (_, r, _) = mapped(
            0,
            "\"123,456,789\",1,pkA,01/02/2025,,Y,\n7,1,pkB,01/02/2025,,Y,call 617-555-0100\n",
        );
        assert!(
            matches!(&r.problem, Some(FileProblem::Identifier { line: 3, column: Some(c), .. }) if c == "NARRATIVE"),
            "{:?}",
            r.problem
        );
    }

    #[test]
    fn a_mapped_value_with_an_at_sign_is_tested_as_an_email() {
        // The source line's fields are scanned with the email test too; a mapped value made
        // of two of them is tested again, whole: `jane` + `@` + `example.org`.
        let text = GOOD.replacen(
            "person_key = \"VICTIM_KEY\"\n        program_id",
            "person_key = { from = [\"VICTIM_KEY\", \"NARRATIVE\"], join = \"@\" }\n        program_id",
            1,
        );
        assert_ne!(text, GOOD);
        let m = mapping(&text).unwrap();
        let b = m.sources[0].feeds[0]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        let rules = check_rules(b.feed.table);
        let body = "1,1,jane,01/02/2025,,Y,example.org\n";
        let r = b.validate_chunk(&rules, body.as_bytes(), 2, false, &mut Vec::new());
        assert!(
            matches!(
                &r.problem,
                Some(FileProblem::Identifier {
                    line: 2,
                    column: Some(c),
                    kind: IdentifierKind::Email,
                }) if c == "person_key"
            ),
            "{:?}",
            r.problem
        );
    }

    #[test]
    fn plain_date_layouts_are_recognised_and_others_left_to_chrono() {
        let plain = |f: &str| PlainDate::of(f);
        assert_eq!(
            plain("%m/%d/%Y"),
            Some(PlainDate {
                order: DateOrder::MonthDayYear,
                separator: b'/'
            })
        );
        assert_eq!(
            plain("%d.%m.%Y").map(|p| p.order),
            Some(DateOrder::DayMonthYear)
        );
        assert_eq!(
            plain("%Y-%m-%d").map(|p| p.order),
            Some(DateOrder::YearMonthDay)
        );
        for other in [
            "%m/%d/%y",
            "%m/%d-%Y",
            "%d %m %Y",
            "%b %d %Y",
            "%m/%d/%Y ",
            "%Y%m%d",
            "%m:%d:%Y",
            "%e/%m/%Y",
        ] {
            assert_eq!(plain(other), None, "{other}");
        }
        let mdy = plain("%m/%d/%Y").unwrap();
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).map(CivilDate::of);
        assert_eq!(mdy.read(b"3/4/2025"), Some(date(2025, 3, 4)));
        assert_eq!(mdy.read(b"12/31/1999"), Some(date(1999, 12, 31)));
        assert_eq!(mdy.read(b"02/30/2025"), Some(None));
        assert_eq!(mdy.read(b"13/01/2025"), Some(None));
        // Shapes it does not read are chrono's.
        for other in [
            " 3/4/2025",
            "3/4/25",
            "3/4/+2025",
            "03/14/2025 ",
            "003/1/2025",
            "",
        ] {
            assert_eq!(mdy.read(other.as_bytes()), None, "{other:?}");
        }
    }

    #[test]
    fn plain_date_layouts_read_exactly_what_chrono_reads() {
        let numbers = [
            "", "0", "1", "2", "00", "01", "09", "10", "12", "13", "29", "30", "31", "32", "001",
            "0000", "2023", "2024", "9999", "20255", "25", "+1", "-1", "+2025", "-2025", " 1",
            "1 ", " 2025", "2025 ", "1a", "\u{ff11}", "\u{a0}3",
        ];
        let formats = [
            "%m/%d/%Y", "%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y", "%m-%d-%Y", "%Y/%m/%d", "%Y.%m.%d",
        ];
        for format in formats {
            let items = date_items(format).unwrap();
            let rule = DateRule {
                format: format.to_string(),
                items: items.clone(),
                plain: PlainDate::of(format),
            };
            let own = format.as_bytes()[2] as char;
            let other = if own == '/' { '-' } else { '/' };
            let mut read = 0;
            for a in numbers {
                for b in numbers {
                    for c in numbers {
                        for sep in [own, other] {
                            let v = format!("{a}{sep}{b}{sep}{c}");
                            let expected = parse_with(&items, &v).map(CivilDate::of);
                            assert_eq!(rule.read(v.as_bytes()), expected, "{format}: {v:?}");
                            read += usize::from(expected.is_some());
                        }
                    }
                }
            }
            // Valid dates were among them, and every day of the years the ingest reads is.
            assert!(read > 100, "{format}: {read}");
            let mut d = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap();
            let short = format.replace("%m", "%-m").replace("%d", "%-d");
            while d.year() < 2032 {
                for written in [d.format(format).to_string(), d.format(&short).to_string()] {
                    assert_eq!(
                        rule.read(written.as_bytes()),
                        Some(CivilDate::of(d)),
                        "{format}: {written}"
                    );
                }
                d = d.succ_opt().unwrap();
            }
        }
        // Calendar edges and stray spaces, each as chrono decides.
        let items = date_items("%m/%d/%Y").unwrap();
        let rule = DateRule {
            format: "%m/%d/%Y".into(),
            items: items.clone(),
            plain: PlainDate::of("%m/%d/%Y"),
        };
        for v in [
            "02/29/2024",
            "02/29/2023",
            "02/29/1900",
            "02/29/2000",
            "2/30/2025",
            "04/31/2025",
            "4/30/2025",
            "12/31/9999",
            "01/01/0000",
            "03/ 14/2025",
            "03 /14/2025",
            " 03/14/2025",
            "03/14/2025 ",
            "3/14/25",
            "03/14/02025",
            "03/14/2025/",
            "/03/14/2025",
            "03//2025",
        ] {
            assert_eq!(
                rule.read(v.as_bytes()),
                parse_with(&items, v).map(CivilDate::of),
                "{v:?}"
            );
        }
    }

    #[test]
    fn file_patterns_recognise_sources() {
        let m = mapping(GOOD).unwrap();
        assert!(m.source_of(Path::new("/x/POLICE_2025-01.csv")).is_some());
        assert!(m.source_of(Path::new("/x/overdose_events.csv")).is_none());
        assert!(glob_matches(b"a*b?c", b"axxbyc"));
        assert!(!glob_matches(b"a*b?c", b"axxbc"));
    }

    fn error_of(from: &str, to: &str) -> String {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "{from}");
        mapping(&text).unwrap_err().to_string()
    }

    #[test]
    fn a_bad_mapping_is_refused_naming_the_section_and_key() {
        let e = error_of("table = \"arrests\"", "table = \"arrest\"");
        assert!(
            e.contains("m.toml: [[feed]] 2 (incidents → arrest): key `table`"),
            "{e}"
        );
        let e = error_of("person_key = \"VICTIM_KEY\"", "person = \"VICTIM_KEY\"");
        assert!(
            e.contains("[[feed]] 1") && e.contains("key `columns.person`"),
            "{e}"
        );
        let e = error_of("N = \"false\"", "N = \"no\"");
        assert!(
            e.contains("[maps.yes_no]")
                && e.contains("'no' is not a value of naloxone_administered"),
            "{e}"
        );
        let e = error_of("SALE = \"drug_sale\"", "SALE = \"dealing\"");
        assert!(
            e.contains("[maps.charge]") && e.contains("'dealing'"),
            "{e}"
        );
        let e = error_of("date = \"%m/%d/%Y\"", "date = \"%m/%Q\"");
        assert!(
            e.contains("key `columns.event_date`") && e.contains("not a date format"),
            "{e}"
        );
        let e = error_of("date = \"%m/%d/%Y\"", "date = \"%H:%M\"");
        assert!(e.contains("key `columns.event_date`"), "{e}");
        let e = error_of("sex = { value = \"unknown\" }", "");
        assert!(e.contains("key `columns.sex` is missing"), "{e}");
        let e = error_of("refuse = true", "");
        assert!(
            e.contains("[maps.yes_no]") && e.contains("refuse = true"),
            "{e}"
        );
        let e = error_of(
            "source = { value = \"police\" }",
            "source = { value = \"cops\" }",
        );
        assert!(
            e.contains("key `columns.source`") && e.contains("'cops'"),
            "{e}"
        );
        let e = error_of("first_per_key = true", "first_per_key = true\nbogus = 1");
        assert!(e.contains("m.toml, line") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn a_missing_source_column_names_the_file_feed_and_key() {
        let m = mapping(GOOD).unwrap();
        let mut h = header();
        h.fields[2] = "VICTIM".into();
        let e = m.sources[0].feeds[0]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &h)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("police_1.csv: the header has no column 'VICTIM_KEY'")
                && e.contains("key `columns.person_key`"),
            "{e}"
        );
        h.fields[2] = "DOB".into();
        let e = m.sources[0].feeds[0]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &h)
            .unwrap_err();
        assert!(matches!(e, IngestError::DirectIdentifier { .. }), "{e}");
    }

    /// Which mapped values skip the second identifier scan: copies of one source field as
    /// they are and values the mapping fixes (constants, a map's values) do; a stripped and
    /// joined id and a rewritten date do not.
    #[test]
    fn only_copies_and_fixed_values_skip_the_second_identifier_scan() {
        let m = mapping(GOOD).unwrap();
        let b = m.sources[0].feeds[0]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        let scanned = |target: &str| {
            b.columns
                .iter()
                .find(|c| c.rule.target == target)
                .unwrap()
                .scanned
        };
        assert!(!scanned("event_id"), "stripped, joined and prefixed");
        assert!(scanned("person_key"), "a copy as it is");
        assert!(scanned("program_id"), "a constant");
        assert!(!scanned("event_date"), "a rewritten date");
        assert!(scanned("naloxone_administered"), "a map's values");
        let arrests = m.sources[0].feeds[1]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        let arrest_id = arrests
            .columns
            .iter()
            .find(|c| c.rule.target == "arrest_id")
            .unwrap();
        assert!(!arrest_id.scanned, "a prefixed copy");
    }

    /// A constant shaped like a phone number is not a source field, so nothing scanned it
    /// before: the mapped value is scanned and refuses the file, naming the column.
    #[test]
    fn a_constant_shaped_like_a_phone_number_is_scanned_and_refuses_the_file() {
        let text = GOOD.replace(
            r#"program_id = { value = "P001" }"#,
            r#"program_id = { value = "617-555-0100" }"#,
        );
        let m = mapping(&text).unwrap();
        let b = m.sources[0].feeds[0]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        assert!(
            !b.columns
                .iter()
                .find(|c| c.rule.target == "program_id")
                .unwrap()
                .scanned
        );
        let rules = check_rules(b.feed.table);
        let r = b.validate_rows(
            &rules,
            b"\"1,204\",1,pk-0001aaaa,03/01/2025,POSS,Y,none\n",
            2,
            false,
            &mut Vec::new(),
            None,
        );
        match r.problem {
            Some(FileProblem::Identifier { line, column, kind }) => {
                assert_eq!(line, 2);
                assert_eq!(column.as_deref(), Some("program_id"));
                assert_eq!(kind, IdentifierKind::Phone);
            }
            other => panic!("expected a phone number in program_id, got {other:?}"),
        }
    }
}
