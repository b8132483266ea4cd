//! The warehouse folder (`src/warehouse`): dataset versions, status and complete-through
//! declarations as readers see them, the manifest, recovery and durability, the
//! DataFusion session, the data files and the ledger it vouches for, and backups that
//! restore.

mod backup;
mod ledger_watermark;
mod manifest;
mod recovery;
mod session;
mod status;
mod vouch;
