//! Ctrl-C, SIGTERM and SIGHUP: one handler for the whole process.
//!
//! Before steps run (while secrets are being read, for example) a signal
//! revokes every live vault session and exits with 130 at once. While steps
//! run, the first signal only raises the cancel flag: running steps are
//! stopped, nothing partial is published, their records say
//! `interrupted`, and the command then ends its secret sessions and exits
//! with 130. A second signal aborts at once, still revoking first.
//!
//! The graceful stop is bounded: should the run not have ended
//! [`STOP_GRACE`] after the first signal (a step stuck where the cancel flag
//! is not seen, a runner bug), the process aborts as on a second signal.
//! One SIGTERM from a CI system always ends the run. This module must never
//! publish, record or revoke anything except through [`abort`].

use cordon_core::cancel::Cancel;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

/// The exit code of an interrupted command (128 + SIGINT), which CI
/// systems and shells recognise.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long a graceful stop may take before the process aborts. Running
/// steps see the cancel flag within an epoch tick and then only discard
/// their staging and write their records; half a minute is far beyond
/// that, and short enough for a CI system's own kill timeout (commonly
/// 30 s to a few minutes after its SIGTERM) not to strike first on a
/// healthy runner.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// The process's one cancellation token, which the handler sets.
pub fn flag() -> &'static Cancel {
    static FLAG: OnceLock<Cancel> = OnceLock::new();
    FLAG.get_or_init(Cancel::new)
}

/// Installs the handler (once; later calls do nothing).
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if GRACEFUL.load(Ordering::SeqCst) && !flag().is_cancelled() {
                flag().cancel();
                say!("cordon: interrupted; stopping running steps (Ctrl-C again to abort at once)");
                let watchdog = std::thread::Builder::new()
                    .name("cordon-stop-grace".into())
                    .spawn(|| {
                        std::thread::sleep(STOP_GRACE);
                        say!(
                            "cordon: the run did not stop within {} s of the signal; aborting",
                            STOP_GRACE.as_secs()
                        );
                        abort();
                    });
                if watchdog.is_err() {
                    abort();
                }
                return;
            }
            abort();
        });
    });
}

/// Revokes every live vault session and exits with [`EXIT_INTERRUPTED`].
fn abort() -> ! {
    if !cordon_secrets::vault::revoke_live_sessions() {
        say!("cordon: interrupted");
    }
    std::process::exit(EXIT_INTERRUPTED.into())
}

/// Switches to graceful cancellation and returns the flag running steps
/// watch.
pub fn cancel_flag() -> Cancel {
    install();
    GRACEFUL.store(true, Ordering::SeqCst);
    flag().clone()
}

/// Whether a signal arrived during graceful cancellation.
pub fn interrupted() -> bool {
    flag().is_cancelled()
}
