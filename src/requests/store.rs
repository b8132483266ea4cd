//! The SQLite file of tokens, requests and decisions, and the steward's approval.
//!
//! **Schema versions** (`PRAGMA user_version`). 0: a request named its researcher only. 1:
//! each request carries the id of the token that submitted it, and belongs to that token:
//! a later token for the same name (after `tokens revoke`) sees none of it. [`Queue::open`]
//! migrates an older file in place, in one IMMEDIATE transaction; a stored request goes to
//! the token that was active for its name when it was submitted. 2: each request has a
//! public id, 16 random bytes in hex, so that an id says nothing of how many requests others
//! made; a stored request keeps its sequential id as its public id, in digits. The row id
//! stays internal (decisions refer to it; the steward's list is in its order). A file of a
//! newer version is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Quote, RequestsError, Result, allocation_of};
use crate::privacy::{PrivacyError, PublicRelease, ReleaseRequest, ReleaseSpec, release};
use crate::sqlite::{self, Migration};
use crate::warehouse::hex;

/// The requests file of a warehouse folder.
pub const REQUESTS_FILE: &str = "requests.sqlite";

/// The prefix of every token, so a leaked one is easy to recognise in logs and scanners.
const TOKEN_PREFIX: &str = "owr_";

/// The longest researcher name.
const MAX_NAME: usize = 64;

/// The most requests one researcher may have waiting for the steward (pending, or failed
/// after a debit, which the researcher also sees as pending). One more is refused (429
/// `too_many_pending` over the API) until the steward decides one. Twenty is more than a
/// steward reviews in a sitting, and it bounds what one token can add to `requests.sqlite`
/// (each request holds a spec and a quote, up to the 64 KiB body limit) to about a megabyte
/// and a half.
pub const MAX_PENDING_PER_RESEARCHER: usize = 20;

/// Counts the requests of researcher `?1` that wait for the steward: no decision yet, or a
/// run that failed after its debit.
const COUNT_PENDING: &str = "
SELECT count(*) FROM requests q
WHERE q.researcher = ?1
  AND coalesce(
        (SELECT d.state FROM decisions d WHERE d.request_id = q.id ORDER BY d.id DESC LIMIT 1),
        'pending'
      ) IN ('pending', 'failed')";

/// The requests file's schema version (`PRAGMA user_version`); see the module docs.
pub const SCHEMA_VERSION: i64 = 2;

/// What a request id looks like, as the OpenAPI document states it: 16 random bytes in
/// lowercase hex, or the digits of an id stored when ids were sequential.
/// [`is_request_id`] checks the same.
pub const REQUEST_ID_PATTERN: &str = "^(?:[0-9a-f]{32}|[1-9][0-9]{0,18})$";

/// Whether `id` has the form of a request id ([`REQUEST_ID_PATTERN`]).
pub fn is_request_id(id: &str) -> bool {
    let b = id.as_bytes();
    let random = b.len() == 32 && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let sequential =
        (1..=19).contains(&b.len()) && b[0] != b'0' && b.iter().all(u8::is_ascii_digit);
    random || sequential
}

/// A new request id: 16 bytes from the OS generator, in hex. It is unrelated to any other
/// request, so it counts nothing.
fn new_request_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| RequestsError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// Version 1: the token of each request. SQLite adds a column without touching a row; filling
/// it is an UPDATE, so the append-only trigger is dropped and made again around it, in the
/// migration's transaction. A stored request goes to the token active for its name when it
/// was submitted; where times are equal to the second, to the older token (which hides it
/// from the newer holder rather than showing it to them), and to none if no token fits.
const MIGRATE_V1: &str = "
ALTER TABLE requests ADD COLUMN token_id INTEGER REFERENCES tokens (id);
DROP TRIGGER IF EXISTS requests_no_update;
UPDATE requests SET token_id = (
    SELECT t.id FROM tokens t
    WHERE t.name = requests.researcher
      AND t.created_at <= requests.submitted_at
      AND (t.revoked_at IS NULL OR t.revoked_at >= requests.submitted_at)
    ORDER BY t.id
    LIMIT 1
);
CREATE TRIGGER requests_no_update BEFORE UPDATE ON requests
BEGIN SELECT RAISE(ABORT, 'requests are append-only'); END;
CREATE INDEX IF NOT EXISTS requests_by_token ON requests (token_id, id);
CREATE TRIGGER IF NOT EXISTS requests_need_a_token BEFORE INSERT ON requests
WHEN NEW.token_id IS NULL
BEGIN SELECT RAISE(ABORT, 'a request needs the id of the token that submits it'); END;
";

/// Version 2: the public id of each request. A stored request keeps its sequential id, as
/// digits, so the ids researchers were given still work; a new one gets random bytes.
const MIGRATE_V2: &str = "
ALTER TABLE requests ADD COLUMN public_id TEXT;
DROP TRIGGER IF EXISTS requests_no_update;
UPDATE requests SET public_id = CAST(id AS TEXT);
CREATE TRIGGER requests_no_update BEFORE UPDATE ON requests
BEGIN SELECT RAISE(ABORT, 'requests are append-only'); END;
CREATE UNIQUE INDEX IF NOT EXISTS requests_public_id ON requests (public_id);
CREATE TRIGGER IF NOT EXISTS requests_need_a_public_id BEFORE INSERT ON requests
WHEN NEW.public_id IS NULL
BEGIN SELECT RAISE(ABORT, 'a request needs its public id'); END;
";

/// The migrations that bring a requests file of an older schema up to [`SCHEMA_VERSION`].
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        apply: to_v1,
    },
    Migration {
        version: 2,
        apply: to_v2,
    },
];

fn to_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(MIGRATE_V1)
}

fn to_v2(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(MIGRATE_V2)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('researcher')),
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_one_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    researcher TEXT NOT NULL,
    purpose TEXT NOT NULL,
    rho_asked REAL NOT NULL,
    spec TEXT NOT NULL,
    quote TEXT NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    state TEXT NOT NULL CHECK (state IN ('rejected', 'released', 'failed')),
    why TEXT,
    release_id INTEGER,
    public INTEGER NOT NULL DEFAULT 0,
    decided_by TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS requests_no_update BEFORE UPDATE ON requests
BEGIN SELECT RAISE(ABORT, 'requests are append-only'); END;
CREATE INDEX IF NOT EXISTS decisions_by_request ON decisions (request_id, id);
CREATE INDEX IF NOT EXISTS requests_by_researcher ON requests (researcher, id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
";

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submit requests and read their own.
    Researcher,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Researcher => "researcher",
        }
    }
}

/// A token as the steward sees it: never the token itself, which is shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's own id: what its requests belong to.
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Who presented an active token: the token's own id and the researcher's name. Requests
/// belong to the token; the name, which a later token may reuse after a revocation, names
/// the allocation that pays (`researcher:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    pub token_id: i64,
    pub name: String,
}

/// Where a request stands, as the steward sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Rejected,
    Released,
    /// The release failed after its debit: the steward's to handle; the researcher sees
    /// `pending`.
    Failed,
}

impl RequestState {
    fn parse(s: &str) -> RequestState {
        match s {
            "rejected" => RequestState::Rejected,
            "released" => RequestState::Released,
            "failed" => RequestState::Failed,
            _ => RequestState::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Rejected => "rejected",
            RequestState::Released => "released",
            RequestState::Failed => "failed",
        }
    }
}

/// A stored request with its decision, for the steward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// The public id ([`REQUEST_ID_PATTERN`]).
    pub id: String,
    pub researcher: String,
    /// The token that submitted it, which alone may read it; none for a request stored
    /// before requests carried their token when no token of its name fitted.
    pub token_id: Option<i64>,
    pub purpose: String,
    pub rho_asked: f64,
    /// The spec as it will run: its allocation is the researcher's.
    pub spec: serde_json::Value,
    /// The cost and accuracy computed when it was submitted.
    pub quote: Quote,
    pub submitted_at: String,
    pub state: RequestState,
    /// The steward's words, on a rejection.
    pub why: Option<String>,
    pub release_id: Option<i64>,
    /// Whether the release is public (`approve --public`) or the researcher's alone.
    pub public: bool,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

/// A steward's decision on a pending request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Reject { why: String },
    Released { release_id: i64, public: bool },
    Failed { release_id: i64 },
}

/// What a researcher sees of their own request: pending, rejected with the steward's
/// words, or released with the noisy numbers. Never `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResearcherView {
    /// 32 lowercase hex digits (or the digits of an id stored when ids were sequential).
    pub id: String,
    /// `pending`, `rejected` or `released`.
    pub state: String,
    pub purpose: String,
    pub rho_asked: f64,
    pub submitted_at: String,
    #[schema(value_type = Object)]
    pub quote: Quote,
    /// The steward's words, when rejected.
    pub why: Option<String>,
    /// The released numbers, when released.
    #[schema(value_type = Option<Object>)]
    pub release: Option<PublicRelease>,
}

/// A line of a researcher's own list (`GET /v1/requests`): where a request stands, without
/// its quote or numbers (`GET /v1/requests/{id}` has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestSummary {
    pub id: String,
    /// `pending`, `rejected` or `released`.
    pub state: String,
    pub purpose: String,
    pub rho_asked: f64,
    pub submitted_at: String,
}

impl StoredRequest {
    /// The researcher's line of their own list. A failed run is `pending` to them.
    pub fn summary(&self) -> RequestSummary {
        let state = match self.state {
            RequestState::Rejected => "rejected",
            RequestState::Released => "released",
            RequestState::Pending | RequestState::Failed => "pending",
        };
        RequestSummary {
            id: self.id.clone(),
            state: state.to_string(),
            purpose: self.purpose.clone(),
            rho_asked: self.rho_asked,
            submitted_at: self.submitted_at.clone(),
        }
    }

    /// The researcher's view; `release` is the public view of its release, when released.
    pub fn researcher_view(&self, release: Option<PublicRelease>) -> ResearcherView {
        let (state, why, release) = match self.state {
            RequestState::Rejected => ("rejected", self.why.clone(), None),
            RequestState::Released if release.is_some() => ("released", None, release),
            _ => ("pending", None, None),
        };
        ResearcherView {
            id: self.id.clone(),
            state: state.to_string(),
            purpose: self.purpose.clone(),
            rho_asked: self.rho_asked,
            submitted_at: self.submitted_at.clone(),
            quote: self.quote.clone(),
            why,
            release,
        }
    }
}

/// The requests file, open.
pub struct Queue {
    path: PathBuf,
    conn: Connection,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("path", &self.path).finish()
    }
}

/// Maps SQLite's errors on the requests file at `path`: busy (another writer held it past the
/// timeout) is [`RequestsError::Busy`], anything else [`RequestsError::Sqlite`].
fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> RequestsError + '_ {
    move |source| {
        if sqlite::is_busy(&source) {
            RequestsError::Busy
        } else {
            RequestsError::Sqlite {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// SHA-256 of a token, as stored. Tokens carry 256 random bits, so a fast hash is enough:
/// nobody can search that space, and the stored hash is useless to whoever reads the file.
fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether two byte strings are equal, compared in time that does not depend on where they
/// differ (`subtle`'s constant-time equality); strings of different lengths are unequal.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(RequestsError::Invalid(format!(
            "a researcher's name is 1 to {MAX_NAME} ASCII letters, digits, '-', '_' or '.'; got {name:?}"
        )))
    }
}

impl Queue {
    /// The requests file of a warehouse folder.
    pub fn path_in(warehouse: &Path) -> PathBuf {
        warehouse.join(REQUESTS_FILE)
    }

    /// Opens the requests file of a warehouse, creating it and its tables when missing.
    pub fn open(warehouse: &Path) -> Result<Queue> {
        if !warehouse.is_dir() {
            return Err(RequestsError::Invalid(format!(
                "no warehouse folder at {}",
                warehouse.display()
            )));
        }
        let path = Self::path_in(warehouse);
        let e = sql_err(&path);
        let mut conn = sqlite::open(&path, Duration::from_secs(30)).map_err(&e)?;
        sqlite::immediate(&mut conn, &e, |tx| {
            // Read under the write lock: another process may have upgraded it meanwhile.
            let found = sqlite::schema_version(tx).map_err(&e)?;
            if found > SCHEMA_VERSION {
                return Err(RequestsError::NewerSchema {
                    path: path.clone(),
                    found,
                });
            }
            // A new file gets the first version's tables and then every migration, like an
            // old one: one way to the current schema.
            tx.execute_batch(SCHEMA).map_err(&e)?;
            if found < SCHEMA_VERSION {
                sqlite::upgrade(tx, found, SCHEMA_VERSION, MIGRATIONS).map_err(&e)?;
            }
            Ok(())
        })?;
        drop(e);
        Ok(Queue { path, conn })
    }

    fn e(&self) -> impl Fn(rusqlite::Error) -> RequestsError + '_ {
        sql_err(&self.path)
    }

    /// Creates a token for `name` and returns it: the only time it is ever shown. Only its
    /// hash is stored.
    pub fn create_token(&mut self, name: &str, role: Role) -> Result<String> {
        check_name(name)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| RequestsError::Random(e.to_string()))?;
        let token = format!("{TOKEN_PREFIX}{}", hex(&secret));
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            let active: i64 = tx
                .query_row(
                    "SELECT count(*) FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            if active > 0 {
                return Err(RequestsError::TokenExists(name.to_string()));
            }
            tx.execute(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    name,
                    role.as_str(),
                    hex(&token_hash(&token)),
                    crate::warehouse::now_rfc3339()
                ],
            )
            .map_err(&e)?;
            Ok(())
        })?;
        Ok(token)
    }

    /// Revokes `name`'s active token: from now on it gets 401.
    pub fn revoke_token(&mut self, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, crate::warehouse::now_rfc3339()],
            )
            .map_err(self.e())?;
        if n == 0 {
            return Err(RequestsError::NoSuchToken(name.to_string()));
        }
        Ok(())
    }

    /// SQLite's `data_version`: it changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64> {
        sqlite::data_version(&self.conn).map_err(self.e())
    }

    /// Every token ever created, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, created_at, revoked_at FROM tokens ORDER BY id")
            .map_err(self.e())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: Role::Researcher,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })
            .map_err(self.e())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.e())
    }

    /// The holder of a presented token, if it is active: the token's id and its name. The
    /// presented token's hash is compared with every active token's hash in constant time,
    /// and the loop does not stop at a match, so the time taken says nothing about which
    /// bytes matched.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Holder>> {
        let wanted = hex(&token_hash(presented));
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, name, hash FROM tokens WHERE revoked_at IS NULL")
            .map_err(self.e())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        let mut found = None;
        for (token_id, name, stored) in rows {
            if constant_time_eq(wanted.as_bytes(), stored.as_bytes()) {
                found = Some(Holder { token_id, name });
            }
        }
        Ok(found)
    }

    /// How many of `researcher`'s requests wait for the steward (pending, or failed after a
    /// debit).
    pub fn pending_count(&self, researcher: &str) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row(COUNT_PENDING, params![researcher], |r| r.get(0))
            .map_err(self.e())?;
        Ok(n.max(0) as usize)
    }

    /// Stores a checked submission of `holder` as pending and returns its id, a random one
    /// (it belongs to the holder's token); refused with
    /// [`RequestsError::TooManyPending`] when the researcher's name already has
    /// [`MAX_PENDING_PER_RESEARCHER`] requests waiting. The count and the insert are one
    /// write transaction, so concurrent submissions cannot pass the cap together.
    pub fn submit(
        &mut self,
        holder: &Holder,
        purpose: &str,
        rho_asked: f64,
        spec: &ReleaseSpec,
        quote: &Quote,
    ) -> Result<String> {
        check_name(&holder.name)?;
        let id = new_request_id()?;
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            let pending: i64 = tx
                .query_row(COUNT_PENDING, params![holder.name], |r| r.get(0))
                .map_err(&e)?;
            if pending >= MAX_PENDING_PER_RESEARCHER as i64 {
                return Err(RequestsError::TooManyPending {
                    limit: MAX_PENDING_PER_RESEARCHER,
                });
            }
            tx.execute(
                "INSERT INTO requests (public_id, researcher, token_id, purpose, rho_asked, spec, quote, submitted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    holder.name,
                    holder.token_id,
                    purpose,
                    rho_asked,
                    serde_json::to_string(spec).expect("specs serialise"),
                    serde_json::to_string(quote).expect("quotes serialise"),
                    crate::warehouse::now_rfc3339()
                ],
            )
            .map_err(&e)?;
            Ok(())
        })?;
        Ok(id)
    }

    fn query(&self, filter: &str, p: impl rusqlite::Params) -> Result<Vec<StoredRequest>> {
        let sql = format!(
            "SELECT q.public_id, q.researcher, q.purpose, q.rho_asked, q.spec, q.quote, q.submitted_at,
                    d.state, d.why, d.release_id, coalesce(d.public, 0), d.decided_by, d.decided_at,
                    q.token_id
             FROM requests q
             LEFT JOIN decisions d ON d.id = (SELECT max(x.id) FROM decisions x WHERE x.request_id = q.id)
             {filter} ORDER BY q.id"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.e())?;
        let rows = stmt
            .query_map(p, |r| {
                let spec: String = r.get(4)?;
                let quote: String = r.get(5)?;
                let state: Option<String> = r.get(7)?;
                Ok((
                    StoredRequest {
                        id: r.get(0)?,
                        researcher: r.get(1)?,
                        token_id: r.get(13)?,
                        purpose: r.get(2)?,
                        rho_asked: r.get(3)?,
                        spec: serde_json::Value::Null,
                        quote: Quote::default(),
                        submitted_at: r.get(6)?,
                        state: state
                            .as_deref()
                            .map(RequestState::parse)
                            .unwrap_or(RequestState::Pending),
                        why: r.get(8)?,
                        release_id: r.get(9)?,
                        public: r.get::<_, i64>(10)? != 0,
                        decided_by: r.get(11)?,
                        decided_at: r.get(12)?,
                    },
                    spec,
                    quote,
                ))
            })
            .map_err(self.e())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.e())?;
        rows.into_iter()
            .map(|(mut q, spec, quote)| {
                let bad = |err: serde_json::Error| {
                    RequestsError::Invalid(format!(
                        "request {} in {} holds bad JSON: {err}",
                        q.id,
                        self.path.display()
                    ))
                };
                q.spec = serde_json::from_str(&spec).map_err(bad)?;
                q.quote = serde_json::from_str(&quote).map_err(bad)?;
                Ok(q)
            })
            .collect()
    }

    /// Every request, oldest first.
    pub fn list(&self) -> Result<Vec<StoredRequest>> {
        self.query("", [])
    }

    /// The requests of one token, oldest first: what its holder may list.
    pub fn list_of(&self, token_id: i64) -> Result<Vec<StoredRequest>> {
        self.query("WHERE q.token_id = ?1", params![token_id])
    }

    /// One request, by its public id.
    pub fn get(&self, id: &str) -> Result<StoredRequest> {
        self.query("WHERE q.public_id = ?1", params![id])?
            .pop()
            .ok_or_else(|| RequestsError::NoSuchRequest(id.to_string()))
    }

    /// The release ids of researchers' releases that the steward made public.
    pub fn public_release_ids(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT release_id FROM decisions WHERE state = 'released' AND public = 1 ORDER BY release_id",

            )
            .map_err(self.e())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.e())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.e())
    }

    /// Records the decision on a pending request, once: a second decision is refused.
    pub fn decide(&mut self, id: &str, decision: &Decision, steward: &str) -> Result<()> {
        let path = self.path.clone();
        let e = sql_err(&path);
        sqlite::immediate(&mut self.conn, &e, |tx| {
            // The decision refers to the request's row id, which never leaves this file.
            let found: Option<(i64, Option<String>)> = tx
                .query_row(
                    "SELECT q.id,
                        (SELECT d.state FROM decisions d WHERE d.request_id = q.id ORDER BY d.id DESC LIMIT 1)
                 FROM requests q WHERE q.public_id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&e)?;
            let row = match found {
                None => return Err(RequestsError::NoSuchRequest(id.to_string())),
                // A run that failed after its debit is the steward's to close: reject it, or run
                // it again (a new debit). Every other decision is final.
                Some((_, Some(state))) if state != "failed" => {
                    return Err(RequestsError::NotPending {
                        id: id.to_string(),
                        state,
                    });
                }
                Some((row, _)) => row,
            };
            let (state, why, release, public) = match decision {
                Decision::Reject { why } => ("rejected", Some(why.as_str()), None, false),
                Decision::Released { release_id, public } => {
                    ("released", None, Some(*release_id), *public)
                }
                Decision::Failed { release_id } => ("failed", None, Some(*release_id), false),
            };
            tx.execute(
                "INSERT INTO decisions (request_id, state, why, release_id, public, decided_by, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row,
                    state,
                    why,
                    release,
                    public as i64,
                    steward,
                    crate::warehouse::now_rfc3339()
                ],
            )
            .map_err(&e)?;
            Ok(())
        })
    }
}

/// Approves a pending request: runs its release (debited from `researcher:<name>`, approved
/// by `steward`) and records the decision. A release that fails after its debit marks the
/// request `failed`; a refusal before any debit (over budget, a spec that no longer plans)
/// leaves it pending and returns the error. Running it again after a crash between the
/// release and the decision spends nothing: the release is idempotent.
pub async fn approve(
    warehouse: &Path,
    id: &str,
    steward: &str,
    public: bool,
) -> Result<(StoredRequest, Option<crate::privacy::ReleaseOutcome>)> {
    let mut queue = Queue::open(warehouse)?;
    let request = queue.get(id)?;
    if !matches!(request.state, RequestState::Pending | RequestState::Failed) {
        return Err(RequestsError::NotPending {
            id: id.to_string(),
            state: request.state.as_str().to_string(),
        });
    }
    let spec: ReleaseSpec = serde_json::from_value(request.spec.clone())
        .map_err(|e| RequestsError::Invalid(format!("request {id}'s stored spec: {e}")))?;
    if spec.allocation != allocation_of(&request.researcher) {
        return Err(RequestsError::Invalid(format!(
            "request {id}'s spec names allocation '{}', not its researcher's",
            spec.allocation
        )));
    }
    let req = ReleaseRequest {
        spec,
        approver: steward.to_string(),
    };
    match release(warehouse, &req).await {
        Ok(outcome) => {
            let mut ledger = crate::ledger::Ledger::open(warehouse)?;
            let stored = ledger.release(outcome.id)?;
            if stored.allocation != allocation_of(&request.researcher) {
                return Err(RequestsError::Invalid(format!(
                    "internal: release {} belongs to allocation '{}', not to request {id}'s researcher",
                    outcome.id, stored.allocation
                )));
            }
            if public {
                // Made public: its numbers join the public chain, which held its spend only.
                ledger.chain_public_release(outcome.id)?;
            }
            queue.decide(
                id,
                &Decision::Released {
                    release_id: outcome.id,
                    public,
                },
                steward,
            )?;
            Ok((queue.get(id)?, Some(outcome)))
        }
        Err(PrivacyError::FailedAfterDebit { id: release_id }) => {
            queue.decide(id, &Decision::Failed { release_id }, steward)?;
            Err(PrivacyError::FailedAfterDebit { id: release_id }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Rejects a pending request with the steward's words, which the researcher sees.
pub fn reject(warehouse: &Path, id: &str, steward: &str, why: &str) -> Result<StoredRequest> {
    if why.trim().is_empty() {
        return Err(RequestsError::Invalid(
            "a rejection needs the steward's words (--why)".into(),
        ));
    }
    let mut queue = Queue::open(warehouse)?;
    queue.decide(
        id,
        &Decision::Reject {
            why: why.to_string(),
        },
        steward,
    )?;
    queue.get(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_32_hex_digits_or_the_digits_of_a_sequential_one() {
        let id = new_request_id().unwrap();
        assert!(is_request_id(&id), "{id}");
        assert_ne!(id, new_request_id().unwrap());
        for ok in [
            "1",
            "42",
            "9223372036854775807",
            &"0".repeat(32),
            &"af".repeat(16),
        ] {
            assert!(is_request_id(ok), "{ok}");
        }
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "1.5",
            "12345678901234567890",
            &"A".repeat(32),
            &"0".repeat(31),
            &"0".repeat(33),
            &"g".repeat(32),
        ] {
            assert!(!is_request_id(bad), "{bad}");
        }
    }
}
