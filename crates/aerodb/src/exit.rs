//! The CLI's exit codes (INTERFACE.md "CLI exit codes"): one distinct code
//! per outcome a script can act on, documented in `--help` and in
//! docs/operations.md ("Exit codes").

/// What a CLI command ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: any other failure: a check failed (`verify`), the node answered
    /// something that is not AeroDB's (wrong port), or an error the codes
    /// below do not name.
    Failure,
    /// 2: bad arguments: a usage error, a malformed node URL, invalid JSON,
    /// or input the node refused as malformed (400/413).
    BadArguments,
    /// 3: partial (`repair-wal` only): the replica's copy ends before the
    /// durable mark.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    Partial,
    /// 4: not found: no version of the key is visible at the read view.
    NotFound,
    /// 5: read refused by the read-safety gate (`READ_REFUSED`, RS-*).
    ReadRefused,
    /// 6: write rejected: a replica or halted node (`WRITE_REJECTED`,
    /// REPL-1) or a fenced primary (`PRIMARY_FENCED`, REPL-11).
    WriteRejected,
    /// 7: the replica is halted (`REPLICATION_HALTED`).
    Halted,
    /// 8: the node cannot be reached (connection refused, no route, DNS
    /// failure, or no answer within the timeout).
    Unreachable,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::BadArguments => 2,
            Exit::Partial => 3,
            Exit::NotFound => 4,
            Exit::ReadRefused => 5,
            Exit::WriteRejected => 6,
            Exit::Halted => 7,
            Exit::Unreachable => 8,
        }
    }
}

/// The exit-code table shown by `--help` (kept equal to [`Exit::code`] by a
/// unit test).
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  success
  1  failure (a check failed, an answer that is not AeroDB's, any other error)
  2  bad arguments (usage, node URL, JSON, input the node refused as malformed)
  3  partial (repair-wal: the replica's copy ends before the durable mark)
  4  not found (no version visible at the read view)
  5  read refused (READ_REFUSED: the read-safety gate, RS-*)
  6  write rejected (WRITE_REJECTED on a replica, PRIMARY_FENCED)
  7  replica halted (REPLICATION_HALTED)
  8  node unreachable (connection refused, timeout)";

#[cfg(test)]
mod tests {
    use super::*;

    /// P5-I14: every exit code is distinct and the `--help` table lists each
    /// one with the number the process really exits with.
    #[test]
    fn p5_i14_exit_codes_are_distinct_and_documented() {
        let all = [
            Exit::Ok,
            Exit::Failure,
            Exit::BadArguments,
            Exit::Partial,
            Exit::NotFound,
            Exit::ReadRefused,
            Exit::WriteRejected,
            Exit::Halted,
            Exit::Unreachable,
        ];
        let codes: std::collections::BTreeSet<i32> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        for (e, word) in
            all.iter().zip(["success", "failure", "bad arguments", "partial", "not found", "read refused", "write rejected", "halted", "unreachable"])
        {
            let line = format!("  {}  ", e.code());
            let listed = EXIT_CODES_HELP.lines().find(|l| l.starts_with(&line)).unwrap_or_default();
            assert!(listed.contains(word), "{e:?} ({}) is listed as {listed:?}", e.code());
        }
    }
}
