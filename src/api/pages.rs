//! What the server holds in memory to answer: every response body rendered once from the
//! [`Snapshot`] of what is published, in JSON and CSV with its ETag and how long caches may
//! keep it, and the dashboard pages drawn so far.
//!
//! Releases never change once stored, so each body is rendered when the snapshot loads and
//! answered from memory; the watcher ([`super::AppState::watch`]) loads and renders everything
//! again when the ledger or the set of releases made public changes, so a new publication
//! appears without a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::csv_out as csv;
use crate::metrics::Catalog;
use crate::present::snapshot::Snapshot;
use crate::present::tables::release_csv;
use crate::present::views::{self, ProgramQuarter};
use crate::warehouse::hex;

/// How long clients and proxies may keep a response before revalidating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A release by id: its numbers never change, but `superseded_by` is filled in when a
    /// republication replaces it, so caches revalidate (a cheap 304) after a minute.
    Release,
    /// A quarter's current publication: a republication replaces it.
    Published,
    /// The budget and the lists: they change with every release.
    Live,
}

impl Freshness {
    pub fn cache_control(self) -> &'static str {
        match self {
            Freshness::Release => "public, max-age=60, must-revalidate",
            Freshness::Published => "public, max-age=300",
            Freshness::Live => "public, max-age=0, must-revalidate",
        }
    }

    /// [`Freshness::cache_control`] as a header value, built without parsing it again.
    pub fn header(self) -> HeaderValue {
        #[allow(clippy::declare_interior_mutable_const)]
        const RELEASE: HeaderValue =
            HeaderValue::from_static("public, max-age=60, must-revalidate");
        #[allow(clippy::declare_interior_mutable_const)]
        const PUBLISHED: HeaderValue = HeaderValue::from_static("public, max-age=300");
        #[allow(clippy::declare_interior_mutable_const)]
        const LIVE: HeaderValue = HeaderValue::from_static("public, max-age=0, must-revalidate");
        match self {
            Freshness::Release => RELEASE,
            Freshness::Published => PUBLISHED,
            Freshness::Live => LIVE,
        }
    }
}

/// A response body rendered once, in both formats, each with its strong ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub json: Bytes,
    pub csv: Bytes,
    /// Quoted ETags of the two bodies, as header values: each response sends one as it is.
    pub etag_json: HeaderValue,
    pub etag_csv: HeaderValue,
    pub freshness: Freshness,
}

fn etag(body: &[u8]) -> HeaderValue {
    let quoted = format!("\"{}\"", &hex(&Sha256::digest(body))[..32]);
    HeaderValue::try_from(quoted).expect("a quoted hex digest is a header value")
}

impl Rendered {
    /// An HTML page, kept in the `json` slot (the one body a page has).
    pub fn page(html: String, freshness: Freshness) -> Rendered {
        Rendered {
            etag_json: etag(html.as_bytes()),
            etag_csv: HeaderValue::from_static(""),
            json: Bytes::from(html),
            csv: Bytes::new(),
            freshness,
        }
    }

    pub fn new<T: Serialize>(value: &T, csv: String, freshness: Freshness) -> Rendered {
        let json = serde_json::to_vec(value).expect("responses serialise");
        Rendered {
            etag_json: etag(&json),
            etag_csv: etag(csv.as_bytes()),
            json: Bytes::from(json),
            csv: Bytes::from(csv),
            freshness,
        }
    }
}

/// The most dashboard pages a snapshot keeps. The choices a page is drawn for are bounded
/// (published quarters × metrics × programs), but a few hundred cover what readers ask for.
pub const MAX_CACHED_PAGES: usize = 512;

/// The most bytes of dashboard HTML a snapshot keeps, whatever the page count: pages grow with
/// the programs and quarters they chart, and the cache must not grow with them unbounded.
pub const MAX_CACHED_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Dashboard pages by their choices, bounded by a page count and a byte count; when either is
/// passed the least recently used page goes first. Every look-up and insert marks its page
/// used with a new tick; `by_use` orders the keys by their last tick.
#[derive(Debug)]
pub struct PageCache {
    max_pages: usize,
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    /// Each page with the tick of its last use.
    pages: HashMap<String, (Rendered, u64)>,
    /// The keys by the tick of their last use: the first is the least recently used.
    by_use: BTreeMap<u64, String>,
}

impl Default for PageCache {
    fn default() -> PageCache {
        PageCache::new(MAX_CACHED_PAGES, MAX_CACHED_PAGE_BYTES)
    }
}

impl PageCache {
    /// An empty cache of at most `max_pages` pages and `max_bytes` bytes of bodies.
    pub fn new(max_pages: usize, max_bytes: usize) -> PageCache {
        PageCache {
            max_pages,
            max_bytes,
            bytes: 0,
            tick: 0,
            pages: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn size(page: &Rendered) -> usize {
        page.json.len() + page.csv.len()
    }

    /// The page kept under `key`, now marked as the most recently used.
    pub fn get(&mut self, key: &str) -> Option<Rendered> {
        let (page, used) = self.pages.get_mut(key)?;
        self.tick += 1;
        let last = *used;
        *used = self.tick;
        let k = self.by_use.remove(&last).expect("every page has its tick");
        self.by_use.insert(self.tick, k);
        Some(page.clone())
    }

    /// Whether a page is kept under `key`; does not mark it used.
    pub fn contains(&self, key: &str) -> bool {
        self.pages.contains_key(key)
    }

    /// Keeps `page` under `key` as the most recently used, then evicts the least recently
    /// used pages until both bounds hold. A page larger than the byte bound is not kept.
    pub fn insert(&mut self, key: String, page: Rendered) {
        if let Some((old, used)) = self.pages.remove(&key) {
            self.bytes -= Self::size(&old);
            self.by_use.remove(&used);
        }
        let size = Self::size(&page);
        if size > self.max_bytes || self.max_pages == 0 {
            return;
        }
        self.tick += 1;
        self.bytes += size;
        self.by_use.insert(self.tick, key.clone());
        self.pages.insert(key, (page, self.tick));
        while self.pages.len() > self.max_pages || self.bytes > self.max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.pages.remove(&oldest) {
                self.bytes -= Self::size(&gone);
            }
        }
    }

    /// How many pages are kept.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The bytes of the bodies kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// `/healthz`'s answer, rendered with the snapshot it reports on: its status (200, or 503
/// when a stored publication cannot be read) and its JSON body ([`views::Health`]).
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub status: StatusCode,
    pub json: Bytes,
}

impl Health {
    fn of(snapshot: &Snapshot) -> Health {
        let unreadable = snapshot.unreadable.len();
        let (status, word) = if unreadable == 0 {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
        };
        let body = views::Health {
            status: word.into(),
            quarters: snapshot.quarters.len(),
            releases: snapshot.releases.len(),
            unreadable_publications: unreadable,
        };
        let json = serde_json::to_vec(&body).expect("the health body serialises");
        Health {
            status,
            json: Bytes::from(json),
        }
    }
}

/// What the server serves: the snapshot of what is published, its bodies rendered once, and
/// the dashboard pages drawn so far. It reads as its [`Snapshot`] too.
#[derive(Debug, Default)]
pub struct Served {
    pub snapshot: Snapshot,
    /// Pre-rendered bodies by route path (without the query string).
    pub rendered: HashMap<String, Rendered>,
    /// `/healthz`'s answer for this snapshot.
    pub health: Health,
    /// Dashboard pages rendered so far, by their choices: a page is drawn once per
    /// snapshot (the releases it shows never change) while it stays in the cache.
    pub pages: Mutex<PageCache>,
}

impl std::ops::Deref for Served {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Served {
    /// Loads what is published ([`Snapshot::load`]) and renders every body of it.
    pub fn load(warehouse: &Path, made_public: &[i64]) -> crate::Result<Served> {
        let catalog = Catalog::standard()?;
        let mut served = Served {
            snapshot: Snapshot::load(warehouse, made_public)?,
            ..Served::default()
        };
        served.render(&catalog);
        Ok(served)
    }

    fn put(&mut self, path: String, r: Rendered) {
        self.rendered.insert(path, r);
    }

    fn render(&mut self, catalog: &Catalog) {
        use Freshness::*;
        self.health = Health::of(&self.snapshot);
        let metrics = views::metrics(catalog);
        self.put(
            "/v1/metrics".into(),
            Rendered::new(&metrics, csv::rows(&metrics), Live),
        );
        let programs = self.programs.clone();
        self.put(
            "/v1/programs".into(),
            Rendered::new(&programs, csv::rows(&programs), Live),
        );
        let quarters: Vec<views::Quarter> = self.quarters.values().map(views::quarter).collect();
        self.put(
            "/v1/quarters".into(),
            Rendered::new(&quarters, csv::rows(&quarters), Live),
        );
        let mut pages: Vec<(String, ProgramQuarter)> = Vec::new();
        for (q, publ) in &self.quarters {
            for p in &publ.doc.programs {
                let id = &p.program.program_id;
                if let Some(mut view) = views::program_quarter(&publ.stored, &publ.doc, id) {
                    view.ledger_entry = publ.ledger_entry.clone();
                    pages.push((format!("/v1/quarters/{q}/programs/{id}"), view));
                }
            }
        }
        for (path, view) in pages {
            let csv = csv::rows(&view.figures);
            self.put(path, Rendered::new(&view, csv, Published));
        }
        let releases: Vec<(i64, Rendered)> = self
            .releases
            .values()
            .map(|r| {
                (
                    r.release.id,
                    Rendered::new(r, release_csv(&r.release), Release),
                )
            })
            .collect();
        for (id, r) in releases {
            self.put(format!("/v1/releases/{id}"), r);
        }
        let budget = self.budget.clone();
        self.put(
            "/v1/budget".into(),
            Rendered::new(&budget, csv::rows(&budget.allocations), Live),
        );
        // The public ledger chain: its summary and head change with every event, a full page
        // never (the chain is append-only), the last page as entries join it.
        let ledger = self.ledger.clone();
        self.put(
            "/v1/ledger".into(),
            Rendered::new(
                &ledger.summary,
                csv::rows(std::slice::from_ref(&ledger.summary)),
                Live,
            ),
        );
        self.put(
            "/v1/ledger/head".into(),
            Rendered::new(
                &ledger.head,
                csv::rows(std::slice::from_ref(&ledger.head)),
                Live,
            ),
        );
        for page in &ledger.pages {
            self.put(
                format!("/v1/ledger/pages/{}", page.page),
                Rendered::new(page, csv::rows(&page.entries), Live),
            );
        }
        // Every head ever signed: a reader who saved one checks today's chain against it.
        for head in &ledger.heads {
            self.put(
                format!("/v1/ledger/heads/{}", head.size),
                Rendered::new(head, csv::rows(std::slice::from_ref(head)), Live),
            );
        }
    }
}
