//! The publication record of the standard metrics: which release publishes each quarter,
//! and which publication superseded which. It lives in the ledger's SQLite file, beside the
//! releases it points to, and these are [`Ledger`] methods on the ledger's connection.
//! Append-only like the rest of the ledger: a republication adds a row that names the one it
//! supersedes; nothing is updated.
//!
//! A publication's document is more than its releases' numbers: it also says which figures
//! are complete, from the steward's declarations in force when it was made. So a later
//! `complete-through` followed by `publish` adds a row with the same releases (nothing
//! debited) and the new document, superseding the old one; only a document identical to the
//! latest one is recognised as already stored.
//!
//! The public programs table is part of what is published: `publish` stores a copy of it
//! (`published_programs`) in the transaction that records the publication, whenever it
//! differs from the copy stored last, so the API serves programs without reading any data.
//!
//! The tables are created by the first publication (`CREATE … IF NOT EXISTS`), so ledgers made
//! before them need no migration; a ledger without them simply has no publications, or no
//! stored programs.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, Result, now, sql_err};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS publications (
    id INTEGER PRIMARY KEY,
    quarter TEXT NOT NULL,
    release_id INTEGER NOT NULL,
    dataset_version TEXT NOT NULL,
    supersedes INTEGER,
    approver TEXT NOT NULL,
    published_at TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS publications_no_update BEFORE UPDATE ON publications
BEGIN SELECT RAISE(ABORT, 'publications are append-only'); END;
CREATE TRIGGER IF NOT EXISTS publications_no_delete BEFORE DELETE ON publications
BEGIN SELECT RAISE(ABORT, 'publications are append-only'); END;
CREATE TABLE IF NOT EXISTS published_programs (
    id INTEGER PRIMARY KEY,
    publication_id INTEGER NOT NULL,
    programs TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS published_programs_no_update BEFORE UPDATE ON published_programs
BEGIN SELECT RAISE(ABORT, 'published programs are append-only'); END;
CREATE TRIGGER IF NOT EXISTS published_programs_no_delete BEFORE DELETE ON published_programs
BEGIN SELECT RAISE(ABORT, 'published programs are append-only'); END;
";

/// A publication as stored: public, like the release it points to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPublication {
    pub id: i64,
    pub quarter: String,
    pub release_id: i64,
    pub dataset_version: String,
    /// The publication this one replaced: after new data (`publish --republish`), or with
    /// the same releases when later declarations changed which figures are complete.
    pub supersedes: Option<i64>,
    /// The publication that replaced this one, if any.
    pub superseded_by: Option<i64>,
    pub approver: String,
    pub published_at: String,
    /// The published figures: per program, aggregates, completeness (JSON), read with
    /// [`Publication::from_document`](super::Publication::from_document), which knows their
    /// versions. Stored text that is not JSON reads as `null`, which that refuses.
    pub document: serde_json::Value,
}

/// What `publish` records.
#[derive(Debug, Clone)]
pub struct NewPublication<'a> {
    pub quarter: &'a str,
    pub release_id: i64,
    pub dataset_version: &'a str,
    pub approver: &'a str,
    pub document: &'a serde_json::Value,
}

impl Ledger {
    /// Records a quarter's publication in one IMMEDIATE transaction. When the quarter's
    /// latest publication already points at the same release *and* holds the same document
    /// (byte for byte, as stored), nothing is added and its id is returned; otherwise the new
    /// row supersedes the latest one. The same releases with another document (a later
    /// `complete-through` made more figures complete) are a new row, which spends nothing:
    /// the debits belong to the releases.
    pub fn record_publication(&mut self, p: &NewPublication<'_>) -> Result<i64> {
        self.store_publication(p, None)
    }

    /// [`Ledger::record_publication`], storing in the same transaction the public programs
    /// table the publication was made from (`programs`, a JSON document) when it differs from
    /// the one stored last ([`Ledger::published_programs`]).
    pub fn record_publication_with_programs(
        &mut self,
        p: &NewPublication<'_>,
        programs: &serde_json::Value,
    ) -> Result<i64> {
        self.store_publication(p, Some(programs))
    }

    fn store_publication(
        &mut self,
        p: &NewPublication<'_>,
        programs: Option<&serde_json::Value>,
    ) -> Result<i64> {
        let path = self.path.clone();
        let e = sql_err(&path);
        let document = serde_json::to_string(p.document).expect("documents serialise");
        let id = crate::sqlite::immediate(&mut self.conn, &e, |tx| {
            tx.execute_batch(SCHEMA).map_err(&e)?;
            let latest: Option<(i64, i64, String)> = tx
                .query_row(
                    "SELECT id, release_id, document FROM publications WHERE quarter = ?1 ORDER BY id DESC LIMIT 1",
                    params![p.quarter],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(&e)?;
            let id = match &latest {
                Some((id, release, stored)) if *release == p.release_id && *stored == document => {
                    *id
                }
                _ => {
                    tx.execute(
                        "INSERT INTO publications (quarter, release_id, dataset_version, supersedes, approver, published_at, document)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            p.quarter,
                            p.release_id,
                            p.dataset_version,
                            latest.as_ref().map(|(id, _, _)| *id),
                            p.approver,
                            now(),
                            document,
                        ],
                    )
                    .map_err(&e)?;
                    tx.last_insert_rowid()
                }
            };
            if let Some(programs) = programs {
                let programs = serde_json::to_string(programs).expect("documents serialise");
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT programs FROM published_programs ORDER BY id DESC LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(&e)?;
                if stored.as_ref() != Some(&programs) {
                    tx.execute(
                        "INSERT INTO published_programs (publication_id, programs) VALUES (?1, ?2)",
                        params![id, programs],
                    )
                    .map_err(&e)?;
                }
            }
            // The publication's entry on the public chain, in the same transaction.
            crate::ledger::chain::extend(tx, &path)?;
            Ok(id)
        })?;
        // Then the watermark, which now counts this publication's entry.
        self.after_commit()?;
        Ok(id)
    }

    /// Every publication, oldest first, optionally of one quarter.
    pub fn publications(&self, quarter: Option<&str>) -> Result<Vec<StoredPublication>> {
        let e = self.e();
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'publications'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.id, p.quarter, p.release_id, p.dataset_version, p.supersedes,
                        (SELECT n.id FROM publications n WHERE n.supersedes = p.id),
                        p.approver, p.published_at, p.document
                 FROM publications p
                 WHERE ?1 IS NULL OR p.quarter = ?1
                 ORDER BY p.id",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![quarter], |r| {
                let document: String = r.get(8)?;
                Ok(StoredPublication {
                    id: r.get(0)?,
                    quarter: r.get(1)?,
                    release_id: r.get(2)?,
                    dataset_version: r.get(3)?,
                    supersedes: r.get(4)?,
                    superseded_by: r.get(5)?,
                    approver: r.get(6)?,
                    published_at: r.get(7)?,
                    document: serde_json::from_str(&document).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&e)
    }

    /// The quarter's current publication: the latest, which supersedes the others.
    pub fn current_publication(&self, quarter: &str) -> Result<Option<StoredPublication>> {
        Ok(self.publications(Some(quarter))?.pop())
    }

    /// The public programs table stored with the latest publication (a JSON document, as
    /// `publish` gave it), or `None` when no publication stored one. Works on a read-only
    /// ledger.
    pub fn published_programs(&self) -> Result<Option<serde_json::Value>> {
        let e = self.e();
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'published_programs'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if !exists {
            return Ok(None);
        }
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT programs FROM published_programs ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        Ok(stored.map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
    }
}
