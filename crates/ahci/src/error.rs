//! [`AhciError`]: why an AHCI operation failed, each cause its own variant.

use super::*;

/// Why an AHCI operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AhciError {
    /// GHC.HR did not clear within 1 s.
    ResetTimeout,
    /// No such port, or no disk on it.
    NoDisk(usize),
    /// The port failed recovery earlier and is out of service.
    PortFailed(usize),
    /// The port's engines did not stop or start (PxCMD.CR/FR, PxTFD.BSY) in time.
    PortStuck {
        /// Port.
        port: usize,
        /// What did not happen.
        what: &'static str,
    },
    /// The DMA API refused (a mask, a mapping, memory).
    Dma(DmaError),
    /// The command-table pool refused.
    Pool(PoolError),
    /// The request does not fit the disk or a command.
    BadRequest {
        /// Port.
        port: usize,
        /// Why.
        reason: &'static str,
    },
    /// A mapped segment cannot be a PRD entry (odd length, odd address, > 4 MiB, above
    /// 4 GiB without S64A) or there are more than [`MAX_PRDT`] of them.
    BadSegment {
        /// Port.
        port: usize,
        /// Index of the segment.
        index: usize,
        /// Its bus address.
        addr: u64,
        /// Its length.
        len: usize,
        /// Which rule.
        reason: &'static str,
    },
    /// The device reported an error for this command (PxIS.TFES / PxTFD.STS.ERR).
    TaskFile {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// PxTFD status.
        status: u8,
        /// PxTFD error register (UNC 0x40 media error, IDNF 0x10, ABRT 0x04).
        error: u8,
        /// LBA the device reported in its D2H FIS (the first failing sector).
        lba: u64,
    },
    /// The HBA stopped the command for a bus or interface error (PxIS.HBFS, HBDS,
    /// IFS, OFS).
    HostBus {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// PxIS at the time.
        is: u32,
    },
    /// The command was still in PxCI after the timeout.
    Timeout {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// Timeout in ms.
        ms: u32,
    },
    /// `start` on a disk without NCQ (queue depth 1).
    NotQueued(usize),
    /// Every NCQ tag of the port is in flight.
    QueueFull {
        /// Port.
        port: usize,
        /// Tags in flight (the queue depth).
        depth: usize,
    },
    /// `complete` with no started command in flight.
    NothingInFlight(usize),
    /// The HBA reported a different byte count than the command moves.
    ShortTransfer {
        /// Port.
        port: usize,
        /// Bytes expected.
        expected: usize,
        /// PRDBC.
        got: u32,
    },
}

impl From<DmaError> for AhciError {
    fn from(e: DmaError) -> Self {
        AhciError::Dma(e)
    }
}

impl From<PoolError> for AhciError {
    fn from(e: PoolError) -> Self {
        AhciError::Pool(e)
    }
}

impl fmt::Display for AhciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AhciError::ResetTimeout => f.write_str("ahci: HBA reset did not complete in 1 s"),
            AhciError::NoDisk(p) => write!(f, "ahci: no disk on port {p}"),
            AhciError::PortFailed(p) => write!(f, "ahci: port {p} failed recovery"),
            AhciError::PortStuck { port, what } => write!(f, "ahci port {port}: {what}"),
            AhciError::Dma(e) => write!(f, "ahci: {e}"),
            AhciError::Pool(e) => write!(f, "ahci: {e}"),
            AhciError::BadRequest { port, reason } => write!(f, "ahci port {port}: {reason}"),
            AhciError::BadSegment {
                port,
                index,
                addr,
                len,
                reason,
            } => write!(
                f,
                "ahci port {port}: segment {index} ({addr:#x}+{len:#x}) {reason}"
            ),
            AhciError::TaskFile {
                port,
                command,
                status,
                error,
                lba,
            } => {
                let what = if error & regs::ATA_ERR_UNC != 0 {
                    "media error"
                } else if error & regs::ATA_ERR_IDNF != 0 {
                    "sector not found"
                } else if error & regs::ATA_ERR_ABRT != 0 {
                    "command aborted"
                } else {
                    "device error"
                };
                write!(
                    f,
                    "ahci port {port}: {what} (command {command:#04x}, status {status:#04x}, error {error:#04x}, lba {lba})"
                )
            }
            AhciError::HostBus { port, command, is } => write!(
                f,
                "ahci port {port}: host bus/interface error (command {command:#04x}, PxIS {is:#010x})"
            ),
            AhciError::Timeout { port, command, ms } => write!(
                f,
                "ahci port {port}: command {command:#04x} did not complete in {ms} ms"
            ),
            AhciError::NotQueued(p) => {
                write!(f, "ahci port {p}: no NCQ, one command at a time")
            }
            AhciError::QueueFull { port, depth } => {
                write!(f, "ahci port {port}: all {depth} NCQ tags in flight")
            }
            AhciError::NothingInFlight(p) => write!(f, "ahci port {p}: no command in flight"),
            AhciError::ShortTransfer {
                port,
                expected,
                got,
            } => write!(
                f,
                "ahci port {port}: moved {got} bytes, expected {expected}"
            ),
        }
    }
}
