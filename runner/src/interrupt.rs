//! Ctrl-C, SIGTERM and SIGHUP: one handler for the whole process.
//!
//! Before steps run (while secrets are being read, for example) a signal
//! revokes every live vault session and exits with 130 at once. While steps
//! run, the first signal only raises the cancel flag: running steps are
//! stopped, nothing partial is published, their records say
//! `interrupted`, and the command then ends its secret sessions and exits
//! with 130. A second signal aborts at once, still revoking first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};

/// The exit code of an interrupted command (128 + SIGINT), which CI
/// systems and shells recognise.
pub const EXIT_INTERRUPTED: u8 = 130;

static GRACEFUL: AtomicBool = AtomicBool::new(false);

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Installs the handler (once; later calls do nothing).
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if GRACEFUL.load(Ordering::SeqCst) && !flag().swap(true, Ordering::SeqCst) {
                say!("cordon: interrupted; stopping running steps (Ctrl-C again to abort at once)");
                return;
            }
            abort();
        });
    });
}

/// Revokes every live vault session and exits with [`EXIT_INTERRUPTED`].
fn abort() -> ! {
    if !crate::secrets::vault::revoke_live_sessions() {
        say!("cordon: interrupted");
    }
    std::process::exit(EXIT_INTERRUPTED.into())
}

/// Switches to graceful cancellation and returns the flag running steps
/// watch.
pub fn cancel_flag() -> Arc<AtomicBool> {
    install();
    GRACEFUL.store(true, Ordering::SeqCst);
    flag().clone()
}

/// Whether a signal arrived during graceful cancellation.
pub fn interrupted() -> bool {
    flag().load(Ordering::SeqCst)
}
