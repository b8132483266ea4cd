//! Opens the warehouse as a DataFusion session with every dictionary table registered.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{Manifest, Result, Warehouse, dictionary, io_err};

/// A DataFusion session over the warehouse as of its last committed manifest. Each table is
/// registered under its dictionary name with the dictionary's schema, reading exactly the
/// live Parquet files that the manifest names, so a load that is not committed is never seen,
/// and a file a later load replaced (history of corrected or retracted rows) is never read. A
/// table with no data is registered empty, with its schema. A data file that is missing, of
/// another size or with other rows than the manifest records refuses the session
/// ([`Warehouse::check_data_files`]), before anything is read.
pub async fn open_session(wh: &Warehouse) -> Result<SessionContext> {
    let manifest = wh.manifest()?;
    session_for(wh, &manifest)
}

/// A session over the warehouse as of `manifest`, so that a caller that records the dataset
/// version reads exactly that version.
pub fn open_session_at(wh: &Warehouse, manifest: &Manifest) -> Result<SessionContext> {
    session_for(wh, manifest)
}

/// How many sessions over the warehouse's data this process has opened ([`open_session`],
/// [`open_session_at`], `outreach status`); sessions of empty tables ([`schema_session`]) are
/// not counted. The tests read it to show that serving the API opens none.
pub static DATA_SESSIONS_OPENED: AtomicU64 = AtomicU64::new(0);

pub(super) fn session_for(wh: &Warehouse, manifest: &Manifest) -> Result<SessionContext> {
    // Every reader of the data opens its session here: the one place that vouches for the
    // files before a query, and so before any debit, can read them.
    wh.check_data_files(manifest)?;
    DATA_SESSIONS_OPENED.fetch_add(1, Ordering::Relaxed);
    let dict = dictionary()?;
    let config = SessionConfig::new().with_information_schema(false);
    let ctx = SessionContext::new_with_config_rt(config, runtime()?);
    let root = std::path::absolute(wh.root()).map_err(io_err(wh.root()))?;
    for table in dict.tables() {
        let schema = table.schema();
        let urls = manifest
            .data_files(&table.name)
            .map(|f| ListingTableUrl::parse(file_url(&root.join(&f.path))))
            .collect::<Result<Vec<_>, _>>()?;
        let provider: Arc<dyn TableProvider> = if urls.is_empty() {
            Arc::new(MemTable::try_new(schema, vec![vec![]])?)
        } else {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(schema);
            Arc::new(ListingTable::try_new(config)?)
        };
        ctx.register_table(table.name.as_str(), provider)?;
    }
    Ok(ctx)
}

/// A session with every dictionary table registered empty, with its schema: it plans and
/// checks queries exactly as [`open_session`] does, but no query can read a row.
pub fn schema_session() -> Result<SessionContext> {
    let dict = dictionary()?;
    let config = SessionConfig::new().with_information_schema(false);
    let ctx = SessionContext::new_with_config_rt(config, runtime()?);
    for table in dict.tables() {
        let provider = MemTable::try_new(table.schema(), vec![vec![]])?;
        ctx.register_table(table.name.as_str(), Arc::new(provider))?;
    }
    Ok(ctx)
}

/// The share of the machine's memory that one session's queries may hold in DataFusion's
/// operators (hash tables of joins and aggregates, sort buffers): a half. Past it an operator
/// that can spill (sort, aggregate) writes to the OS temporary folder, and one that cannot
/// (the build side of a hash join) fails with DataFusion's "resources exhausted" instead of
/// taking the machine down with every other process on it. A release runs one such session
/// per process (the CLI), and the API server plans on sessions of empty tables, so half the
/// machine leaves the other half to the bounder (at most 4 KiB a person, `spec::MAX_RECORD_BYTES`),
/// the noise and the OS.
///
/// A query that passes the limit does so after the debit, since only running it shows its
/// size: the release fails and its budget stays spent, like any failure after the debit, and
/// the steward sees DataFusion's message. Whether it fails depends on the data, so it is one
/// bit about it (privacy model §5); the limit is there to keep a legitimate large join from
/// exhausting the server, not to be met. The spec's own limits (`MAX_K`, `MAX_RECORD_BYTES`,
/// `MAX_RELEASE_VALUES`, `MAX_SQL_BYTES`, `MAX_QUERIES`) are what refuse before the debit.
pub const QUERY_MEMORY_SHARE: f64 = 0.5;

/// The memory assumed when neither `/proc/meminfo` nor the cgroup limit can be read: 4 GiB.
const FALLBACK_MEMORY: u64 = 4 << 30;

/// The smallest query memory limit: 256 MiB, so that a tiny container still plans and runs
/// the standard releases.
pub const MIN_QUERY_MEMORY: usize = 256 << 20;

/// The bytes one session's queries may hold in DataFusion's memory pool:
/// [`QUERY_MEMORY_SHARE`] of the machine's memory (the smaller of `MemTotal` and the cgroup
/// v2 `memory.max`), at least [`MIN_QUERY_MEMORY`]. Read once per process.
pub fn query_memory_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let total = machine_memory().unwrap_or(FALLBACK_MEMORY);
        let share = (total as f64 * QUERY_MEMORY_SHARE) as u64;
        usize::try_from(share)
            .unwrap_or(usize::MAX)
            .max(MIN_QUERY_MEMORY)
    })
}

/// The machine's memory in bytes: the smaller of `/proc/meminfo`'s `MemTotal` and the cgroup
/// v2 limit of this process's container, where either can be read.
fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_total(&text));
    // "max" (no limit) does not parse, and is no limit.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    kib.checked_mul(1024)
}

/// DataFusion's runtime for a session: a fair spill pool of [`query_memory_limit`] bytes,
/// which names the five largest consumers when a query passes it.
fn runtime() -> Result<Arc<RuntimeEnv>> {
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(query_memory_limit()),
        NonZeroUsize::new(5).expect("5 is not zero"),
    );
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()?)
}

/// The `file://` URL of an absolute path, every byte but unreserved ones percent-encoded.
/// `ListingTableUrl::parse` reads a plain path that holds `[`, `*` or `?` as a glob, which
/// would match other files or none; a URL names exactly one file.
fn file_url(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().replace('\\', "/").into_bytes();
    let mut url = String::from("file://");
    if !bytes.starts_with(b"/") {
        url.push('/');
    }
    for b in bytes {
        if b.is_ascii_alphanumeric() || b"/-._~:".contains(&b) {
            url.push(char::from(b));
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let text = "MemTotal:       16318480 kB\nMemFree:         1023000 kB\n";
        assert_eq!(meminfo_total(text), Some(16_318_480 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: lots kB\n"), None);
        assert!(query_memory_limit() >= MIN_QUERY_MEMORY);
    }

    #[test]
    fn file_urls_escape_glob_characters() {
        assert_eq!(
            file_url(Path::new("/tmp/w[1]*? %/v0001-00.parquet")),
            "file:///tmp/w%5B1%5D%2A%3F%20%25/v0001-00.parquet"
        );
        let url = ListingTableUrl::parse(file_url(Path::new("/tmp/a[b]/x.parquet"))).unwrap();
        assert!(url.get_glob().is_none());
        assert_eq!(url.prefix().as_ref(), "tmp/a[b]/x.parquet");
    }
}
