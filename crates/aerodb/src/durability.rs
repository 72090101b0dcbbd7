//! A primary's (or standalone node's) guards around acknowledged history,
//! at the process edge: which rule recovery judges the WAL's end under
//! (the durable high-water mark, CORE-5), the refusal when the WAL ends or
//! is invalid before it (F-P4, with its `recovery.process` explanation
//! logged), the explicit acceptance of lost history, the running mark
//! written before any write is accepted, and the fence read at startup
//! (REPL-11). Every decision is made by the library crates; this module
//! reads and writes the files and wires the results together.

use std::sync::Arc;

use aerodb_snapshot::{PrimaryRecoveryError, PrimaryRecoveryReport};
use aerodb_wal::disk::Disk;
use aerodb_wal::history::{append_history_loss, read_history_losses, HistoryLossRecord, StartupDurability};
use aerodb_wal::mark::{read_mark, write_mark, DurableMark};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::{MarkGate, MarkPolicy};

use crate::datadir::{DataDir, Identity, Role};
use crate::error::StartupError;

/// What the operator asked for about durable history.
#[derive(Clone, Copy, Debug, Default)]
pub struct DurabilityOptions {
    /// When marks are written.
    pub mark: MarkPolicy,
    /// `--accept-lost-history`.
    pub accept_lost_history: bool,
    /// `--lift-fence`.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub lift_fence: bool,
}

/// The rule recovery judges the WAL's end under, chosen from the mark on
/// disk before recovery runs.
#[derive(Clone, Debug)]
pub struct TailChoice {
    /// The rule.
    pub rule: TailRule,
    /// See [`StartupDurability::mark_file`].
    pub mark_file: &'static str,
    /// Why a loss accepted without a mark is recorded (empty when a mark applies).
    reason_without_mark: &'static str,
}

/// Chooses the tail rule: the mark when there is one; with
/// `--accept-lost-history`, truncation to the last valid record; no mark
/// at all on a directory from a version without marks: CORE-3 alone
/// (documented upgrade). A directory that should have a mark and has none,
/// or an unreadable mark, refuses to start (CORE-5).
pub fn choose_tail_rule(disk: &dyn Disk, dir: &DataDir, identity: &Identity, created: bool, accept: bool) -> Result<TailChoice, StartupError> {
    let refuse = |code: &'static str, detail: String| StartupError::Recovery { code, rule_id: "CORE-5", detail };
    match read_mark(disk, &dir.wal()) {
        Ok(Some(mark)) => Ok(TailChoice {
            rule: if accept { TailRule::AcceptLoss { mark: Some(mark) } } else { TailRule::Mark { mark } },
            mark_file: if created { "created" } else { "present" },
            reason_without_mark: "",
        }),
        Ok(None) if accept => Ok(TailChoice { rule: TailRule::AcceptLoss { mark: None }, mark_file: "missing_accepted", reason_without_mark: "mark_missing" }),
        Ok(None) if identity.durable_mark => Err(refuse(
            "MARK_MISSING",
            format!(
                "the durable high-water mark {} is missing although this directory keeps one: recovery cannot bound what it may drop; restore the file, or start once with --accept-lost-history (CORE-5)",
                aerodb_wal::mark::mark_path(&dir.wal()).display()
            ),
        )),
        Ok(None) => {
            tracing::warn!("no durable high-water mark: this data directory predates marks; recovering under CORE-3 alone and writing a mark now (CORE-5)");
            Ok(TailChoice { rule: TailRule::DropTornTail, mark_file: "missing_legacy", reason_without_mark: "" })
        }
        Err(e) if accept => {
            tracing::warn!(error = %e, "the durable mark is unreadable; --accept-lost-history: recovering without it");
            Ok(TailChoice { rule: TailRule::AcceptLoss { mark: None }, mark_file: "unreadable_accepted", reason_without_mark: "mark_unreadable" })
        }
        Err(e) => Err(refuse(e.code(), format!("{e}; restore the file, or start once with --accept-lost-history"))),
    }
}

/// A refused recovery as a startup error. When the WAL contradicts the
/// durable mark (CORE-5, F-P4), the `recovery.process` explanation of the
/// refusal (mark, WAL end, damaged range) is logged first.
pub fn recovery_refusal(e: &PrimaryRecoveryError, role: Role) -> StartupError {
    if let Some(v) = e.mark_violation() {
        tracing::error!(
            code = v.code(),
            mark_lsn = v.mark().end_lsn,
            mark_commit_id = v.mark().commit_id,
            wal_end_lsn = v.wal_end().map(|w| w.end_lsn),
            damaged_from_lsn = v.damaged_range().0,
            damaged_to_lsn = v.damaged_range().1,
            "the WAL ends or is damaged before its durable high-water mark: startup refused, nothing truncated (CORE-5, F-P4)"
        );
        #[cfg(feature = "replication")]
        {
            let explanation = aerodb_repl_explain::explain::recovery_refused(role.as_str(), v).to_value();
            tracing::error!(%explanation, "recovery.process of the refused startup");
        }
        #[cfg(not(feature = "replication"))]
        let _ = role;
    }
    StartupError::Recovery { code: e.code(), rule_id: e.rule_id(), detail: e.to_string() }
}

/// After recovery, before any write is accepted: records a loss the
/// operator accepted (before the mark can move back), writes the running
/// mark at the exact end of the recovered WAL, and marks a directory from
/// an earlier version as keeping marks. Returns the startup facts and the
/// gate the group committer must honour.
pub fn seal_startup(
    disk: &dyn Disk,
    dir: &DataDir,
    identity: &mut Identity,
    choice: &TailChoice,
    report: &PrimaryRecoveryReport,
    opts: &DurabilityOptions,
) -> Result<(StartupDurability, Arc<MarkGate>), StartupError> {
    let history_error = |e: aerodb_wal::history::HistoryFileError| StartupError::Recovery { code: e.code, rule_id: "CORE-5", detail: e.to_string() };
    let mark_found = choice.rule.mark();
    let tail = &report.store.wal.tail;
    let accepted_loss = match choice.rule {
        TailRule::AcceptLoss { mark } => HistoryLossRecord::from_verdict(tail, mark.as_ref(), choice.reason_without_mark),
        _ => None,
    };
    let history_losses = match &accepted_loss {
        Some(loss) => {
            tracing::warn!(loss = %serde_json::to_string(&loss).unwrap_or_default(), "--accept-lost-history: recording the lost history durably (CORE-5)");
            append_history_loss(disk, dir.root(), loss.clone()).map_err(history_error)?
        }
        None => {
            if opts.accept_lost_history {
                tracing::info!("--accept-lost-history: the WAL reaches its durable mark, nothing was lost");
            }
            read_history_losses(disk, dir.root()).map_err(history_error)?
        }
    };
    let end = report.store.wal.end;
    let window = opts.mark.window_bytes();
    let mark = DurableMark::at(end, false, window);
    write_mark(disk, &dir.wal(), &mark).map_err(|e| StartupError::io("write durable mark", &aerodb_wal::mark::mark_path(&dir.wal()), e))?;
    if !identity.durable_mark {
        identity.durable_mark = true;
        dir.rewrite_identity(disk, identity)?;
    }
    tracing::info!(
        end_lsn = mark.end_lsn,
        commit_id = mark.commit_id,
        window_bytes = window,
        "durable high-water mark written before accepting writes (CORE-5)"
    );
    let startup = StartupDurability {
        mark_file: choice.mark_file,
        mark_found,
        mark_written: Some(mark),
        accept_lost_history: opts.accept_lost_history,
        accepted_loss,
        history_losses,
    };
    Ok((startup, Arc::new(MarkGate::new(end, window))))
}

/// The fence at startup (REPL-11): the persisted one, or none after
/// `--lift-fence` (which reports the fence it lifted).
#[cfg(feature = "replication")]
pub fn open_fence(
    disk: Arc<dyn Disk>,
    dir: &DataDir,
    lift: bool,
) -> Result<(Arc<aerodb_repl_core::fence::FenceLatch>, Option<aerodb_repl_core::fence::Fence>), StartupError> {
    use aerodb_repl_core::fence::{read_fence, remove_fence, FenceLatch};
    let persisted = read_fence(&*disk, dir.root());
    let (current, lifted) = match (persisted, lift) {
        (Ok(fence), false) => (fence, None),
        (Ok(fence), true) => {
            remove_fence(&*disk, dir.root()).map_err(|e| StartupError::io("remove fence", &aerodb_repl_core::fence::fence_path(dir.root()), e))?;
            match &fence {
                Some(f) => {
                    tracing::warn!(replica_id = %f.replica.replica_id, code = %f.code, "--lift-fence: the operator lifted the fence; writes are accepted again (REPL-11)")
                }
                None => tracing::info!("--lift-fence: this primary is not fenced"),
            }
            (None, fence)
        }
        (Err(e), true) => {
            tracing::warn!(error = %e, "--lift-fence: removing an unreadable fence file");
            remove_fence(&*disk, dir.root()).map_err(|e| StartupError::io("remove fence", &aerodb_repl_core::fence::fence_path(dir.root()), e))?;
            (None, None)
        }
        (Err(e), false) => {
            return Err(StartupError::Metadata { code: e.code, file: e.file.clone(), detail: format!("{} (REPL-11; lift it with --lift-fence)", e.detail) })
        }
    };
    if let Some(f) = &current {
        tracing::error!(replica_id = %f.replica.replica_id, code = %f.code, "this primary is FENCED: every write is refused until `aerodb primary --lift-fence` (REPL-11, F-P5)");
    }
    Ok((Arc::new(FenceLatch::new(disk, dir.root().to_path_buf(), current)), lifted))
}

/// The write refusal of a fenced primary: 503 `PRIMARY_FENCED`, rule
/// REPL-11, with the replica's proof as evidence.
#[cfg(feature = "replication")]
pub fn fence_check(latch: Arc<aerodb_repl_core::fence::FenceLatch>) -> crate::service::FenceCheck {
    Arc::new(move || {
        latch.current().map(|f| {
            crate::api_error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "PRIMARY_FENCED",
                Some("REPL-11"),
                format!(
                    "this primary is fenced: replica {} proved it lost or rewrote acknowledged history ({}); writes are refused until an operator lifts the fence",
                    f.replica.replica_id, f.code
                ),
                f.evidence(),
            )
        })
    })
}
