//! File-level checks of a program export: which table it holds, its hash, encoding, delimiter
//! and header. Anything wrong here refuses the whole file before a row is read.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::IngestError;
use super::identifiers::{identifier_column, identifier_value};
use super::rows::redacted;
use crate::dictionary::{Dictionary, Table};
use crate::warehouse::hex;

/// The header of a file and where its rows start.
#[derive(Debug, Clone)]
pub struct Header {
    pub fields: Vec<String>,
    /// Byte offset of the first data line.
    pub body_offset: u64,
}

/// Which table a file holds: `forced` when given, else the table its name starts with, as in
/// `overdose_events.csv` or `overdose_events-2025Q1.csv`.
pub fn detect_table<'d>(
    dict: &'d Dictionary,
    path: &Path,
    forced: Option<&str>,
) -> Result<&'d Table, IngestError> {
    let known = || dict.table_names().join(", ");
    if let Some(name) = forced {
        return dict
            .table(name)
            .ok_or_else(|| IngestError::UnknownForcedTable {
                name: name.to_string(),
                known: known(),
            });
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    dict.tables()
        .iter()
        .filter(|t| {
            stem == t.name
                || stem
                    .strip_prefix(t.name.as_str())
                    .is_some_and(|rest| rest.starts_with(['_', '-', '.', ' ']))
        })
        .max_by_key(|t| t.name.len())
        .ok_or_else(|| IngestError::UnknownTable {
            file: path.to_path_buf(),
            known: known(),
        })
}

/// SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, IngestError> {
    let file = File::open(path).map_err(IngestError::io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(IngestError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Reads and checks the header line: encoding, delimiter, and that the file has rows.
pub fn read_header(path: &Path) -> Result<Header, IngestError> {
    let mut file = File::open(path).map_err(IngestError::io(path))?;
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut file)
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(IngestError::io(path))?;
    let file_name = path.to_path_buf();
    if head.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(IngestError::Empty { file: file_name });
    }
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(IngestError::Utf16 { file: file_name });
    }
    let bom = if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let Some(nl) = memchr::memchr(b'\n', &head[bom..]) else {
        return if head.len() >= 64 * 1024 {
            Err(IngestError::OverlongLine {
                file: file_name,
                line: 1,
                bytes: head.len(),
                max: super::rows::MAX_LINE_BYTES,
            })
        } else {
            Err(IngestError::HeaderOnly { file: file_name })
        };
    };
    let raw = &head[bom..bom + nl];
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = std::str::from_utf8(line).map_err(|e| IngestError::Encoding {
        file: file_name.clone(),
        line: 1,
        byte: line[e.valid_up_to()],
    })?;
    if !text.contains(',') {
        for d in [';', '\t', '|'] {
            if text.contains(d) {
                return Err(IngestError::Delimiter {
                    file: file_name,
                    found: d,
                });
            }
        }
    }
    let fields = text
        .split(',')
        .map(|f| f.trim().trim_matches('"').trim().to_string())
        .collect();
    let body_offset = (bom + nl + 1) as u64;
    let rest = &head[bom + nl + 1..];
    if rest.iter().all(|b| b.is_ascii_whitespace())
        && file.metadata().map_or(0, |m| m.len()) <= head.len() as u64
    {
        return Err(IngestError::HeaderOnly { file: file_name });
    }
    Ok(Header {
        fields,
        body_offset,
    })
}

/// A header name as an error may show it: as written when it is shaped like a column name
/// (a letter, then letters, digits and `_`), else by its shape only ([`redacted`]), since a
/// header line can be a row of data.
fn shown_name(f: &str) -> String {
    let plain = f.len() <= 64
        && f.starts_with(|c: char| c.is_ascii_alphabetic())
        && f.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        f.to_string()
    } else {
        redacted(f.as_bytes())
    }
}

/// Maps each table column to its position in the header. Refuses the file whole when a
/// header cell holds a value that looks like a direct identifier (the header is a line like
/// any other, and may be a row of data) or a column's name does, and otherwise lists missing,
/// unknown and repeated columns together. A first line that names none of the table's
/// columns is most likely a row of data: its cells are not shown.
pub fn map_columns(path: &Path, table: &Table, header: &Header) -> Result<Vec<usize>, IngestError> {
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
    for f in &header.fields {
        if table.column(f).is_none()
            && let Some(kind) = identifier_column(f)
        {
            return Err(IngestError::DirectIdentifier {
                file: path.to_path_buf(),
                place: format!("column '{f}'"),
                kind: kind.describe(),
            });
        }
    }
    let mut missing = Vec::new();
    let mut positions = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        match header.fields.iter().position(|f| *f == c.name) {
            Some(p) => positions.push(p),
            None => missing.push(c.name.clone()),
        }
    }
    let unknown: Vec<String> = header
        .fields
        .iter()
        .filter(|f| table.column(f).is_none())
        .map(|f| shown_name(f))
        .collect();
    let mut repeated: Vec<String> = header
        .fields
        .iter()
        .enumerate()
        .filter(|(i, f)| header.fields[..*i].contains(f))
        .map(|(_, f)| shown_name(f))
        .collect();
    repeated.dedup();
    if missing.is_empty() && unknown.is_empty() && repeated.is_empty() {
        return Ok(positions);
    }
    if positions.is_empty() {
        return Err(IngestError::Header {
            file: path.to_path_buf(),
            table: table.name.clone(),
            details: format!(
                "its first line names none of the table's columns, so the file seems to lack its header line (the line's {} cells are not shown, since they may be a row of data); export it with the header",
                header.fields.len()
            ),
            expected: table.column_names().collect::<Vec<_>>().join(","),
        });
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing columns: {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!("unknown columns: {}", unknown.join(", ")));
    }
    if !repeated.is_empty() {
        parts.push(format!("repeated columns: {}", repeated.join(", ")));
    }
    Err(IngestError::Header {
        file: path.to_path_buf(),
        table: table.name.clone(),
        details: parts.join("; "),
        expected: table.column_names().collect::<Vec<_>>().join(","),
    })
}
