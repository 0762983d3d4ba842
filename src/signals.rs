//! Stop signals for the long-running commands (`sim`, `mirror`, `sample`, `watch`).
//!
//! The handlers are registered when [`Shutdown::install`] returns, not when the wait is first
//! polled: these commands print their address (or output path) as the sign that they are
//! ready, and a wrapper that signals right after reading it must get a clean stop, not the
//! default action of a signal nobody listens to yet (the process dying with no exit code and
//! nothing flushed). So: install, then print, then wait.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT (Ctrl-C) and SIGTERM, both listened to from creation on.
pub struct Shutdown {
    int: Signal,
    term: Signal,
}

impl Shutdown {
    /// Registers both handlers now. Needs a tokio runtime.
    pub fn install() -> anyhow::Result<Shutdown> {
        Ok(Shutdown {
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    /// Resolves on the first SIGINT or SIGTERM since [`Shutdown::install`].
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_sent_before_the_wait_is_not_lost() {
        let mut s = Shutdown::install().unwrap();
        // Delivered before anyone awaits: the registration made at install time keeps it.
        nix_kill_self_term();
        tokio::time::timeout(std::time::Duration::from_secs(5), s.recv())
            .await
            .expect("the SIGTERM sent before the wait was lost");
    }

    fn nix_kill_self_term() {
        let ok = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(std::process::id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}
