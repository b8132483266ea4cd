//! The warehouse folder (`src/warehouse`): dataset versions, status and complete-through
//! declarations as readers see them, the manifest, recovery and durability, and the
//! DataFusion session.

mod manifest;
mod recovery;
mod session;
mod status;
