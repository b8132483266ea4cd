//! Pseudonymisation at the program, before the warehouse ever sees a file
//! (`outreach pseudonymize`): a program's raw export, which holds direct identifiers, becomes
//! an export the warehouse takes, keyed by a `person_key` that is the same for one survivor in
//! every program holding the state's key file.
//!
//! - [`config`]: the linkage config (which columns are linkage fields, kept or dropped, and
//!   the match keys), the same file in every program.
//! - [`normalise`]: case, accents, whitespace and punctuation, nicknames, dates of birth and
//!   sex codes, so that one person written differently gives one text to key.
//!
//! A row's key is HMAC-SHA-256, under the state's 32-byte key, of the fields of the first
//! match key whose fields are all present in the row (each field's name and normalised value,
//! length-prefixed, after a fixed domain label), cut to 128 bits and written as `pk` and 32
//! letters `a` to `p` ([`encode`]): a key that starts with a letter and holds no digit, so the
//! warehouse's identifier scan (which reads digits) never takes it for a phone number or an
//! SSN, and its `person_key` pattern accepts it.
//!
//! Nothing here writes an identifier anywhere: the output holds the person key and the kept
//! columns only, it is written to a temporary file beside the output (which holds no
//! identifier either) and renamed into place, and every error names a file, a line and a
//! column, never a value. This stage runs at the program and imports nothing of the
//! warehouse's stages.

pub mod config;
pub mod normalise;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::csv_out;
use crate::fault::Fault;

pub use config::{Config, DateOrder, Field, FieldKind, MatchKey, PERSON_KEY_COLUMN};
pub use normalise::{Sex, Unreadable};

/// Bytes of a key: 256 bits, the output size of SHA-256, as HMAC's key should be.
pub const KEY_BYTES: usize = 32;

/// What every person key starts with: a letter, so the key is never digits only.
pub const KEY_PREFIX: &str = "pk";

/// The sixteen letters a key's 32 nibbles are written with: no digit, so no run of digits a
/// reader could take for a number.
const KEY_ALPHABET: &[u8; 16] = b"abcdefghijklmnop";

/// Fixed text keyed before the fields, so that these keys never equal an HMAC of the same
/// key over other data; `v1` changes if the keyed text ever does.
const DOMAIN: &[u8] = b"outreach-warehouse person_key v1";

/// Problems of rows that an error lists; the rest are counted.
const LISTED_ROW_ERRORS: usize = 20;

/// Output lines written to the file at a time.
const LINES_PER_CHUNK: usize = 8192;

/// A failure of `outreach pseudonymize`. No message holds a value read from a row.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymizeError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Open {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("linkage config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("key file {}: {problem}", path.display())]
    KeyFile { path: PathBuf, problem: String },
    #[error("{}, line {line}: {message}", path.display())]
    Input {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}", rows_message(path, *count, lines))]
    Rows {
        path: PathBuf,
        count: u64,
        lines: Vec<String>,
    },
    #[error("output {}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("the system's random generator failed: {0}")]
    Random(String),
}

/// The message of [`PseudonymizeError::Rows`]: the listed rows' problems, then how many more.
fn rows_message(path: &Path, count: u64, lines: &[String]) -> String {
    let mut m = format!(
        "{}: {count} problem(s) in its rows, so nothing was written:\n  {}",
        path.display(),
        lines.join("\n  ")
    );
    let listed = lines.len() as u64;
    if count > listed {
        m.push_str(&format!("\n  … and {} more", count - listed));
    }
    m
}

impl PseudonymizeError {
    /// Who is at fault: the user for every file, flag and row; the environment for a write
    /// that fails or a generator that does not answer.
    pub fn fault(&self) -> Fault {
        match self {
            PseudonymizeError::Write { .. } | PseudonymizeError::Random(_) => Fault::Internal,
            _ => Fault::BadInput,
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The state's linkage key, shared by the programs and never sent to the warehouse. Its
/// `Debug` shows nothing of it.
pub struct LinkageKey([u8; KEY_BYTES]);

impl std::fmt::Debug for LinkageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkageKey(..)")
    }
}

impl LinkageKey {
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> LinkageKey {
        LinkageKey(bytes)
    }

    /// Reads a key file as [`LinkageKey::create`] writes it: 64 hexadecimal digits, then
    /// optional whitespace. Refused: a missing file, one that others may read or write (its
    /// mode must be 600 or stricter), and one that holds anything else. No message quotes
    /// the file's content.
    pub fn load(path: &Path) -> Result<LinkageKey, PseudonymizeError> {
        let problem = |p: String| PseudonymizeError::KeyFile {
            path: path.to_path_buf(),
            problem: p,
        };
        let file = File::open(path).map_err(|e| {
            problem(if e.kind() == io::ErrorKind::NotFound {
                "does not exist: use the key file the state issued (or make the state's one \
                 with `outreach pseudonymize --new-key-file FILE`)"
                    .to_string()
            } else {
                format!("cannot be opened: {e}")
            })
        })?;
        let meta = file
            .metadata()
            .map_err(|e| problem(format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(problem("is not a file".to_string()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(problem(format!(
                    "others may read or write it (mode {mode:03o}): make it the owner's alone with `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let mut text = Vec::new();
        file.take(1024)
            .read_to_end(&mut text)
            .map_err(|e| problem(format!("cannot be read: {e}")))?;
        let hex = text.trim_ascii();
        let wrong = |held: &str| {
            problem(format!(
                "{held}; a key file holds 64 hexadecimal digits (32 bytes), as `--new-key-file` writes it"
            ))
        };
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(wrong("holds something other than hexadecimal digits"));
        }
        if hex.len() != 2 * KEY_BYTES {
            return Err(wrong(&format!("holds {} hexadecimal digits", hex.len())));
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let nibble = |c: u8| (c as char).to_digit(16).expect("checked hex digit") as u8;
            key[i] = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        if key.iter().all(|b| *b == 0) {
            return Err(wrong("holds a key of zeros"));
        }
        Ok(LinkageKey(key))
    }

    /// Writes a new key file at `path`: 32 bytes from the operating system's generator, as
    /// 64 hexadecimal digits and a line break, mode 600, flushed to disk. An existing file is
    /// never overwritten: the keys made under it would stop matching.
    pub fn create(path: &Path) -> Result<(), PseudonymizeError> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| PseudonymizeError::Random(e.to_string()))?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PseudonymizeError::KeyFile {
                    path: path.to_path_buf(),
                    problem: "exists already: a key file is never overwritten (every person key \
                              made under it would stop matching); choose another name"
                        .to_string(),
                }
            } else {
                PseudonymizeError::Write {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        let mut text: String = key.iter().map(|b| format!("{b:02x}")).collect();
        text.push('\n');
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(PseudonymizeError::Write {
                path: path.to_path_buf(),
                source,
            });
        }
        sync_parent(path)
    }

    /// The 128-bit digest of a row's match key: HMAC-SHA-256 over the domain label and each
    /// (field name, normalised value), length-prefixed, cut to its first 16 bytes.
    pub fn digest(&self, parts: &[(&str, &str)]) -> [u8; 16] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        for (name, value) in parts {
            mac.update(&(name.len() as u64).to_le_bytes());
            mac.update(name.as_bytes());
            mac.update(&(value.len() as u64).to_le_bytes());
            mac.update(value.as_bytes());
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The person key of a row's match key: [`encode`] of [`LinkageKey::digest`].
    pub fn person_key(&self, parts: &[(&str, &str)]) -> String {
        encode(&self.digest(parts))
    }
}

/// A digest as a person key: `pk` and one letter `a`–`p` per nibble (34 characters for 128
/// bits). It starts with a letter and holds no digit.
pub fn encode(digest: &[u8; 16]) -> String {
    let mut s = String::with_capacity(KEY_PREFIX.len() + 32);
    s.push_str(KEY_PREFIX);
    for b in digest {
        s.push(KEY_ALPHABET[usize::from(b >> 4)] as char);
        s.push(KEY_ALPHABET[usize::from(b & 15)] as char);
    }
    s
}

/// What a run did, in counts of the program's own rows (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    /// Distinct person keys written.
    pub persons: u64,
    /// Rows keyed by each match key, in the config's order.
    pub rows_by_match_key: Vec<u64>,
    /// The output's columns after `person_key`, in the input's order.
    pub kept: Vec<String>,
    /// The input's columns that are not in the output: linkage fields and dropped columns.
    pub removed: Vec<String>,
}

/// What happens to one input column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Keep,
    Drop,
    Linkage,
    /// A sex field that is also kept (a dictionary column).
    LinkageKept,
}

/// Removes the temporary output on every path but success.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sync_parent(path: &Path) -> Result<(), PseudonymizeError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PseudonymizeError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// `path` made absolute through its folder, for a file that may not exist yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(dir.canonicalize().ok()?.join(path.file_name()?))
}

/// Checks that `output` can be written without losing anything: it is not the input, and
/// nothing exists at it yet (a raw export written there by mistake would be lost).
pub fn check_output(input: &Path, output: &Path) -> Result<(), PseudonymizeError> {
    let bad = |message: &str| PseudonymizeError::Output {
        path: output.to_path_buf(),
        message: message.to_string(),
    };
    let out = resolved(output)
        .ok_or_else(|| bad("its folder does not exist (or the path names no file)"))?;
    if input.canonicalize().is_ok_and(|i| i == out) {
        return Err(bad(
            "is the input: the raw export is never overwritten; choose another file",
        ));
    }
    if std::fs::symlink_metadata(&out).is_ok() {
        return Err(bad(
            "exists already: pseudonymize never overwrites a file; remove it or choose another name",
        ));
    }
    Ok(())
}

/// Pseudonymises the raw export `input` into `output` (see the module's documentation).
/// `today` is the latest date of birth taken. On any error nothing is left at `output` and
/// no temporary file remains.
pub fn pseudonymize(
    config: &Config,
    config_path: &Path,
    key: &LinkageKey,
    input: &Path,
    output: &Path,
    today: NaiveDate,
) -> Result<Summary, PseudonymizeError> {
    check_output(input, output)?;
    let file = File::open(input).map_err(|source| PseudonymizeError::Open {
        what: "input",
        path: input.to_path_buf(),
        source,
    })?;
    let at = |line: u64, message: String| PseudonymizeError::Input {
        path: input.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let read_error = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        let message = match e.kind() {
            csv::ErrorKind::Io(io) => format!("cannot be read: {io}"),
            _ => "cannot be read as CSV".to_string(),
        };
        at(line, message)
    };

    // The header: every column kept, dropped or a linkage field, each once.
    let mut header = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut header).map_err(read_error)? {
        return Err(at(
            1,
            "is empty: a raw export starts with a header line".into(),
        ));
    }
    let mut columns = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| {
            at(
                1,
                format!("column {} of the header is not UTF-8 text", i + 1),
            )
        })?;
        let name = if i == 0 {
            name.trim_start_matches('\u{feff}')
        } else {
            name
        };
        let name = name.trim().to_string();
        if columns.contains(&name) {
            return Err(at(
                1,
                format!("column `{name}` appears twice in the header"),
            ));
        }
        columns.push(name);
    }
    let mut roles = Vec::with_capacity(columns.len());
    for name in &columns {
        let linkage = config.fields.iter().any(|f| &f.column == name);
        let role = match (linkage, config.keep.contains(name)) {
            (true, true) => Role::LinkageKept,
            (true, false) => Role::Linkage,
            (false, true) => Role::Keep,
            (false, false) if config.drop.contains(name) => Role::Drop,
            (false, false) => {
                return Err(at(
                    1,
                    format!(
                        "column `{name}` is neither kept, dropped nor a linkage field in {}: list it \
                         in `keep` if it may leave the program, in `drop` otherwise",
                        config_path.display()
                    ),
                ));
            }
        };
        roles.push(role);
    }
    let field_at: Vec<Option<usize>> = config
        .fields
        .iter()
        .map(|f| columns.iter().position(|c| c == &f.column))
        .collect();
    if !config
        .match_keys
        .iter()
        .any(|mk| mk.fields.iter().all(|f| field_at[*f].is_some()))
    {
        let needs: Vec<String> = config
            .match_keys
            .iter()
            .enumerate()
            .map(|(i, mk)| {
                let missing: Vec<String> = mk
                    .fields
                    .iter()
                    .filter(|f| field_at[**f].is_none())
                    .map(|f| format!("`{}`", config.fields[*f].column))
                    .collect();
                format!("match key {} lacks {}", i + 1, missing.join(", "))
            })
            .collect();
        return Err(at(
            1,
            format!(
                "no match key has all its columns in the header ({})",
                needs.join("; ")
            ),
        ));
    }
    let kept: Vec<usize> = (0..columns.len())
        .filter(|i| matches!(roles[*i], Role::Keep | Role::LinkageKept))
        .collect();

    // The output goes to a temporary file beside it, renamed into place at the end.
    let out_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = TempFile {
        path: out_dir.join(format!(".{out_name}.tmp-{}", std::process::id())),
        armed: false,
    };
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| PseudonymizeError::Write { path, source }
    };
    let tmp_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(write_err(&temp.path))?;
    temp.armed = true;
    let mut sink = BufWriter::with_capacity(1 << 16, tmp_file);
    let mut chunk = csv_out::Writer::new();
    chunk.line(std::iter::once(PERSON_KEY_COLUMN).chain(kept.iter().map(|i| columns[*i].as_str())));
    let mut in_chunk = 1usize;

    let mut summary = Summary {
        rows: 0,
        persons: 0,
        rows_by_match_key: vec![0; config.match_keys.len()],
        kept: kept.iter().map(|i| columns[*i].clone()).collect(),
        removed: (0..columns.len())
            .filter(|i| matches!(roles[*i], Role::Drop | Role::Linkage))
            .map(|i| columns[i].clone())
            .collect(),
    };
    let mut persons: HashSet<[u8; 16]> = HashSet::new();
    let mut problems: Vec<String> = Vec::new();
    let mut problem_count = 0u64;
    let mut record = csv::ByteRecord::new();
    let mut values: Vec<Option<String>> = vec![None; config.fields.len()];
    while reader.read_byte_record(&mut record).map_err(read_error)? {
        let line = record.position().map_or(0, |p| p.line());
        summary.rows += 1;
        let mut fail = |message: String| {
            problem_count += 1;
            if problems.len() < LISTED_ROW_ERRORS {
                problems.push(format!("line {line}: {message}"));
            }
        };
        if record.len() != columns.len() {
            fail(format!(
                "has {} fields, the header has {}",
                record.len(),
                columns.len()
            ));
            continue;
        }
        let mut text: Vec<&str> = Vec::with_capacity(columns.len());
        let mut utf8 = true;
        for (i, raw) in record.iter().enumerate() {
            match std::str::from_utf8(raw) {
                Ok(t) => text.push(t),
                Err(_) => {
                    fail(format!("column `{}` is not UTF-8 text", columns[i]));
                    utf8 = false;
                    break;
                }
            }
        }
        if !utf8 {
            continue;
        }
        let mut readable = true;
        for (fi, field) in config.fields.iter().enumerate() {
            values[fi] = None;
            let Some(ci) = field_at[fi] else { continue };
            let v = text[ci];
            let normalised = match field.kind {
                FieldKind::Name => Ok(Some(normalise::name(
                    v,
                    field.nicknames.then_some(&config.nicknames),
                ))
                .filter(|s| !s.is_empty())),
                FieldKind::Date => normalise::date(v, config.date_order, today),
                FieldKind::Sex => {
                    normalise::sex(v, &config.sex_codes).map(|s| s.map(|s| s.code().to_string()))
                }
            };
            match normalised {
                Ok(n) => values[fi] = n,
                Err(why) => {
                    fail(format!("column `{}` {}", field.column, why.describe()));
                    readable = false;
                }
            }
        }
        if !readable {
            continue;
        }
        let chosen = config
            .match_keys
            .iter()
            .position(|mk| mk.fields.iter().all(|f| values[*f].is_some()));
        let Some(mi) = chosen else {
            let lacks: Vec<String> = config
                .match_keys
                .iter()
                .enumerate()
                .map(|(i, mk)| {
                    let empty: Vec<String> = mk
                        .fields
                        .iter()
                        .filter(|f| values[**f].is_none())
                        .map(|f| format!("`{}`", config.fields[*f].column))
                        .collect();
                    format!("match key {} lacks {}", i + 1, empty.join(", "))
                })
                .collect();
            fail(format!("has no complete match key ({})", lacks.join("; ")));
            continue;
        };
        if problem_count > 0 {
            // A file that fails writes nothing: only check the rest.
            continue;
        }
        let parts: Vec<(&str, &str)> = config.match_keys[mi]
            .fields
            .iter()
            .map(|f| {
                (
                    config.fields[*f].name.as_str(),
                    values[*f].as_deref().expect("chosen match key is complete"),
                )
            })
            .collect();
        let digest = key.digest(&parts);
        persons.insert(digest);
        summary.rows_by_match_key[mi] += 1;
        let person_key = encode(&digest);
        chunk.line(std::iter::once(person_key.as_str()).chain(kept.iter().map(|i| text[*i])));
        in_chunk += 1;
        if in_chunk >= LINES_PER_CHUNK {
            let body = std::mem::take(&mut chunk).finish();
            sink.write_all(body.as_bytes())
                .map_err(write_err(&temp.path))?;
            in_chunk = 0;
        }
    }
    if problem_count > 0 {
        return Err(PseudonymizeError::Rows {
            path: input.to_path_buf(),
            count: problem_count,
            lines: problems,
        });
    }
    if summary.rows == 0 {
        return Err(at(
            2,
            "holds a header but no row: there is nothing to pseudonymise".into(),
        ));
    }
    let body = chunk.finish();
    sink.write_all(body.as_bytes())
        .map_err(write_err(&temp.path))?;
    let file = sink.into_inner().map_err(|e| PseudonymizeError::Write {
        path: temp.path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(write_err(&temp.path))?;
    drop(file);
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(PseudonymizeError::Output {
            path: output.to_path_buf(),
            message: "appeared while pseudonymize ran; it was left as it is".into(),
        });
    }
    std::fs::rename(&temp.path, output).map_err(write_err(output))?;
    temp.armed = false;
    sync_parent(output)?;
    summary.persons = persons.len() as u64;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_pk_and_32_letters_without_a_digit() {
        let key = LinkageKey::from_bytes([7; KEY_BYTES]);
        for i in 0..2000u32 {
            let v = i.to_string();
            let k = key.person_key(&[("last_name", &v), ("dob", "1980-03-12")]);
            assert_eq!(k.len(), 34, "{k}");
            assert!(k.starts_with(KEY_PREFIX), "{k}");
            assert!(k[2..].bytes().all(|b| (b'a'..=b'p').contains(&b)), "{k}");
        }
        assert_eq!(encode(&[0; 16]), format!("pk{}", "a".repeat(32)));
        assert_eq!(encode(&[0xff; 16]), format!("pk{}", "p".repeat(32)));
        assert_eq!(&encode(&[0x1f; 16])[..4], "pkbp");
    }

    #[test]
    fn the_key_separates_fields_and_values() {
        let key = LinkageKey::from_bytes([1; KEY_BYTES]);
        let a = key.person_key(&[("a", "bc"), ("d", "")]);
        let b = key.person_key(&[("a", "b"), ("cd", "")]);
        let c = key.person_key(&[("ab", "c"), ("d", "")]);
        assert!(a != b && b != c && a != c);
        let other = LinkageKey::from_bytes([2; KEY_BYTES]);
        assert_ne!(
            key.person_key(&[("a", "bc")]),
            other.person_key(&[("a", "bc")])
        );
        assert_eq!(format!("{key:?}"), "LinkageKey(..)");
    }

    /// HMAC-SHA-256 as RFC 4231's test case 2 computes it: the digest is the standard one.
    #[test]
    fn the_mac_is_rfc_4231_hmac_sha256() {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
