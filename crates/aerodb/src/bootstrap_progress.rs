//! The snapshot transfer's progress on the replica's stderr while it
//! bootstraps (F-S1): a progress bar (bytes, rate, time remaining) when
//! stderr is a terminal, otherwise one log line every few seconds. It only
//! reads the published status (`snapshot_bootstrap` shows the same
//! numbers on the DX API) and ends once the bootstrap committed.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_core::state::BootstrapProgress;

/// How often the status is looked at.
const POLL: Duration = Duration::from_millis(200);
/// How often a log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Shows progress until the bootstrap committed or `stop` is set. Returns
/// `None` when the replica is already bootstrapped (nothing to show).
pub fn spawn(handle: Arc<ReplicaHandle>, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    if handle.shared.with(|o| o.metadata.is_some()) {
        return None;
    }
    let terminal = std::io::stderr().is_terminal();
    std::thread::Builder::new()
        .name("bootstrap-progress".into())
        .spawn(move || {
            let mut shown = Shown::new(terminal);
            while !stop.load(Ordering::Relaxed) {
                let (progress, done) = handle.shared.with(|o| (o.transfer, o.metadata.is_some()));
                if done {
                    shown.finish();
                    return;
                }
                if let Some(p) = progress {
                    shown.update(&p);
                }
                std::thread::sleep(POLL);
            }
        })
        .ok()
}

/// A progress bar on a terminal, or paced log lines.
struct Shown {
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    last_log: Option<Instant>,
}

impl Shown {
    fn new(terminal: bool) -> Self {
        Shown { bar: None, terminal, last_log: None }
    }

    fn update(&mut self, p: &BootstrapProgress) {
        if self.terminal {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = indicatif::ProgressBar::new(p.bytes_total);
                let style =
                    indicatif::ProgressStyle::with_template("snapshot bootstrap {msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                        .map(|s| s.progress_chars("=> "))
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar
            });
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
            bar.set_message(p.phase.name());
            return;
        }
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.last_log = Some(Instant::now());
            tracing::info!(
                phase = p.phase.name(),
                bytes_done = p.bytes_done,
                bytes_total = p.bytes_total,
                rate_bytes_per_s = p.rate_bytes_per_s,
                eta_s = p.eta_s,
                resumes = p.resumes,
                "snapshot bootstrap progress"
            );
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_with_message("installed");
        }
    }
}
