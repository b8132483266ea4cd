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
//! by field (columns no feed uses included), then rewritten line for line into the target
//! table's dictionary form, which the row validation, key checks, quarantine and Parquet
//! writing of a dictionary file then take as they are. A line that does not feed the table
//! becomes a blank line, so every line number stays the source line's.

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
    ChunkResult, FileProblem, LineScan, MAX_LINE_BYTES, Reject, RowRules, SplitError,
    identifier_in_raw, redacted, split_fields, validate_chunk,
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
    codes: HashMap<Box<[u8]>, String, ahash::RandomState>,
    unmapped: Unmapped,
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
    date: Option<(String, Vec<Item<'static>>)>,
    prefix: String,
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
            let codes = m
                .codes
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec().into_boxed_slice(), v.clone()))
                .collect();
            maps.insert(
                name.clone(),
                std::sync::Arc::new(ValueMap {
                    name: name.clone(),
                    codes,
                    unmapped,
                }),
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
                        let targets = m.codes.values().chain(match &m.unmapped {
                            Unmapped::Default(d) => Some(d),
                            Unmapped::Refuse => None,
                        });
                        for t in targets {
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
                        Some((
                            fmt.clone(),
                            date_items(fmt)
                                .map_err(|why| at(format!("`date = \"{fmt}\"`: {why}")))?,
                        ))
                    }
                };
                if let Input::Constant(c) = &input
                    && let Err(why) = check_value(col, c)
                {
                    return Err(at(format!("the constant '{c}' {why}")));
                }
                columns.push(ColumnRule {
                    target: col.name.clone(),
                    input,
                    strip: strip.into_bytes(),
                    map,
                    date,
                    prefix: match &rule.value {
                        Some(_) => String::new(),
                        None => rule.prefix.clone().unwrap_or_default(),
                    },
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
}

/// What mapping one chunk of source lines found, beside the rewritten lines.
#[derive(Debug, Default)]
pub struct MappedChunk {
    /// Rows that feed the table and were refused by a mapping rule or their line's shape.
    pub rows_rejected: u64,
    pub rejects: Vec<Reject>,
    pub problem: Option<FileProblem>,
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
            columns.push(BoundColumn { rule, fields });
        }
        Ok(BoundFeed {
            feed: self,
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

    /// Maps one chunk of source lines into the target table's dictionary form, one output
    /// line per source line (blank when the line does not feed the table or a mapping rule
    /// refuses it), and validates that as a dictionary chunk. `out` is the caller's buffer,
    /// reused across chunks.
    pub fn validate_chunk(
        &self,
        rules: &RowRules,
        chunk: &[u8],
        first_line: u64,
        last_unterminated: bool,
        out: &mut Vec<u8>,
    ) -> ChunkResult {
        let mapped = self.map_chunk(chunk, first_line, last_unterminated, out, None);
        if let Some(problem) = mapped.problem {
            return ChunkResult {
                problem: Some(problem),
                ..ChunkResult::default()
            };
        }
        // Every output line ends with a line break: a cut-off source line was caught above.
        let mut result = validate_chunk(rules, out, first_line, false);
        result.rows_read += mapped.rows_rejected;
        result.rows_rejected += mapped.rows_rejected;
        result.rejects.extend(mapped.rejects);
        result
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

    /// The mapping-stage work of [`Self::validate_chunk`]; `stats` collects `mapping check`'s
    /// counts.
    pub fn map_chunk(
        &self,
        chunk: &[u8],
        first_line: u64,
        last_unterminated: bool,
        out: &mut Vec<u8>,
        mut stats: Option<&mut FeedStats>,
    ) -> MappedChunk {
        let mut result = MappedChunk::default();
        out.clear();
        out.reserve(chunk.len());
        if let Err(e) = std::str::from_utf8(chunk) {
            let at = e.valid_up_to();
            let line = first_line + memchr::memchr_iter(b'\n', &chunk[..at]).count() as u64;
            result.problem = Some(FileProblem::Encoding {
                line,
                byte: chunk[at],
            });
            return result;
        }
        let n_fields = self.header.len();
        let mut ranges = Vec::with_capacity(n_fields);
        let mut scratch = Vec::new();
        let mut scan = LineScan::default();
        let mut value = Vec::new();
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
                out.push(b'\n');
                continue;
            }
            let cut_off = !terminated && last_unterminated;
            scan.scan(line);
            let has_at = scan.has_at;
            let split = split_fields(line, &scan, &mut scratch, &mut ranges);
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
                Err(_) => identifier_in_raw(line, has_at, line_here),
            };
            if let Some(problem) = identifier {
                result.problem = Some(problem);
                return result;
            }
            let base = match split {
                Ok(base) => base,
                Err(_) if cut_off => {
                    result.problem = Some(FileProblem::Truncated {
                        line: line_here,
                        fields: ranges.len(),
                        expected: n_fields,
                    });
                    return result;
                }
                Err(SplitError::OpenQuote) => {
                    result.problem = Some(FileProblem::OpenQuote { line: line_here });
                    return result;
                }
                Err(e) => {
                    result.rows_rejected += 1;
                    result.rejects.push(Reject {
                        line: line_here,
                        column: String::new(),
                        reason: e.reason().to_string(),
                    });
                    out.push(b'\n');
                    continue;
                }
            };
            if ranges.len() != n_fields {
                if cut_off && ranges.len() < n_fields {
                    result.problem = Some(FileProblem::Truncated {
                        line: line_here,
                        fields: ranges.len(),
                        expected: n_fields,
                    });
                    return result;
                }
                result.rows_rejected += 1;
                result.rejects.push(Reject {
                    line: line_here,
                    column: String::new(),
                    reason: format!("has {} fields, the header has {n_fields}", ranges.len()),
                });
                out.push(b'\n');
                continue;
            }
            if let Some((fi, test)) = self.when {
                let (s, e) = ranges[fi];
                if !test.holds(&base[s..e]) {
                    out.push(b'\n');
                    continue;
                }
            }
            if let Some(st) = stats.as_deref_mut() {
                st.rows_fed += 1;
            }
            row_rejects.clear();
            let start = out.len();
            for (ci, c) in self.columns.iter().enumerate() {
                if ci > 0 {
                    out.push(b',');
                }
                match self.value(c, ci, base, &ranges, &mut value, stats.as_deref_mut()) {
                    Ok(()) => push_csv(out, &value),
                    Err(reason) => {
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
                out.truncate(start);
                result.rows_rejected += 1;
                result.rejects.append(&mut row_rejects);
            }
            out.push(b'\n');
        }
        result
    }

    /// One dictionary column's value of a source row, into `buf`; the reason, with the value
    /// redacted, when a rule refuses it.
    fn value(
        &self,
        c: &BoundColumn,
        ci: usize,
        base: &[u8],
        ranges: &[(usize, usize)],
        buf: &mut Vec<u8>,
        stats: Option<&mut FeedStats>,
    ) -> Result<(), String> {
        buf.clear();
        let rule = c.rule;
        match &rule.input {
            Input::Constant(v) => {
                buf.extend_from_slice(v.as_bytes());
                return Ok(());
            }
            Input::Empty => return Ok(()),
            Input::Columns { join, .. } => {
                for (k, fi) in c.fields.iter().enumerate() {
                    let (s, e) = ranges[*fi];
                    if s == e {
                        // A key made of parts is only whole with every part.
                        buf.clear();
                        return Ok(());
                    }
                    if k > 0 {
                        buf.extend_from_slice(join.as_bytes());
                    }
                    if rule.strip.is_empty() {
                        buf.extend_from_slice(&base[s..e]);
                    } else {
                        buf.extend(base[s..e].iter().filter(|b| !rule.strip.contains(b)));
                    }
                }
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(m) = &rule.map {
            match m.codes.get(buf.as_slice()) {
                Some(v) => {
                    buf.clear();
                    buf.extend_from_slice(v.as_bytes());
                }
                None => {
                    if let Some(st) = stats {
                        *st.unmapped.entry((ci, buf.clone())).or_default() += 1;
                    }
                    match &m.unmapped {
                        Unmapped::Default(d) => {
                            buf.clear();
                            buf.extend_from_slice(d.as_bytes());
                        }
                        Unmapped::Refuse => {
                            return Err(format!(
                                "{} is not a code of map '{}', which refuses unlisted codes",
                                redacted(buf.as_slice()),
                                m.name
                            ));
                        }
                    }
                }
            }
        } else if let Some((fmt, items)) = &rule.date {
            // The chunk was checked as UTF-8, and the separators stripped are ASCII.
            let text = std::str::from_utf8(buf.as_slice()).unwrap_or("");
            match parse_with(items, text) {
                Some(d) => {
                    buf.clear();
                    push_iso_date(buf, d);
                }
                None => {
                    return Err(format!(
                        "{} is not a date written {fmt}",
                        redacted(buf.as_slice())
                    ));
                }
            }
        }
        if !rule.prefix.is_empty() {
            buf.splice(0..0, rule.prefix.bytes());
        }
        Ok(())
    }
}

/// The rule a refused value broke, as `mapping check` counts it.
fn refusal_kind(rule: &ColumnRule) -> String {
    match (&rule.map, &rule.date) {
        (Some(m), _) => format!("code not in map '{}' (refuse)", m.name),
        (None, Some((fmt, _))) => format!("not a date written {fmt}"),
        _ => "refused".to_string(),
    }
}

/// Appends a date as `YYYY-MM-DD`, the dictionary's form, without a formatter per value. A
/// year outside 0 to 9999 is written as it is, which the row validation then refuses.
fn push_iso_date(buf: &mut Vec<u8>, d: NaiveDate) {
    use chrono::Datelike;
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        buf.extend_from_slice(format!("{y}-{m:02}-{day:02}").as_bytes());
        return;
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
}

/// Appends a value as a CSV field, quoted when it holds a comma or a quote or starts or ends
/// with a space (the row splitter trims unquoted fields).
fn push_csv(out: &mut Vec<u8>, v: &[u8]) {
    let plain =
        !v.iter().any(|b| *b == b',' || *b == b'"') && !v.starts_with(b" ") && !v.ends_with(b" ");
    if plain {
        out.extend_from_slice(v);
        return;
    }
    out.push(b'"');
    for b in v {
        if *b == b'"' {
            out.push(b'"');
        }
        out.push(*b);
    }
    out.push(b'"');
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
/// has seen, the repeats folded by "first row per key", the dictionary-rule refusals per
/// column, and the rows refused.
type FeedTally = (FeedStats, HashSet<u128>, u64, BTreeMap<String, u64>, u64);

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
        let defaults = super::IngestOptions::default();
        let mut states: Vec<FeedTally> = bound.iter().map(|_| Default::default()).collect();
        let rules: Vec<RowRules> = bound
            .iter()
            .map(|b| {
                let table = b.feed.table;
                RowRules::new(
                    table,
                    (0..table.columns.len()).collect(),
                    table.columns.len(),
                    None,
                    false,
                    defaults.min_date,
                    defaults.max_date,
                )
            })
            .collect();
        let mut out = Vec::new();
        for_each_chunk(path, header.body_offset, |chunk, first_line, last| {
            fc.rows += chunk
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')))
                .count() as u64;
            for (k, b) in bound.iter().enumerate() {
                let (stats, keys, folded, dict_refused, refused_rows) = &mut states[k];
                let mapped = b.map_chunk(chunk, first_line, last, &mut out, Some(stats));
                if let Some(p) = mapped.problem {
                    return Err(IngestError::from_problem(path, p));
                }
                *refused_rows += mapped.rows_rejected;
                let r = validate_chunk(&rules[k], &out, first_line, false);
                if let Some(p) = r.problem {
                    return Err(IngestError::from_problem(path, p));
                }
                *refused_rows += r.rows_rejected;
                let mut seen_lines = BTreeSet::new();
                for rej in &r.rejects {
                    if seen_lines.insert(rej.line) {
                        let rule = if rej.column.is_empty() {
                            "the row's shape".to_string()
                        } else {
                            format!("fails the dictionary's rule for {}", rej.column)
                        };
                        *dict_refused.entry(rule).or_default() += 1;
                    }
                }
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
            for (b, (stats, _, folded, dict_refused, refused_rows)) in bound.iter().zip(states) {
                let mut refused: Vec<Refusal> = stats
                    .refused
                    .iter()
                    .map(|((column, rule), rows)| Refusal {
                        column: column.clone(),
                        rule: rule.clone(),
                        rows: *rows,
                    })
                    .collect();
                refused.extend(dict_refused.into_iter().map(|(rule, rows)| Refusal {
                    column: String::new(),
                    rule,
                    rows,
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

    fn mapped(feed: usize, body: &str) -> (String, MappedChunk, FeedStats) {
        let m = mapping(GOOD).unwrap();
        let b = m.sources[0].feeds[feed]
            .bind(Path::new("m.toml"), Path::new("police_1.csv"), &header())
            .unwrap();
        let mut out = Vec::new();
        let mut stats = FeedStats::default();
        let r = b.map_chunk(body.as_bytes(), 2, false, &mut out, Some(&mut stats));
        (String::from_utf8(out).unwrap(), r, stats)
    }

    #[test]
    fn rows_are_renamed_joined_cleaned_dated_and_mapped() {
        let (out, r, _) = mapped(
            0,
            "\"1,204,377\",1,pkA,03/14/2025,POSS,Y,said hi\n\"1,204,377\",2,pkB,3/4/2025,,N,\n",
        );
        assert!(r.rejects.is_empty(), "{:?}", r.rejects);
        assert_eq!(
            out,
            "PD-1204377-1,pkA,P001,2025-03-14,police,false,true,false,unknown,unknown,unknown\n\
             PD-1204377-2,pkB,P001,2025-03-04,police,false,false,false,unknown,unknown,unknown\n"
        );
    }

    #[test]
    fn a_refusing_map_and_a_bad_date_reject_the_row_and_keep_its_line() {
        let (out, r, stats) = mapped(
            0,
            "1,1,pkA,2025-03-14,POSS,MAYBE,\n7,1,pkC,01/02/2025,,Y,\n",
        );
        // The refused line stays as a blank line: the next line keeps its number.
        assert!(out.starts_with("\nPD-7-1,pkC,P001,2025-01-02,"), "{out}");
        assert_eq!(r.rows_rejected, 1);
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
    }

    #[test]
    fn a_feed_takes_only_the_rows_its_condition_holds_for_and_defaults_unlisted_codes() {
        let (out, r, stats) = mapped(
            1,
            "11,1,pkA,01/02/2025,POSS,Y,\n12,1,pkB,01/02/2025,,Y,\n13,1,pkC,01/02/2025,WARRANT,N,\n",
        );
        assert!(r.rejects.is_empty());
        assert_eq!(
            out,
            "A11,pkA,2025-01-02,municipal_police,drug_possession\n\nA13,pkC,2025-01-02,municipal_police,other\n"
        );
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
}
