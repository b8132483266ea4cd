//! Keeps panic messages off stderr while a release is between its debit and its outcome.
//!
//! A panic message can quote a value of the data (an overflow with its operands, a batch in
//! a debug print), and the default panic hook prints it to stderr, where whoever runs the
//! release sees it. While at least one [`Guard`] lives, the process's panic hook records
//! the message for the steward's record of the release instead of printing it; otherwise
//! it hands over to the hook that was installed before (the default one prints). The hook
//! is installed once per process, at the first guard. It is process-wide: in a process
//! that runs other work beside a release (the test binary), a panic elsewhere during the
//! release's after-debit phase is recorded with the release, not printed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// The text of a panic's payload.
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.load(Ordering::SeqCst) == 0 {
                return previous(info);
            }
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{}{location}", payload_text(info.payload()));
            CAPTURED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(text);
        }));
    });
}

/// While it lives, panics are recorded, not printed.
#[derive(Debug)]
pub struct Guard(());

impl Guard {
    pub fn new() -> Guard {
        install();
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Guard(())
    }

    /// The panic messages recorded so far (and forgets them).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *CAPTURED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}
