//! Fault classes and how often each was injected.

use std::collections::BTreeMap;

/// Every kind of fault the simulator injects. The names are the keys of the
/// `faults` object in the simulator's JSON summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultClass {
    /// Power loss: unsynced data and directory entries lost.
    CrashPowerLoss,
    /// Process kill: the page cache survives.
    CrashProcess,
    /// A crash in the middle of a synchronous operation (after K more
    /// mutating disk operations): recovery, snapshot, commit.
    CrashMidOperation,
    /// A process paused (no events handled) for a while.
    Pause,
    /// A torn write at a crash: a prefix of the unsynced tail survived.
    TornWrite,
    /// A garbage partial last sector at a torn write.
    TornGarbage,
    /// At power loss, a prefix of the unsynced directory changes survived
    /// (the file system's journal committed them on its own).
    UnsyncedMetadataKept,
    /// A bit flipped in synced data (latent sector error).
    BitFlip,
    /// A zeroed block in synced data.
    ZeroedBlock,
    /// An append landed at the wrong offset or in the wrong file.
    MisdirectedWrite,
    /// A read returned EIO.
    ReadEio,
    /// A write returned EIO.
    WriteEio,
    /// An fsync returned EIO.
    FsyncEio,
    /// An fsync took much longer than usual.
    SlowFsync,
    /// A network segment dropped.
    NetDrop,
    /// A network segment delayed far beyond the usual latency.
    NetDelay,
    /// A network segment delivered out of order.
    NetReorder,
    /// A network segment delivered twice.
    NetDuplicate,
    /// Random bytes of a segment corrupted (framing catches it).
    NetCorrupt,
    /// Bytes inside a frame rewritten and its crc32c recomputed (framing
    /// passes; record checksums, fingerprints and digests must catch it).
    NetForge,
    /// A bit flipped in a replica's memory: in a document of a record
    /// that was validated (crc32c, fingerprint) and is about to be applied
    /// (non-ECC RAM). Only the state-digest check at apply (REPL-4, F-D3)
    /// can catch it.
    MemoryBitFlip,
    /// A one-way partition.
    PartitionOneWay,
    /// A two-way partition.
    PartitionTwoWay,
    /// A connection reset.
    ConnReset,
}

impl FaultClass {
    /// Every class, in a fixed order.
    pub const ALL: [FaultClass; 24] = [
        FaultClass::CrashPowerLoss,
        FaultClass::CrashProcess,
        FaultClass::CrashMidOperation,
        FaultClass::Pause,
        FaultClass::TornWrite,
        FaultClass::TornGarbage,
        FaultClass::UnsyncedMetadataKept,
        FaultClass::BitFlip,
        FaultClass::ZeroedBlock,
        FaultClass::MisdirectedWrite,
        FaultClass::ReadEio,
        FaultClass::WriteEio,
        FaultClass::FsyncEio,
        FaultClass::SlowFsync,
        FaultClass::NetDrop,
        FaultClass::NetDelay,
        FaultClass::NetReorder,
        FaultClass::NetDuplicate,
        FaultClass::NetCorrupt,
        FaultClass::NetForge,
        FaultClass::MemoryBitFlip,
        FaultClass::PartitionOneWay,
        FaultClass::PartitionTwoWay,
        FaultClass::ConnReset,
    ];

    /// Stable name (JSON key).
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::CrashPowerLoss => "crash_power_loss",
            FaultClass::CrashProcess => "crash_process",
            FaultClass::CrashMidOperation => "crash_mid_operation",
            FaultClass::Pause => "pause",
            FaultClass::TornWrite => "torn_write",
            FaultClass::TornGarbage => "torn_garbage_sector",
            FaultClass::UnsyncedMetadataKept => "unsynced_dir_ops_kept",
            FaultClass::BitFlip => "bit_flip",
            FaultClass::ZeroedBlock => "zeroed_block",
            FaultClass::MisdirectedWrite => "misdirected_write",
            FaultClass::ReadEio => "read_eio",
            FaultClass::WriteEio => "write_eio",
            FaultClass::FsyncEio => "fsync_eio",
            FaultClass::SlowFsync => "slow_fsync",
            FaultClass::NetDrop => "net_drop",
            FaultClass::NetDelay => "net_delay",
            FaultClass::NetReorder => "net_reorder",
            FaultClass::NetDuplicate => "net_duplicate",
            FaultClass::NetCorrupt => "net_corrupt",
            FaultClass::NetForge => "net_forge",
            FaultClass::MemoryBitFlip => "memory_bit_flip",
            FaultClass::PartitionOneWay => "partition_one_way",
            FaultClass::PartitionTwoWay => "partition_two_way",
            FaultClass::ConnReset => "conn_reset",
        }
    }

    /// Whether this fault damages stored bytes, so that a refusal to start
    /// (or a lost commit whose bytes it hit) is the fault's doing.
    pub fn damages_data(self) -> bool {
        matches!(self, FaultClass::BitFlip | FaultClass::ZeroedBlock | FaultClass::MisdirectedWrite)
    }
}

/// Injection counts per class.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters(BTreeMap<FaultClass, u64>);

impl FaultCounters {
    /// Counts one injection.
    pub fn bump(&mut self, class: FaultClass) {
        *self.0.entry(class).or_insert(0) += 1;
    }
    /// Count for one class.
    pub fn get(&self, class: FaultClass) -> u64 {
        self.0.get(&class).copied().unwrap_or(0)
    }
    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &FaultCounters) {
        for (c, n) in &other.0 {
            *self.0.entry(*c).or_insert(0) += n;
        }
    }
    /// Every class with its count (zero included), in the fixed order.
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = FaultClass::ALL.iter().map(|c| (c.name().to_string(), self.get(*c).into())).collect();
        serde_json::Value::Object(map)
    }
    /// Total injections.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}
