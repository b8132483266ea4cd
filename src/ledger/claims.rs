//! One release at a time per idempotency key: an OS file lock per key, held from before the
//! debit until the outcome is written, so that an identical request started meanwhile waits
//! and then finds the release finished instead of debiting again.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Ledger, LedgerError, Result};

/// The folder, next to the ledger, of the lock files that claim idempotency keys.
pub const CLAIMS_DIR: &str = "ledger-claims";

/// Proof that this process runs the release of one idempotency key
/// ([`Ledger::claim_release`]). Dropping it lets the next identical request go on.
#[derive(Debug)]
pub struct ReleaseClaim {
    file: File,
}

impl Drop for ReleaseClaim {
    /// Unlocks before the file closes: a child process forked meanwhile would otherwise keep
    /// the lock alive in its copy of the descriptor until it execs.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Ledger {
    /// Claims an idempotency key for this process: waits up to `wait` while another process
    /// (or thread) holds it, then refuses as busy ([`LedgerError::ReleaseInProgress`]). Hold
    /// the claim from before [`Ledger::begin_release`] until the outcome is written, so an
    /// identical request started meanwhile finds the release finished (and spends nothing)
    /// instead of debiting again. The lock is the OS's (`flock`): a process that dies lets go.
    pub fn claim_release(&self, idempotency_key: &str, wait: Duration) -> Result<ReleaseClaim> {
        let dir = self
            .path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(CLAIMS_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| LedgerError::Lock {
            path: dir.clone(),
            source,
        })?;
        // The file name is a hash of the key, so any key makes a plain file name.
        let name = crate::warehouse::hex(&Sha256::digest(idempotency_key.as_bytes()));
        let path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LedgerError::Lock {
                path: path.clone(),
                source,
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ReleaseClaim { file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= wait {
                        return Err(LedgerError::ReleaseInProgress);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LedgerError::Lock { path, source });
                }
            }
        }
    }
}
