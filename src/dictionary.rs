//! The data dictionary: one TOML file per table under `data-dictionary/`, embedded in the binary.
//!
//! It is the single source of truth that ingest validates against, that gives the Parquet and
//! DataFusion schemas, and that `outreach dictionary` renders as the committed
//! `data-dictionary/README.md`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

/// The embedded dictionary sources, in load order: `programs` first, since every person table
/// refers to it.
const SOURCES: [(&str, &str); 6] = [
    (
        "programs.toml",
        include_str!("../data-dictionary/programs.toml"),
    ),
    (
        "overdose_events.toml",
        include_str!("../data-dictionary/overdose_events.toml"),
    ),
    (
        "outreach_attempts.toml",
        include_str!("../data-dictionary/outreach_attempts.toml"),
    ),
    (
        "referrals.toml",
        include_str!("../data-dictionary/referrals.toml"),
    ),
    (
        "service_linkages.toml",
        include_str!("../data-dictionary/service_linkages.toml"),
    ),
    (
        "arrests.toml",
        include_str!("../data-dictionary/arrests.toml"),
    ),
];

/// Longest value an `id` column accepts when the dictionary sets no `max_len`.
pub const DEFAULT_ID_MAX_LEN: usize = 64;

/// The bytes an id may hold: ASCII letters and digits, `_`, `.`, `:` and `-`. A table, since
/// ingest looks up every byte of every id.
pub const ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-');
        b += 1;
    }
    t
};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01, the day Arrow's
/// `Date32` counts from. A `date` column is stored as `Date32`.
pub const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Days since 1970-01-01, as Arrow's `Date32` counts them.
pub fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

/// The date of a `Date32` value.
pub fn from_epoch_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + EPOCH_DAYS_FROM_CE).expect("Date32 in range")
}

/// The forms of a pseudonymous key that the `person_key` columns' pattern accepts, as ingest
/// names them when it rejects a key. A key of digits only is refused even where the pattern
/// accepts it: it is a raw number (SSN, MRN, Medicaid id). A test checks each form against
/// the builtin dictionary.
pub const PERSON_KEY_FORMS: &str = "a key that starts with a letter (letters, digits, '_' and \
     '-', at most 64 characters), a hex digest of 32 to 128 digits (MD5, SHA-1, SHA-256, \
     SHA-512, HMAC), a UUID, or an unpadded base64url digest of 22 to 86 characters; never \
     digits only";

/// Direct identifiers as they are usually written with separators. A declared id pattern
/// must accept none of them. The identifier scan of `ingest` refuses them whatever the
/// column declares; a pattern that admits them is a sign the declaration is wrong, so the
/// dictionary refuses it as well (defence in depth).
pub const IDENTIFIER_EXAMPLES: [&str; 10] = [
    "123-45-6789",
    "123 45 6789",
    "123.45.6789",
    "617-555-0100",
    "617.555.0100",
    "617 555 0100",
    "617-5550100",
    "(617) 555-0100",
    "1-617-555-0100",
    "+1 617 555 0100",
];

/// A fault in the dictionary files themselves.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    #[error("data-dictionary/{file}: {source}")]
    Parse {
        file: &'static str,
        source: toml::de::Error,
    },
    #[error("data-dictionary/{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Whether a table is public metadata or holds person records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Public program metadata: may be joined and grouped on freely.
    Public,
    /// Records about persons, keyed by `person_key`: private.
    Person,
}

/// The value type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// An opaque token: letters, digits and `_ . : -`, at most `max_len` characters.
    Id,
    /// Free text of at most `max_len` characters.
    Text,
    /// One of the listed `values`.
    Enum,
    /// A calendar date written `YYYY-MM-DD`.
    Date,
    /// `true` or `false` (also `1`/`0`, any case).
    Bool,
}

/// What a column reveals, which decides how it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnClass {
    /// Public: may be published and grouped on.
    Public,
    /// The pseudonymous person key: the privacy unit.
    PersonKey,
    /// Could single a person out when combined with other data.
    QuasiIdentifier,
    /// A fact about a person that must only leave through DP.
    Sensitive,
}

/// One column of a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub required: bool,
    pub class: ColumnClass,
    pub description: String,
    /// The allowed values of an `enum` column, in their canonical order.
    #[serde(default)]
    pub values: Vec<String>,
    /// Longest allowed value of an `id` or `text` column, in characters.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// `table.column` that every non-empty value must exist in: the primary key of a table
    /// that comes earlier in the dictionary.
    #[serde(default)]
    pub references: Option<String>,
    /// The format of an `id` column's values (see [`IdPattern`]). A value must match it
    /// whole. It exempts no value from the identifier scan: a value shaped like an SSN or a
    /// phone number refuses the file in any column.
    #[serde(default)]
    pub pattern: Option<String>,
}

impl Column {
    /// Longest allowed value in characters, for `id` and `text` columns.
    pub fn max_len(&self) -> usize {
        self.max_len.unwrap_or(DEFAULT_ID_MAX_LEN)
    }

    /// The Arrow type the warehouse stores this column as.
    pub fn arrow_type(&self) -> DataType {
        match self.ty {
            ColumnType::Id | ColumnType::Text => DataType::Utf8,
            ColumnType::Enum => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            ColumnType::Date => DataType::Date32,
            ColumnType::Bool => DataType::Boolean,
        }
    }
}

/// One table of the dictionary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub name: String,
    pub description: String,
    pub kind: TableKind,
    /// The column whose values are unique across the warehouse.
    pub primary_key: String,
    /// The date that places a row in a quarter: the Parquet partition key and the date that
    /// must not precede the start of the row it references (its program's start).
    #[serde(default)]
    pub date_column: Option<String>,
    /// The date a row's period starts: no row that references this table may be dated
    /// before it (a program's `start_date`).
    #[serde(default)]
    pub start_column: Option<String>,
    /// The date a row's period ends, never before its start (a program's `end_date`).
    #[serde(default)]
    pub end_column: Option<String>,
    pub columns: Vec<Column>,
}

impl Table {
    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Position of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The Arrow schema of the stored table.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.arrow_type(), !c.required))
                .collect::<Vec<_>>(),
        ))
    }

    /// Names of the columns, in order.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// The column whose values must exist in another table, with that table's name: a person
    /// table's `program_id`, which references `programs`. A table has at most one.
    pub fn reference(&self) -> Option<(usize, &str)> {
        self.columns.iter().enumerate().find_map(|(i, c)| {
            let r = c.references.as_deref()?;
            Some((i, r.split_once('.').map_or(r, |(t, _)| t)))
        })
    }

    /// The compiled pattern of each column (`None` where none is declared), in column order.
    pub fn patterns(&self) -> Vec<Option<IdPattern>> {
        self.columns
            .iter()
            .map(|c| {
                c.pattern
                    .as_deref()
                    .map(|p| IdPattern::parse(p).expect("the dictionary checks every pattern"))
            })
            .collect()
    }
}

/// The whole dictionary.
#[derive(Debug, Clone)]
pub struct Dictionary {
    tables: Vec<Table>,
}

impl Dictionary {
    /// The dictionary embedded from `data-dictionary/`. It is checked by the test suite, so a
    /// failure here is a build defect, reported as an error rather than a panic.
    pub fn builtin() -> Result<&'static Dictionary, &'static DictionaryError> {
        static BUILTIN: OnceLock<Result<Dictionary, DictionaryError>> = OnceLock::new();
        BUILTIN.get_or_init(|| Self::parse(&SOURCES)).as_ref()
    }

    /// Parses and checks dictionary sources given as `(file name, TOML text)`.
    pub fn parse(sources: &[(&'static str, &str)]) -> Result<Dictionary, DictionaryError> {
        let mut tables = Vec::with_capacity(sources.len());
        for (file, text) in sources {
            let table: Table =
                toml::from_str(text).map_err(|source| DictionaryError::Parse { file, source })?;
            if format!("{}.toml", table.name) != *file {
                return Err(invalid(file, format!("declares table '{}'", table.name)));
            }
            tables.push(table);
        }
        let dict = Dictionary { tables };
        dict.check()?;
        Ok(dict)
    }

    fn check(&self) -> Result<(), DictionaryError> {
        let mut names = HashSet::new();
        for (position, t) in self.tables.iter().enumerate() {
            let file = format!("{}.toml", t.name);
            if !names.insert(&t.name) {
                return Err(invalid(&file, "table defined twice".into()));
            }
            let mut cols = HashSet::new();
            for c in &t.columns {
                if !cols.insert(&c.name) {
                    return Err(invalid(&file, format!("column '{}' defined twice", c.name)));
                }
                match c.ty {
                    ColumnType::Enum if c.values.is_empty() => {
                        return Err(invalid(&file, format!("enum '{}' lists no values", c.name)));
                    }
                    ColumnType::Enum => {
                        let distinct: HashSet<_> = c.values.iter().collect();
                        if distinct.len() != c.values.len() {
                            return Err(invalid(
                                &file,
                                format!("enum '{}' repeats a value", c.name),
                            ));
                        }
                    }
                    _ if !c.values.is_empty() => {
                        return Err(invalid(
                            &file,
                            format!("'{}' lists values but is no enum", c.name),
                        ));
                    }
                    _ => {}
                }
                if let Some(r) = &c.references {
                    let (rt, rc) = r.split_once('.').unwrap_or((r, ""));
                    let target = self.tables.iter().position(|x| x.name == rt);
                    let Some(target) = target.filter(|i| self.tables[*i].column(rc).is_some())
                    else {
                        return Err(invalid(
                            &file,
                            format!("'{}' references unknown {r}", c.name),
                        ));
                    };
                    // Ingest loads tables in dictionary order and looks references up by key.
                    if target >= position || self.tables[target].primary_key != rc {
                        return Err(invalid(
                            &file,
                            format!(
                                "'{}' references {r}, which is not the primary key of a table listed earlier",
                                c.name
                            ),
                        ));
                    }
                }
                if let Some(p) = &c.pattern {
                    if c.ty != ColumnType::Id {
                        return Err(invalid(
                            &file,
                            format!("'{}' declares a pattern but is no id", c.name),
                        ));
                    }
                    let pattern = IdPattern::parse(p)
                        .map_err(|m| invalid(&file, format!("pattern of '{}': {m}", c.name)))?;
                    if let Some(b) =
                        (0..128u8).find(|b| pattern.may_hold(*b) && !ID_BYTE[usize::from(*b)])
                    {
                        return Err(invalid(
                            &file,
                            format!(
                                "pattern of '{}' accepts '{}', which no id may hold",
                                c.name,
                                (b as char).escape_default()
                            ),
                        ));
                    }
                    if let Some(example) = IDENTIFIER_EXAMPLES
                        .iter()
                        .find(|e| pattern.matches(e.as_bytes()))
                    {
                        return Err(invalid(
                            &file,
                            format!(
                                "pattern of '{}' accepts '{example}', written like a social security or phone number; declare a narrower pattern",
                                c.name
                            ),
                        ));
                    }
                }
            }
            if let Some(c) = t
                .columns
                .iter()
                .find(|c| c.ty == ColumnType::Id && c.pattern.is_none() && c.references.is_none())
            {
                return Err(invalid(
                    &file,
                    format!(
                        "id column '{}' declares no pattern; every id column that references no other table declares the format of its values",
                        c.name
                    ),
                ));
            }
            if t.columns.iter().filter(|c| c.references.is_some()).count() > 1 {
                return Err(invalid(
                    &file,
                    "a table may have one column that references another table".into(),
                ));
            }
            match t.column(&t.primary_key) {
                Some(pk) if pk.required && pk.ty == ColumnType::Id => {}
                _ => {
                    return Err(invalid(
                        &file,
                        "primary_key must be a required id column".into(),
                    ));
                }
            }
            if let Some(dc) = &t.date_column {
                match t.column(dc) {
                    Some(c) if c.ty == ColumnType::Date && c.required => {}
                    _ => {
                        return Err(invalid(
                            &file,
                            format!("date_column '{dc}' is no required date"),
                        ));
                    }
                }
            }
            let is_date = |name: &Option<String>| {
                name.as_deref()
                    .is_none_or(|n| t.column(n).is_some_and(|c| c.ty == ColumnType::Date))
            };
            if !is_date(&t.start_column) || !is_date(&t.end_column) {
                return Err(invalid(
                    &file,
                    "start_column and end_column must name date columns".into(),
                ));
            }
            if let Some(sc) = &t.start_column
                && !t.column(sc).is_some_and(|c| c.required)
            {
                return Err(invalid(
                    &file,
                    format!("start_column '{sc}' must be required"),
                ));
            }
            if t.end_column.is_some() && t.start_column.is_none() {
                return Err(invalid(&file, "end_column needs a start_column".into()));
            }
            let person_keys = t
                .columns
                .iter()
                .filter(|c| c.class == ColumnClass::PersonKey);
            match (t.kind, person_keys.count()) {
                (TableKind::Person, 1) if t.column("person_key").is_some() => {}
                (TableKind::Public, 0) => {}
                _ => {
                    return Err(invalid(
                        &file,
                        "a person table needs exactly one person_key column, a public table none"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// All tables, `programs` first.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Names of all tables, for messages.
    pub fn table_names(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.name.as_str()).collect()
    }

    /// Whether a column of some table references `table` (as person tables reference
    /// `programs`): then ingest keeps its keys and start dates for the tables loaded after it.
    pub fn is_referenced(&self, table: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.reference().is_some_and(|(_, r)| r == table))
    }

    /// Renders the dictionary as the Markdown committed at `data-dictionary/README.md`.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("# Data dictionary\n\n");
        md.push_str(
            "Generated by `outreach dictionary` from the TOML files in this folder; do not edit by hand.\n\
             Ingest validates every program export against these definitions.\n\n\
             Classes: `public` may be published and grouped on; `person_key` is the pseudonymous privacy unit; \
             `quasi_identifier` could single a person out in combination; `sensitive` is a fact about a person. \
             Only differentially private aggregates of person tables ever leave the warehouse.\n\n\
             Values: `id` is 1 to 64 characters of letters, digits and `_ . : -` (unless a longer limit is given); \
             `date` is `YYYY-MM-DD`; `bool` is `true` or `false` (`1`/`0` and any case are accepted); \
             an empty field is a missing value.\n\n\
             Patterns: an `id` column with a pattern accepts only values that match it whole. A pattern is a sequence of \
             characters and `[...]` classes (ranges such as `a-z` allowed), each optionally followed by `?`, `{n}` or `{m,n}`; \
             `|` separates alternatives. A value shaped like a social security or phone number refuses the whole file \
             in any column; no pattern may accept such numbers written with separators.\n\n",
        );
        let _ = write!(
            md,
            "Pseudonymous keys: `person_key` takes {PERSON_KEY_FORMS}. A key of digits only is a raw \
             number (SSN, MRN, Medicaid id) and is rejected even where the pattern accepts its length.\n\n"
        );
        for t in &self.tables {
            let _ = writeln!(md, "- [`{}`](#{}): {}", t.name, t.name, t.description);
        }
        for t in &self.tables {
            let _ = writeln!(md, "\n## {}\n\n{}\n", t.name, t.description);
            let kind = match t.kind {
                TableKind::Public => "public program metadata",
                TableKind::Person => "person records (private)",
            };
            let _ = writeln!(md, "- Kind: {kind}");
            let _ = writeln!(md, "- Unique key: `{}`", t.primary_key);
            if let Some(dc) = &t.date_column {
                let _ = writeln!(md, "- Quarter and program-start date: `{dc}`");
            }
            if let Some(sc) = &t.start_column {
                let _ = writeln!(
                    md,
                    "- Start date: `{sc}`; no row that refers to this table may be dated earlier"
                );
            }
            if let Some(ec) = &t.end_column {
                let _ = writeln!(md, "- End date: `{ec}`, never before the start date");
            }
            md.push_str("\n| column | type | required | class | allowed values | description |\n");
            md.push_str("|---|---|---|---|---|---|\n");
            for c in &t.columns {
                let ty = match c.ty {
                    ColumnType::Id => match c.max_len {
                        Some(n) => format!("id (≤ {n})"),
                        None => "id".to_string(),
                    },
                    ColumnType::Text => format!("text (≤ {})", c.max_len()),
                    ColumnType::Enum => "enum".to_string(),
                    ColumnType::Date => "date".to_string(),
                    ColumnType::Bool => "bool".to_string(),
                };
                let allowed = match (&c.references, c.ty) {
                    (Some(r), _) => format!("a `{r}`"),
                    (None, ColumnType::Id) if c.pattern.is_some() => format!(
                        "pattern `{}`",
                        c.pattern.as_deref().unwrap_or_default().replace('|', "\\|")
                    ),
                    (None, ColumnType::Enum) => c
                        .values
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                };
                let class = match c.class {
                    ColumnClass::Public => "public",
                    ColumnClass::PersonKey => "person_key",
                    ColumnClass::QuasiIdentifier => "quasi_identifier",
                    ColumnClass::Sensitive => "sensitive",
                };
                let _ = writeln!(
                    md,
                    "| `{}` | {ty} | {} | {class} | {allowed} | {} |",
                    c.name,
                    if c.required { "yes" } else { "no" },
                    c.description
                );
            }
        }
        md
    }
}

/// The declared format of an `id` column: alternatives separated by `|`, each a sequence of
/// steps. A step is one character, or a class such as `[A-Za-z0-9_-]`, followed by `?`, `{n}`
/// or `{m,n}` (once when none is given); `\` makes the next character literal. A value
/// matches when one alternative matches it whole. Not a regular expression engine: no groups,
/// no unbounded repetition, ASCII only, at most 127 characters per value in an alternative of
/// several steps and 255 in one of a single step (`[0-9a-f]{32,128}`), and matching costs a
/// few operations per byte, since ingest matches every id it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPattern {
    alternatives: Vec<Vec<Step>>,
}

/// One step of an [`IdPattern`]: a byte class repeated `min` to `max` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// The bytes the step accepts (ASCII only), as a table by byte value: a look-up per byte
    /// is cheaper than a shift of a `u128` bit set, and matching walks every byte of every id
    /// that ingest reads.
    accepts: [bool; 256],
    min: u8,
    max: u8,
}

impl Step {
    /// A step of the ASCII bytes in `set`, one bit each.
    fn new(set: u128, min: u8, max: u8) -> Self {
        let mut accepts = [false; 256];
        for (b, a) in accepts.iter_mut().enumerate().take(128) {
            *a = (set >> b) & 1 == 1;
        }
        Step { accepts, min, max }
    }

    fn accepts(&self, b: u8) -> bool {
        self.accepts[usize::from(b)]
    }

    /// The step as a regular expression: a class of the bytes it accepts, runs of digits and
    /// of letters of one case written as ranges, then its count.
    fn regex(&self) -> String {
        let mut class = String::from("[");
        let mut b = 0u8;
        while b < 128 {
            if !self.accepts(b) {
                b += 1;
                continue;
            }
            let same_run = |x: u8, y: u8| {
                (x.is_ascii_digit() && y.is_ascii_digit())
                    || (x.is_ascii_lowercase() && y.is_ascii_lowercase())
                    || (x.is_ascii_uppercase() && y.is_ascii_uppercase())
            };
            let mut end = b;
            while end + 1 < 128 && self.accepts(end + 1) && same_run(b, end + 1) {
                end += 1;
            }
            push_class_byte(&mut class, b);
            if end > b {
                class.push('-');
                push_class_byte(&mut class, end);
            }
            b = end + 1;
        }
        class.push(']');
        match (self.min, self.max) {
            (1, 1) => class,
            (m, n) if m == n => format!("{class}{{{m}}}"),
            (m, n) => format!("{class}{{{m},{n}}}"),
        }
    }
}

/// Writes byte `b` inside a regular expression's class: letters and digits as themselves, the
/// characters a class gives a meaning to escaped, and anything not printable as `\xNN`; each
/// form means the same in ECMA-262 (the OpenAPI document's dialect), Rust's and Python's.
fn push_class_byte(class: &mut String, b: u8) {
    match b {
        b'\\' | b']' | b'[' | b'^' | b'-' => {
            class.push('\\');
            class.push(char::from(b));
        }
        0x21..=0x7e => class.push(char::from(b)),
        _ => class.push_str(&format!("\\x{b:02x}")),
    }
}

/// Longest value an alternative of several steps can accept: positions are kept as bits of
/// a `u128`.
const PATTERN_MAX_LEN: usize = 127;

/// Longest value an alternative of one step can accept (a hex digest of SHA-512 has 128
/// characters): one step is matched by one walk, with no bit sets.
const ONE_STEP_MAX_LEN: usize = 255;

impl IdPattern {
    /// Parses a pattern, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<IdPattern, String> {
        if !text.is_ascii() {
            return Err("a pattern is ASCII only".into());
        }
        let alternatives = text
            .split('|')
            .map(parse_steps)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IdPattern { alternatives })
    }

    /// Whether `v` matches one alternative whole.
    pub fn matches(&self, v: &[u8]) -> bool {
        v.len() <= ONE_STEP_MAX_LEN && self.alternatives.iter().any(|a| matches_steps(a, v))
    }

    /// The pattern as an ECMA-262 regular expression anchored at both ends, for the OpenAPI
    /// document: written from the parsed steps, so that it accepts exactly what
    /// [`IdPattern::matches`] accepts (each step's length bounds the value, as in `matches`).
    pub fn regex(&self) -> String {
        let alternatives: Vec<String> = self
            .alternatives
            .iter()
            .map(|steps| steps.iter().map(Step::regex).collect())
            .collect();
        format!("^(?:{})$", alternatives.join("|"))
    }

    /// Whether some value the pattern accepts holds byte `b`.
    pub fn may_hold(&self, b: u8) -> bool {
        self.alternatives
            .iter()
            .flatten()
            .any(|s| s.max > 0 && s.accepts(b))
    }
}

/// Parses one alternative of an [`IdPattern`].
fn parse_steps(text: &str) -> Result<Vec<Step>, String> {
    let b = text.as_bytes();
    if b.is_empty() {
        return Err("an alternative is empty".into());
    }
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let set = match b[i] {
            b'[' => {
                let close = b[i + 1..]
                    .iter()
                    .position(|c| *c == b']')
                    .ok_or("a '[' is not closed")?
                    + i
                    + 1;
                let set = class_set(&b[i + 1..close])?;
                i = close + 1;
                set
            }
            b'\\' => {
                let c = *b.get(i + 1).ok_or("the pattern ends with '\\'")?;
                i += 2;
                1u128 << c
            }
            c @ (b']' | b'{' | b'}' | b'?') => {
                return Err(format!(
                    "'{}' must follow a character or class, or be written '\\{}'",
                    c as char, c as char
                ));
            }
            c => {
                i += 1;
                1u128 << c
            }
        };
        let (min, max) = match b.get(i) {
            Some(b'?') => {
                i += 1;
                (0, 1)
            }
            Some(b'{') => {
                let close = b[i..]
                    .iter()
                    .position(|c| *c == b'}')
                    .ok_or("a '{' is not closed")?
                    + i;
                let inner = &text[i + 1..close];
                i = close + 1;
                let number = |n: &str| {
                    n.trim()
                        .parse::<u8>()
                        .ok()
                        .ok_or_else(|| format!("'{{{inner}}}' is no count from 0 to 255"))
                };
                match inner.split_once(',') {
                    Some((m, n)) => (number(m)?, number(n)?),
                    None => (number(inner)?, number(inner)?),
                }
            }
            _ => (1, 1),
        };
        if min > max || max == 0 {
            return Err(format!("a count of {min} to {max} matches nothing"));
        }
        steps.push(Step::new(set, min, max));
    }
    let longest: usize = steps.iter().map(|s| usize::from(s.max)).sum();
    if steps.len() > 1 && longest > PATTERN_MAX_LEN {
        return Err(format!(
            "it accepts values of up to {longest} characters; at most {PATTERN_MAX_LEN} are supported in an alternative of several steps, {ONE_STEP_MAX_LEN} in one of a single step"
        ));
    }
    Ok(steps)
}

/// The bytes of a class's inside, such as `A-Za-z0-9_-` (a `-` first or last is itself).
fn class_set(inner: &[u8]) -> Result<u128, String> {
    if inner.is_empty() {
        return Err("a class '[]' is empty".into());
    }
    let mut set = 0u128;
    let mut j = 0;
    while j < inner.len() {
        let c = inner[j];
        if c == b'\\' {
            let e = *inner.get(j + 1).ok_or("a class ends with '\\'")?;
            set |= 1u128 << e;
            j += 2;
        } else if inner.get(j + 1) == Some(&b'-') && j + 2 < inner.len() {
            let end = inner[j + 2];
            if end < c {
                return Err(format!(
                    "the range '{}-{}' runs backwards",
                    c as char, end as char
                ));
            }
            for x in c..=end {
                set |= 1u128 << x;
            }
            j += 3;
        } else {
            set |= 1u128 << c;
            j += 1;
        }
    }
    Ok(set)
}

/// Whether `v` matches `steps` whole. The positions each step can reach are the bits of a
/// `u128`, so there is no backtracking and no allocation.
fn matches_steps(steps: &[Step], v: &[u8]) -> bool {
    if steps.len() > 1 && v.len() > PATTERN_MAX_LEN {
        return false;
    }
    let mut reach: u128 = 1;
    for (k, s) in steps.iter().enumerate() {
        // The last step from a single position must take the rest of the value whole: one
        // walk, no bit sets. Ids (`[A-Za-z][A-Za-z0-9_-]{0,63}`) end here after one letter.
        if k + 1 == steps.len() && reach.count_ones() == 1 {
            let rest = &v[(reach.trailing_zeros() as usize).min(v.len())..];
            return (usize::from(s.min)..=usize::from(s.max)).contains(&rest.len())
                && rest.iter().all(|&b| s.accepts(b));
        }
        let mut next = 0u128;
        let mut from = reach;
        while from != 0 {
            let p = from.trailing_zeros() as usize;
            from &= from - 1;
            if s.min == 0 {
                next |= 1u128 << p;
            }
            let mut q = p;
            let mut n = 0u8;
            while n < s.max && q < v.len() && s.accepts(v[q]) {
                q += 1;
                n += 1;
                if n >= s.min {
                    next |= 1u128 << q;
                }
            }
        }
        if next == 0 {
            return false;
        }
        reach = next;
    }
    (reach >> v.len()) & 1 == 1
}

fn invalid(file: &str, message: String) -> DictionaryError {
    DictionaryError::Invalid {
        file: file.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document states an id column's pattern as a regular expression written
    /// from the parsed steps: same classes, same counts, anchored at both ends.
    #[test]
    fn a_pattern_is_written_as_an_anchored_regular_expression() {
        let p = IdPattern::parse("[A-Za-z][A-Za-z0-9_.:-]{0,63}|[0-9]{1,8}").unwrap();
        assert_eq!(
            p.regex(),
            r"^(?:[A-Za-z][\-.0-9:A-Z_a-z]{0,63}|[0-9]{1,8})$"
        );
        let p = IdPattern::parse(r"x?\.[\^-]{2}").unwrap();
        assert_eq!(p.regex(), r"^(?:[x]{0,1}[.][\-\^]{2})$");
    }

    /// The bit-set walk of every step, without the last step's shortcut.
    fn matches_steps_reference(steps: &[Step], v: &[u8]) -> bool {
        let mut reach: u128 = 1;
        for s in steps {
            let mut next = 0u128;
            let mut from = reach;
            while from != 0 {
                let p = from.trailing_zeros() as usize;
                from &= from - 1;
                if s.min == 0 {
                    next |= 1u128 << p;
                }
                let mut q = p;
                let mut n = 0u8;
                while n < s.max && q < v.len() && s.accepts(v[q]) {
                    q += 1;
                    n += 1;
                    if n >= s.min {
                        next |= 1u128 << q;
                    }
                }
            }
            if next == 0 {
                return false;
            }
            reach = next;
        }
        (reach >> v.len()) & 1 == 1
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// The last step's shortcut accepts exactly what the full walk accepts, for the
        /// dictionary's patterns and ones whose last step needs several bytes.
        #[test]
        fn the_last_step_shortcut_is_the_full_walk(
            pattern in proptest::sample::select(vec![
                "[A-Za-z][A-Za-z0-9_.:-]{0,63}|[0-9]{1,8}|[0-9]{4}-[0-9]{1,4}",
                "[A-Za-z][A-Za-z0-9_-]{0,63}",
                "[A-Z]{2}[0-9]{3,5}",
                "[0-9]{4}-[0-9]{1,4}",
                "a[ab]{0,3}b{2}",
                "[a-c]{0,2}[b-d]{1,3}",
            ]),
            v in "[A-Za-z0-9_.:ab -]{0,70}",
        ) {
            let p = IdPattern::parse(pattern).unwrap();
            let reference = v.len() <= PATTERN_MAX_LEN
                && p.alternatives.iter().any(|a| matches_steps_reference(a, v.as_bytes()));
            proptest::prop_assert_eq!(p.matches(v.as_bytes()), reference, "{} on {:?}", pattern, v);
        }
    }

    #[test]
    fn builtin_dictionary_is_valid_and_complete() {
        let d = Dictionary::builtin().expect("embedded dictionary parses");
        assert_eq!(
            d.table_names(),
            [
                "programs",
                "overdose_events",
                "outreach_attempts",
                "referrals",
                "service_linkages",
                "arrests"
            ]
        );
        let attempts = d.table("outreach_attempts").unwrap();
        let outcome = attempts.column("outcome").unwrap();
        assert_eq!(outcome.ty, ColumnType::Enum);
        assert!(outcome.values.iter().any(|v| v == "engaged_survivor"));
        assert!(!attempts.column("event_id").unwrap().required);
        assert_eq!(d.table("arrests").unwrap().reference(), None);
        assert_eq!(
            d.table("referrals").unwrap().reference(),
            Some((2, "programs"))
        );
        assert!(d.is_referenced("programs"));
        assert!(!d.is_referenced("referrals"));
        let programs = d.table("programs").unwrap();
        assert_eq!(programs.start_column.as_deref(), Some("start_date"));
        assert_eq!(programs.end_column.as_deref(), Some("end_date"));
        // Every id column that references no other table declares its format.
        for t in d.tables() {
            for (c, p) in t.columns.iter().zip(t.patterns()) {
                if c.ty == ColumnType::Id && c.references.is_none() {
                    assert!(p.is_some(), "{}.{} declares no pattern", t.name, c.name);
                }
            }
        }
        // Every person table constrains person_key's format.
        for t in d.tables().iter().filter(|t| t.kind == TableKind::Person) {
            let ci = t.column_index("person_key").unwrap();
            let p = t.patterns()[ci]
                .clone()
                .expect("person_key declares a pattern");
            assert!(p.matches(b"pk0123456789abcdef"), "{}", t.name);
            assert!(!p.matches(b"123456789"), "{}", t.name);
            assert!(!p.matches(b"a.b"), "{}", t.name);
        }
    }

    #[test]
    fn epoch_days_round_trip() {
        let d = NaiveDate::from_ymd_opt(1970, 1, 2).unwrap();
        assert_eq!(epoch_days(d), 1);
        assert_eq!(from_epoch_days(1), d);
        let d = NaiveDate::from_ymd_opt(2025, 3, 31).unwrap();
        assert_eq!(from_epoch_days(epoch_days(d)), d);
    }

    #[test]
    fn id_patterns_match_whole_values() {
        let p = IdPattern::parse("[A-Za-z][A-Za-z0-9_-]{0,5}|[0-9]{4}-[0-9]{1,3}").unwrap();
        for ok in ["a", "pk_1-2", "Z00000", "2024-1", "2024-123"] {
            assert!(p.matches(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "pk_1-23",
            "2024-",
            "2024-1234",
            "202-12",
            "a.b",
            "é",
        ] {
            assert!(!p.matches(bad.as_bytes()), "{bad}");
        }
        // A step that must give back what an earlier one took: no greedy dead end.
        let p = IdPattern::parse("[a-z0-9]{1,5}[0-9]{2}").unwrap();
        assert!(p.matches(b"ab123"));
        assert!(!p.matches(b"12"));
        assert!(p.matches(b"a12"));
        let p = IdPattern::parse("x?y\\?-[-a]").unwrap();
        assert!(p.matches(b"y?--"));
        assert!(p.matches(b"xy?-a"));
        assert!(!p.matches(b"xy-a"));
        for bad in [
            "", "a||b", "[a", "[]", "a{2", "a{3,1}", "a{0}", "{2}", "a{256}", "[z-a]", "é",
        ] {
            assert!(IdPattern::parse(bad).is_err(), "{bad}");
        }
        // Several steps reach at most 127 characters; one step, a SHA-512 hex digest's 128
        // and up to 255.
        assert!(IdPattern::parse("[a-z]{100}[0-9]{28}").is_err());
        assert!(IdPattern::parse("[a-z]{100}[0-9]{27}").is_ok());
        let p = IdPattern::parse("[0-9a-f]{32,128}|x[0-9]{1,3}").unwrap();
        assert!(p.matches("ab".repeat(64).as_bytes()));
        assert!(!p.matches("ab".repeat(65).as_bytes()));
        assert!(!p.matches("ab".repeat(15).as_bytes()));
        assert!(p.matches(b"x12"));
        assert!(!p.matches(format!("x{}", "1".repeat(130)).as_bytes()));
        assert!(
            IdPattern::parse("a{255}")
                .unwrap()
                .matches("a".repeat(255).as_bytes())
        );
    }

    #[test]
    fn a_pattern_may_not_accept_written_identifiers_or_other_bytes() {
        let table = |pattern: &str| {
            format!(
                r#"
                name = "t"
                description = "x"
                kind = "public"
                primary_key = "id"
                [[columns]]
                name = "id"
                type = "id"
                required = true
                class = "public"
                description = "x"
                pattern = "{pattern}"
            "#
            )
        };
        let err =
            Dictionary::parse(&[("t.toml", &table("[0-9]{3}-[0-9]{2}-[0-9]{4}"))]).unwrap_err();
        assert!(err.to_string().contains("accepts '123-45-6789'"), "{err}");
        let err = Dictionary::parse(&[("t.toml", &table("[A-Za-z0-9_.:-]{1,64}"))]).unwrap_err();
        assert!(
            err.to_string().contains("written like a social security"),
            "{err}"
        );
        let err = Dictionary::parse(&[("t.toml", &table("[a-z/]{1,9}"))]).unwrap_err();
        assert!(err.to_string().contains("accepts '/'"), "{err}");
        assert!(Dictionary::parse(&[("t.toml", &table("[0-9]{4}-[0-9]{5,6}"))]).is_ok());
    }

    #[test]
    fn schema_uses_logical_types() {
        let d = Dictionary::builtin().unwrap();
        let s = d.table("overdose_events").unwrap().schema();
        assert_eq!(
            s.field_with_name("event_date").unwrap().data_type(),
            &DataType::Date32
        );
        assert_eq!(
            s.field_with_name("fatal").unwrap().data_type(),
            &DataType::Boolean
        );
        assert!(matches!(
            s.field_with_name("sex").unwrap().data_type(),
            DataType::Dictionary(_, v) if **v == DataType::Utf8
        ));
        assert!(!s.field_with_name("person_key").unwrap().is_nullable());
        let p = d.table("programs").unwrap().schema();
        assert!(p.field_with_name("end_date").unwrap().is_nullable());
    }

    #[test]
    fn rejects_inconsistent_dictionaries() {
        let bad_ref = r#"
            name = "t"
            description = "x"
            kind = "public"
            primary_key = "id"
            [[columns]]
            name = "id"
            type = "id"
            required = true
            class = "public"
            description = "x"
            references = "nowhere.id"
        "#;
        let err = Dictionary::parse(&[("t.toml", bad_ref)]).unwrap_err();
        assert!(
            err.to_string().contains("references unknown nowhere.id"),
            "{err}"
        );

        let with_pattern = "pattern = \"[a-z]{1,9}\"";
        let person_without_key = bad_ref
            .replace("kind = \"public\"", "kind = \"person\"")
            .replace("references = \"nowhere.id\"", with_pattern);
        let err = Dictionary::parse(&[("t.toml", &person_without_key)]).unwrap_err();
        assert!(err.to_string().contains("person_key"), "{err}");

        let wrong_file = bad_ref.replace("references = \"nowhere.id\"", with_pattern);
        let err = Dictionary::parse(&[("u.toml", &wrong_file)]).unwrap_err();
        assert!(err.to_string().contains("declares table 't'"), "{err}");
        assert!(Dictionary::parse(&[("t.toml", &wrong_file)]).is_ok());

        // An id column that references nothing must declare its format.
        let without_pattern = bad_ref.replace("references = \"nowhere.id\"", "");
        let err = Dictionary::parse(&[("t.toml", &without_pattern)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("id column 'id' declares no pattern"),
            "{err}"
        );
    }
}
