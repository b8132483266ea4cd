//! The warehouse folder (`src/warehouse`): dataset versions, status and complete-through
//! declarations as readers see them.

mod status;
