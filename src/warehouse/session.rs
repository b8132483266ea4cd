//! Opens the warehouse as a DataFusion session with every dictionary table registered.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{Manifest, Result, Warehouse, dictionary, io_err};

/// A DataFusion session over the warehouse as of its last committed manifest. Each table is
/// registered under its dictionary name with the dictionary's schema, reading exactly the
/// Parquet files that the manifest names, so a load that is not committed is never seen. A
/// table with no data is registered empty, with its schema.
pub async fn open_session(wh: &Warehouse) -> Result<SessionContext> {
    let manifest = wh.manifest()?;
    session_for(wh, &manifest)
}

/// A session over the warehouse as of `manifest`, so that a caller that records the dataset
/// version reads exactly that version.
pub fn open_session_at(wh: &Warehouse, manifest: &Manifest) -> Result<SessionContext> {
    session_for(wh, manifest)
}

pub(super) fn session_for(wh: &Warehouse, manifest: &Manifest) -> Result<SessionContext> {
    let dict = dictionary()?;
    let config = SessionConfig::new().with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
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
    let ctx = SessionContext::new_with_config(config);
    for table in dict.tables() {
        let provider = MemTable::try_new(table.schema(), vec![vec![]])?;
        ctx.register_table(table.name.as_str(), Arc::new(provider))?;
    }
    Ok(ctx)
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
