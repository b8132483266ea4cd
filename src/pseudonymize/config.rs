//! The linkage config: which columns of a program's raw export are linkage fields, which are
//! copied to the output, which are dropped, and the match keys built from the fields. The
//! state writes it once and issues it to every program with the key file: two programs link
//! a survivor only when they normalise and key the same fields the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::PseudonymizeError;
use super::normalise::{self, Sex};

/// How a linkage field is normalised before it is keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A name or initials: accents folded, lower case, only letters and digits kept, word by
    /// word; with `nicknames = true` each word passes the config's nickname table.
    Name,
    /// A date (of birth), read in the forms [`normalise::date`] lists, keyed as `YYYY-MM-DD`.
    Date,
    /// A sex code, keyed as `m`, `f` or `x`; unknown and declined are missing.
    Sex,
}

/// Where a date written with its year last puts the day and the month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateOrder {
    /// `03/12/1980` is 12 March (United States).
    #[default]
    Mdy,
    /// `12/03/1980` is 12 March.
    Dmy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    column: Option<String>,
    kind: FieldKind,
    #[serde(default)]
    nicknames: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatchKey {
    fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    date_order: DateOrder,
    fields: BTreeMap<String, RawField>,
    match_key: Vec<RawMatchKey>,
    #[serde(default)]
    nicknames: BTreeMap<String, String>,
    #[serde(default)]
    sex_codes: BTreeMap<String, String>,
}

/// One linkage field: its name in the config (part of the keyed text), the input column it
/// comes from, and how it is normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub column: String,
    pub kind: FieldKind,
    pub nicknames: bool,
}

/// A match key: the fields keyed together, in the config's order. A row is keyed by the
/// first match key whose fields are all present in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchKey {
    /// Indexes into [`Config::fields`].
    pub fields: Vec<usize>,
}

/// A checked linkage config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Columns copied to the output unchanged (an input may lack some of them).
    pub keep: BTreeSet<String>,
    /// Identifier columns removed (an input may lack some of them).
    pub drop: BTreeSet<String>,
    pub date_order: DateOrder,
    pub fields: Vec<Field>,
    pub match_keys: Vec<MatchKey>,
    /// Normalised nickname → normalised formal name.
    pub nicknames: BTreeMap<String, String>,
    /// Normalised code → sex, `None` for a code that means unknown.
    pub sex_codes: BTreeMap<String, Option<Sex>>,
}

/// The column every output row's key is written to.
pub const PERSON_KEY_COLUMN: &str = "person_key";

impl Config {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, PseudonymizeError> {
        let text = std::fs::read_to_string(path).map_err(|source| PseudonymizeError::Open {
            what: "config file",
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Checks a config's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, PseudonymizeError> {
        let bad = |message: String| PseudonymizeError::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| bad(e.to_string().trim_end().to_string()))?;
        if raw.fields.is_empty() {
            return Err(bad("declares no linkage field ([fields.NAME])".into()));
        }
        if raw.match_key.is_empty() {
            return Err(bad(
                "declares no match key ([[match_key]] fields = [...])".into()
            ));
        }
        let keep: BTreeSet<String> = raw.keep.iter().map(|c| c.trim().to_string()).collect();
        let drop: BTreeSet<String> = raw.drop.iter().map(|c| c.trim().to_string()).collect();
        if keep.len() != raw.keep.len() || drop.len() != raw.drop.len() {
            return Err(bad("`keep` or `drop` lists a column twice".into()));
        }
        if let Some(c) = keep.intersection(&drop).next() {
            return Err(bad(format!("column `{c}` is both kept and dropped")));
        }
        if keep.contains(PERSON_KEY_COLUMN) {
            return Err(bad(format!(
                "`keep` lists `{PERSON_KEY_COLUMN}`: pseudonymize writes that column; drop the export's own"
            )));
        }
        let mut fields = Vec::new();
        let mut columns = BTreeSet::new();
        for (name, f) in raw.fields {
            let column = f.column.unwrap_or_else(|| name.clone()).trim().to_string();
            if column.is_empty() {
                return Err(bad(format!("field `{name}` names an empty column")));
            }
            if !columns.insert(column.clone()) {
                return Err(bad(format!("column `{column}` is read by two fields")));
            }
            if drop.contains(&column) {
                return Err(bad(format!(
                    "column `{column}` of field `{name}` is listed in `drop`: a linkage field is always dropped"
                )));
            }
            // A sex code is a dictionary column too (the equity breakdowns): it may be kept.
            // Names and dates never leave the program.
            if keep.contains(&column) && f.kind != FieldKind::Sex {
                return Err(bad(format!(
                    "column `{column}` of field `{name}` is listed in `keep`: only a sex field may also be kept"
                )));
            }
            if f.nicknames && f.kind != FieldKind::Name {
                return Err(bad(format!(
                    "field `{name}`: nicknames apply to name fields only"
                )));
            }
            fields.push(Field {
                name,
                column,
                kind: f.kind,
                nicknames: f.nicknames,
            });
        }
        let mut match_keys = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, mk) in raw.match_key.iter().enumerate() {
            if mk.fields.is_empty() {
                return Err(bad(format!("match key {} has no field", i + 1)));
            }
            let mut idx = Vec::new();
            for name in &mk.fields {
                let Some(at) = fields.iter().position(|f| &f.name == name) else {
                    return Err(bad(format!(
                        "match key {} names `{name}`, which is no [fields.{name}]",
                        i + 1
                    )));
                };
                if idx.contains(&at) {
                    return Err(bad(format!("match key {} names `{name}` twice", i + 1)));
                }
                idx.push(at);
            }
            let set: BTreeSet<usize> = idx.iter().copied().collect();
            if !seen.insert(set) {
                return Err(bad(format!(
                    "match key {} has the same fields as an earlier one",
                    i + 1
                )));
            }
            match_keys.push(MatchKey { fields: idx });
        }
        let mut nicknames = BTreeMap::new();
        for (nick, formal) in &raw.nicknames {
            let (n, f) = (normalise::word(nick), normalise::word(formal));
            if n.is_empty() || f.is_empty() {
                return Err(bad(
                    "a nickname or its formal name has no letter or digit".to_string()
                ));
            }
            if nicknames.insert(n, f).is_some() {
                return Err(bad("two nicknames are the same once normalised".to_string()));
            }
        }
        let mut sex_codes = BTreeMap::new();
        for (code, sex) in &raw.sex_codes {
            let c = normalise::word(code);
            if c.is_empty() {
                return Err(bad("a sex code has no letter or digit".to_string()));
            }
            let s = match sex.as_str() {
                "m" => Some(Sex::M),
                "f" => Some(Sex::F),
                "x" => Some(Sex::X),
                "" => None,
                _ => {
                    return Err(bad(format!(
                        "sex code `{code}` maps to `{sex}`; use \"m\", \"f\", \"x\" or \"\" (unknown)"
                    )));
                }
            };
            sex_codes.insert(c, s);
        }
        Ok(Config {
            keep,
            drop,
            date_order: raw.date_order,
            fields,
            match_keys,
            nicknames,
            sex_codes,
        })
    }
}
