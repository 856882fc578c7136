//! Signal actions for the processes the driver starts.

use nix::sys::signal::{SigHandler, Signal};

/// Every signal back to its default action; for a forked child before its exec. exec keeps
/// ignored signals ignored, and a shell started with a signal ignored cannot even trap it: a
/// plugin or potctl started with SIGINT ignored (`&` in a script does that) gave its tasks an
/// ignored SIGINT, Nomad's default kill signal, and every stop ended in SIGKILL. std clears the
/// signal mask of a child itself.
pub fn default_signal_actions() {
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler, so no code of ours runs on a signal; sigaction
        // is async-signal-safe and nothing here allocates. A signal the system refuses to
        // change keeps its action.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    }
}
