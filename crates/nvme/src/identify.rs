//! Identify (`nvme_identify_ctrl` / `nvme_identify_ns` in Linux's nvme core): the
//! command, and what the controller and namespace data say.

use super::*;

/// What Identify Controller said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlInfo {
    /// PCI vendor id.
    pub vid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// MDTS (a power of two of the minimum page size; 0 = no limit).
    pub mdts: u8,
    /// Namespaces.
    pub nn: u32,
}

/// What Identify Namespace said about namespace 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace id.
    pub nsid: u32,
    /// Size in logical blocks (NSZE).
    pub sectors: u64,
    /// Logical block size in bytes (the LBA format FLBAS selects).
    pub sector_size: usize,
}

fn text(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    String::from(s.trim())
}

/// Parses the 4096 bytes of Identify Controller data.
pub fn parse_identify_ctrl(id: &[u8]) -> CtrlInfo {
    CtrlInfo {
        vid: u16::from_le_bytes([id[0], id[1]]),
        serial: text(&id[4..24]),
        model: text(&id[24..64]),
        firmware: text(&id[64..72]),
        mdts: id[77],
        nn: u32::from_le_bytes([id[516], id[517], id[518], id[519]]),
    }
}

/// Parses Identify Namespace data; `None` for an unusable format (metadata interleaved
/// with data, a block size outside 512 B – 64 KiB).
pub fn parse_identify_ns(nsid: u32, id: &[u8]) -> Option<Namespace> {
    let nsze = u64::from_le_bytes(id[0..8].try_into().ok()?);
    let flbas = id[26] & 0xf;
    let f = 128 + 4 * flbas as usize;
    let ms = u16::from_le_bytes([id[f], id[f + 1]]);
    let lbads = id[f + 2];
    if !(9..=16).contains(&lbads) || (ms != 0 && id[26] & 0x10 != 0) {
        return None;
    }
    Some(Namespace {
        nsid,
        sectors: nsze,
        sector_size: 1 << lbads,
    })
}

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    /// Identify with CNS `cns` for `nsid` into a fresh 4 KiB buffer.
    pub(crate) fn identify(&mut self, cns: u32, nsid: u32) -> Result<Vec<u8>, NvmeError> {
        let buf = DmaBuf::alloc(self.dev.platform(), PAGE as usize)?;
        let mut s = DmaStream::<FromDevice>::map(&self.dev, buf).map_err(|e| e.error)?;
        let seg = [DmaSegment {
            addr: s.dma_addr(),
            len: PAGE as usize,
        }];
        let prps = build_prps(&seg, &self.prp_pool)?;
        let mut sqe = [0u32; 16];
        sqe[0] = opc::IDENTIFY as u32;
        sqe[1] = nsid;
        sqe[6] = prps.prp1 as u32;
        sqe[7] = (prps.prp1 >> 32) as u32;
        sqe[8] = prps.prp2 as u32;
        sqe[9] = (prps.prp2 >> 32) as u32;
        sqe[10] = cns;
        self.admin_cmd(sqe)?;
        drop(prps);
        let v = s.sync_for_cpu().to_vec();
        Ok(v)
    }
}
