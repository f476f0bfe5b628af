//! [`NvmeError`]: why an NVMe operation failed, and the names of NVMe status codes.

use super::*;

/// Why an NVMe operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    NotReady {
        /// The value waited for.
        want: bool,
        /// CAP.TO in ms.
        ms: u32,
    },
    /// The controller lacks something the driver needs.
    Unsupported(&'static str),
    /// The DMA API refused (a mask, a mapping, memory).
    Dma(DmaError),
    /// The PRP list pool refused.
    Pool(PoolError),
    /// The request does not fit the namespace or a command.
    BadRequest(&'static str),
    /// A mapped segment cannot be described by PRPs.
    BadSegment {
        /// Index of the segment.
        index: usize,
        /// Its bus address.
        addr: u64,
        /// Its length.
        len: usize,
        /// Which rule.
        reason: &'static str,
    },
    /// The controller completed the command with an error status.
    Status {
        /// Queue.
        qid: u16,
        /// Opcode.
        opcode: u8,
        /// Status code type (0 generic, 1 command specific, 2 media).
        sct: u8,
        /// Status code.
        sc: u8,
        /// Do not retry.
        dnr: bool,
    },
    /// The command did not complete in time (the controller was reset).
    Timeout {
        /// Queue.
        qid: u16,
        /// Opcode.
        opcode: u8,
        /// Timeout in ms.
        ms: u32,
    },
    /// CSTS.CFS: the controller hit a fatal error (it was reset).
    ControllerFatal {
        /// The command that was running.
        opcode: u8,
    },
    /// The controller failed a reset earlier and is out of service.
    Failed,
    /// A started command ended because the controller was reset for another
    /// command's timeout or failure (it may or may not have run).
    Aborted {
        /// Queue.
        qid: u16,
        /// Opcode.
        opcode: u8,
    },
    /// [`Controller::queue_depth`] commands are in flight already (or, for a waited
    /// command, every CID of the queue is taken).
    QueueFull {
        /// The depth reached.
        depth: usize,
    },
    /// [`Controller::complete_next`] with no command started.
    NothingInFlight,
}

impl From<DmaError> for NvmeError {
    fn from(e: DmaError) -> Self {
        NvmeError::Dma(e)
    }
}

impl From<PoolError> for NvmeError {
    fn from(e: PoolError) -> Self {
        NvmeError::Pool(e)
    }
}

/// A readable name for a status (NVMe 1.4 figures 127, 128, 130).
pub fn status_name(sct: u8, sc: u8) -> &'static str {
    match (sct, sc) {
        (0, 0x01) => "invalid opcode",
        (0, 0x02) => "invalid field in command",
        (0, 0x04) => "data transfer error",
        (0, 0x06) => "internal error",
        (0, 0x0b) => "invalid namespace",
        (0, 0x13) => "PRP offset invalid",
        (0, 0x80) => "LBA out of range",
        (1, 0x00) => "completion queue invalid",
        (1, 0x01) => "invalid queue identifier",
        (1, 0x02) => "invalid queue size",
        (2, 0x80) => "write fault",
        (2, 0x81) => "unrecovered read error (media error)",
        (2, _) => "media error",
        _ => "error",
    }
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::NotReady { want, ms } => {
                write!(f, "nvme: CSTS.RDY did not become {} in {ms} ms", *want as u8)
            }
            NvmeError::Unsupported(w) => write!(f, "nvme: unsupported controller: {w}"),
            NvmeError::Dma(e) => write!(f, "nvme: {e}"),
            NvmeError::Pool(e) => write!(f, "nvme: {e}"),
            NvmeError::BadRequest(r) => write!(f, "nvme: {r}"),
            NvmeError::BadSegment {
                index,
                addr,
                len,
                reason,
            } => write!(f, "nvme: segment {index} ({addr:#x}+{len:#x}) {reason}"),
            NvmeError::Status {
                qid,
                opcode,
                sct,
                sc,
                dnr,
            } => write!(
                f,
                "nvme: {} (queue {qid}, opcode {opcode:#04x}, SCT {sct} SC {sc:#04x}{})",
                status_name(*sct, *sc),
                if *dnr { ", DNR" } else { "" }
            ),
            NvmeError::Timeout { qid, opcode, ms } => write!(
                f,
                "nvme: command {opcode:#04x} on queue {qid} did not complete in {ms} ms (controller reset)"
            ),
            NvmeError::ControllerFatal { opcode } => write!(
                f,
                "nvme: controller fatal status (CSTS.CFS) during command {opcode:#04x} (controller reset)"
            ),
            NvmeError::Failed => f.write_str("nvme: controller out of service after a failed reset"),
            NvmeError::Aborted { qid, opcode } => write!(
                f,
                "nvme: command {opcode:#04x} on queue {qid} ended by a controller reset (another command failed)"
            ),
            NvmeError::QueueFull { depth } => {
                write!(f, "nvme: {depth} commands already in flight (queue full)")
            }
            NvmeError::NothingInFlight => f.write_str("nvme: no command in flight"),
        }
    }
}
