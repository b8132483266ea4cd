//! Opens the warehouse as a DataFusion session with every dictionary table registered.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{Manifest, Result, Warehouse, WarehouseError, io_err};
use crate::dictionary::Dictionary;

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
    let dict = Dictionary::builtin().map_err(|e| WarehouseError::CorruptManifest {
        path: "data-dictionary".into(),
        message: e.to_string(),
    })?;
    let config = SessionConfig::new().with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let root = std::path::absolute(wh.root()).map_err(io_err(wh.root()))?;
    for table in dict.tables() {
        let schema = table.schema();
        let urls = manifest
            .data_files(&table.name)
            .map(|f| ListingTableUrl::parse(root.join(&f.path).to_string_lossy()))
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
