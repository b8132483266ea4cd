//! The warehouse's secret: 32 bytes from the OS generator, drawn at `budget init` and kept
//! in the ledger, whose first half keys the cell-choice hash. It never leaves the warehouse.

use std::path::Path;

use rusqlite::params;

use super::{Ledger, LedgerError, Result, sql_err};

/// Draws the secret and stores it, inside `budget init`'s transaction.
pub(super) fn create(tx: &rusqlite::Transaction<'_>, path: &Path) -> Result<()> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|err| LedgerError::Invalid(format!("the OS random generator failed: {err}")))?;
    tx.execute(
        "INSERT INTO secret (id, key) VALUES (1, ?1)",
        params![&secret[..]],
    )
    .map_err(sql_err(path))?;
    Ok(())
}

impl Ledger {
    /// The key of the cell-choice hash. It never leaves the warehouse.
    pub fn cell_choice_key(&self) -> Result<[u8; 16]> {
        let key: Vec<u8> = self
            .conn
            .query_row("SELECT key FROM secret WHERE id = 1", [], |r| r.get(0))
            .map_err(self.e())?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&key[..16]);
        Ok(out)
    }
}
