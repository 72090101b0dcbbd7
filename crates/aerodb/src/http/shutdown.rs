//! The node-wide shutdown signal every server, connection and waiting read
//! listens to (RES-3: a node stops in bounded time whatever its clients do).

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable shutdown flag; [`Shutdown::trigger`] wakes every listener.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown { tx: Arc::new(watch::channel(false).0) }
    }

    /// Sets the flag (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the flag is set.
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this only returns once set.
        let _ = rx.wait_for(|set| *set).await;
    }
}
