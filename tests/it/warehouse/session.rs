//! The DataFusion session over the warehouse (`src/warehouse/session.rs`): every session that
//! reads data, and the API's planning sessions, have a memory pool sized from the machine.

use crate::common::privacy_warehouse;

/// DataFusion's runtime has a memory pool, half the machine's memory, in every
/// session that reads data and in the API's planning sessions, so a join too large for the
/// machine fails as DataFusion's "resources exhausted" instead of taking the host down.
#[test]
fn every_session_has_a_memory_pool_sized_from_the_machine() {
    use datafusion::execution::memory_pool::MemoryLimit;
    use outreach_warehouse::warehouse::{
        MIN_QUERY_MEMORY, Warehouse, open_session, query_memory_limit, schema_session,
    };

    let limit = query_memory_limit();
    assert!(limit >= MIN_QUERY_MEMORY);
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        let total = outreach_warehouse::warehouse::meminfo_total(&text).unwrap();
        assert!(
            limit as u64 <= (total / 2).max(MIN_QUERY_MEMORY as u64),
            "{limit} of {total}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rt
        .block_on(open_session(&Warehouse::open(&wh).unwrap()))
        .unwrap();
    for ctx in [data, schema_session().unwrap()] {
        match ctx.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(n) => assert_eq!(n, limit),
            _ => panic!("a session without a finite memory pool"),
        }
    }
}
