//! The data dictionary: one TOML file per table under `data-dictionary/`, embedded in the binary.
//!
//! It is the single source of truth that ingest validates against, that gives the Parquet and
//! DataFusion schemas, and that `outreach dictionary` renders as the committed
//! `data-dictionary/README.md`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

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
    /// `table.column` that every non-empty value must exist in.
    #[serde(default)]
    pub references: Option<String>,
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
    /// must not precede the program's start.
    #[serde(default)]
    pub date_column: Option<String>,
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

    /// The `program_id` column, if rows of this table belong to a program.
    pub fn program_column(&self) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.references.as_deref() == Some("programs.program_id"))
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
        for t in &self.tables {
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
                    let target = self.tables.iter().find(|x| x.name == rt);
                    if target.and_then(|x| x.column(rc)).is_none() {
                        return Err(invalid(
                            &file,
                            format!("'{}' references unknown {r}", c.name),
                        ));
                    }
                }
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
             an empty field is a missing value.\n\n",
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

fn invalid(file: &str, message: String) -> DictionaryError {
    DictionaryError::Invalid {
        file: file.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(d.table("arrests").unwrap().program_column(), None);
        assert_eq!(d.table("referrals").unwrap().program_column(), Some(2));
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

        let person_without_key = bad_ref
            .replace("kind = \"public\"", "kind = \"person\"")
            .replace("references = \"nowhere.id\"", "");
        let err = Dictionary::parse(&[("t.toml", &person_without_key)]).unwrap_err();
        assert!(err.to_string().contains("person_key"), "{err}");

        let wrong_file = bad_ref.replace("references = \"nowhere.id\"", "");
        let err = Dictionary::parse(&[("u.toml", &wrong_file)]).unwrap_err();
        assert!(err.to_string().contains("declares table 't'"), "{err}");
    }
}
