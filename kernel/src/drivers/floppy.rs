//! The PC floppy controller (82078-style, as QEMU's isa-fdc) reading sectors
//! over ISA DMA channel 2: the classic example of third-party DMA. The drive
//! never touches memory itself; it raises DREQ and the 8237 moves each byte
//! to the address we programmed (hw-facts §6.5).

use core::sync::atomic::{AtomicBool, Ordering};

use hal::PhysAddr;
use mm::buddy::ZoneLimit;
use spin::Mutex;

use crate::arch::apic;
use crate::arch::idt::TrapFrame;
use crate::arch::port::{inb, outb};
use crate::dmaengine as kdmaengine;
use crate::drivers::i8237;
use crate::mm::{self as kmm, direct};
use dmaengine::{ChanId, DmaCaps, DmaStatus, SlaveConfig};
use hal::DmaAddr;

const DOR: u16 = 0x3F2;
const MSR: u16 = 0x3F4;
const FIFO: u16 = 0x3F5;
const CCR: u16 = 0x3F7;
const SECTOR: usize = 512;
/// 1.44 MB geometry: 80 cylinders × 2 heads × 18 sectors.
const SECTORS_PER_TRACK: u32 = 18;
const HEADS: u32 = 2;
pub const TOTAL_SECTORS: u32 = 80 * HEADS * SECTORS_PER_TRACK;
const DMA_CHANNEL: u8 = 2;
/// The bounce area: 64 KiB from the DMA zone. A buddy block is aligned to its
/// size, so an order-4 block never crosses a 64 KiB boundary.
const BUF_ORDER: u8 = 4;

static IRQ: AtomicBool = AtomicBool::new(false);

fn irq6(_f: &mut TrapFrame) {
    IRQ.store(true, Ordering::Release);
    // Third-party DMA: the peripheral's interrupt is also the DMA controller's news.
    if let Some(dev) = crate::drivers::i8237::dmaengine::dev() {
        kdmaengine::irq(dev);
    }
}

#[derive(Debug)]
pub enum FloppyError {
    NoDrive,
    Timeout(&'static str),
    Controller { st0: u8, st1: u8, st2: u8 },
    OutOfRange { lba: u32, count: u32 },
    Setup(alloc::string::String),
}

impl core::fmt::Display for FloppyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FloppyError::NoDrive => f.write_str(
                "no floppy drive (CMOS reports none; the 'floppy' profile attaches one)",
            ),
            FloppyError::Timeout(what) => write!(f, "controller timed out {what}"),
            FloppyError::Controller { st0, st1, st2 } => {
                write!(
                    f,
                    "read failed: ST0 {st0:#04x} ST1 {st1:#04x} ST2 {st2:#04x}"
                )
            }
            FloppyError::OutOfRange { lba, count } => {
                write!(
                    f,
                    "sectors {lba}..{} are beyond the disk ({TOTAL_SECTORS} sectors)",
                    lba + count
                )
            }
            FloppyError::Setup(e) => f.write_str(e),
        }
    }
}

struct Fdc {
    buf: PhysAddr,
    /// The dmaengine channel on the 8237 (ISA channel 2), held by this driver.
    chan: ChanId,
}

static FDC: Mutex<Option<Fdc>> = Mutex::new(None);

fn send(byte: u8) -> Result<(), FloppyError> {
    for _ in 0..200_000 {
        if inb(MSR) & 0xC0 == 0x80 {
            outb(FIFO, byte);
            return Ok(());
        }
    }
    Err(FloppyError::Timeout("waiting to accept a command byte"))
}

fn recv() -> Result<u8, FloppyError> {
    for _ in 0..200_000 {
        if inb(MSR) & 0xC0 == 0xC0 {
            return Ok(inb(FIFO));
        }
    }
    Err(FloppyError::Timeout("waiting for a result byte"))
}

fn wait_irq(what: &'static str) -> Result<(), FloppyError> {
    for _ in 0..300 {
        if IRQ.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        apic::sleep_ms(10);
    }
    Err(FloppyError::Timeout(what))
}

/// SENSE INTERRUPT STATUS: (ST0, present cylinder).
fn sense() -> Result<(u8, u8), FloppyError> {
    send(0x08)?;
    let st0 = recv()?;
    let pcn = if st0 == 0x80 { 0 } else { recv()? };
    Ok((st0, pcn))
}

/// CMOS register 0x10, high nibble: drive 0's type (4 = 1.44 MB).
fn drive0_type() -> u8 {
    outb(0x70, 0x10);
    inb(0x71) >> 4
}

/// Probes and resets the controller; call once at boot.
pub fn init() -> Result<(), FloppyError> {
    if drive0_type() == 0 {
        return Err(FloppyError::NoDrive);
    }
    apic::route_isa_irq(6, irq6).map_err(|e| FloppyError::Setup(alloc::format!("IRQ 6: {e}")))?;
    i8237::request(DMA_CHANNEL, "floppy").map_err(|e| FloppyError::Setup(alloc::format!("{e}")))?;
    let buf = kmm::alloc_frames(BUF_ORDER, ZoneLimit::Dma)
        .map_err(|e| FloppyError::Setup(alloc::format!("DMA buffer: {e}")))?;
    let isa = crate::drivers::i8237::dmaengine::dev()
        .ok_or_else(|| FloppyError::Setup("no ISA DMA controller registered".into()))?;
    let chan = kdmaengine::request("floppy", DmaCaps::SLAVE, |c| {
        c.dev == isa && c.chan == DMA_CHANNEL as usize
    })
    .map_err(|e| FloppyError::Setup(alloc::format!("dmaengine channel: {e}")))?;
    // The device side is the controller's data register; the 8237 moves one byte per
    // DREQ/DACK cycle.
    let cfg = SlaveConfig {
        direction: dmaengine::TransferDirection::DevToMem,
        src_addr: DmaAddr::new(FIFO as u64),
        dst_addr: DmaAddr::new(0),
        src_addr_width: 1,
        dst_addr_width: 1,
        src_maxburst: 1,
        dst_maxburst: 1,
    };
    kdmaengine::with(|e| e.slave_config(chan, cfg))
        .map_err(|e| FloppyError::Setup(alloc::format!("slave config: {e}")))?;
    // Reset: nRESET 0 → 1 raises IRQ 6; then one SENSE INTERRUPT per drive.
    IRQ.store(false, Ordering::Release);
    outb(DOR, 0x00);
    outb(DOR, 0x0C);
    wait_irq("after reset")?;
    for _ in 0..4 {
        sense()?;
    }
    outb(CCR, 0x00); // 500 kbps: 1.44 MB media
                     // SPECIFY: step rate / head unload, head load time, ND = 0 (use DMA).
    send(0x03)?;
    send(0xDF)?;
    send(0x02)?;
    outb(DOR, 0x1C); // motor A on, DMA gate, drive 0
    send(0x07)?; // RECALIBRATE drive 0
    send(0x00)?;
    wait_irq("recalibrating")?;
    let (st0, pcn) = sense()?;
    if st0 & 0xC0 != 0 || pcn != 0 {
        return Err(FloppyError::Controller {
            st0,
            st1: 0,
            st2: 0,
        });
    }
    log::info!(
        "floppy: drive 0 (1.44 MB), ISA DMA channel {DMA_CHANNEL} ({chan}), buffer {:#x} (64 KiB below 16 MiB)",
        buf.as_u64()
    );
    *FDC.lock() = Some(Fdc { buf, chan });
    if let Err(e) = crate::dmaengine::dmatest::register_sector_device(&DMATEST) {
        log::warn!("floppy: dmatest cannot test {chan} through the drive ({e})");
    }
    Ok(())
}

/// How dmatest tests ISA channel 2: through the drive.
static DMATEST: crate::dmaengine::dmatest::SectorDevice = crate::dmaengine::dmatest::SectorDevice {
    name: "floppy0",
    channel,
    sectors: TOTAL_SECTORS,
    read: |lba, count, out| {
        read(lba, count, out)
            .map(|_| ())
            .map_err(|e| alloc::boxed::Box::new(e) as _)
    },
};

/// The dmaengine channel the driver holds (for `dma` and dmatest).
pub fn channel() -> Option<ChanId> {
    FDC.lock().as_ref().map(|f| f.chan)
}

pub fn present() -> bool {
    FDC.lock().is_some()
}

/// Reads `count` sectors from `lba` into `out`; returns the physical address
/// the 8237 wrote to (for the lab's "where did the bytes go").
pub fn read(lba: u32, count: u32, out: &mut alloc::vec::Vec<u8>) -> Result<u64, FloppyError> {
    if count == 0 || lba.checked_add(count).is_none_or(|end| end > TOTAL_SECTORS) {
        return Err(FloppyError::OutOfRange { lba, count });
    }
    let guard = FDC.lock();
    let fdc = guard.as_ref().ok_or(FloppyError::NoDrive)?;
    let (mut lba, mut left) = (lba, count);
    while left > 0 {
        let cyl = lba / (HEADS * SECTORS_PER_TRACK);
        let head = (lba / SECTORS_PER_TRACK) % HEADS;
        let sector = lba % SECTORS_PER_TRACK + 1;
        // One side of one track per command: up to the end of the track.
        let n = left.min(SECTORS_PER_TRACK - sector + 1);
        let len = n as usize * SECTOR;
        // dmaengine client steps: prep → submit → issue_pending (programs the 8237).
        let ch = fdc.chan;
        let cookie = kdmaengine::with(|e| {
            let d = e.prep_slave_sg(
                ch,
                &[(DmaAddr::new(fdc.buf.as_u64()), len)],
                dmaengine::TransferDirection::DevToMem,
            )?;
            let c = e.submit(d)?;
            e.issue_pending(ch)?;
            Ok::<_, dmaengine::EngineError>(c)
        })
        .map_err(|e| FloppyError::Setup(alloc::format!("{ch}: {e}")))?;
        IRQ.store(false, Ordering::Release);
        // READ DATA (MFM): drive/head, C, H, R, N=2 (512 B), EOT, GPL, DTL.
        for b in [
            0x46,
            (head << 2) as u8,
            cyl as u8,
            head as u8,
            sector as u8,
            2,
            SECTORS_PER_TRACK as u8,
            0x1B,
            0xFF,
        ] {
            send(b)?;
        }
        let waited = wait_irq("reading");
        let dma = kdmaengine::wait(ch, cookie, 100);
        if waited.is_err() || !matches!(dma, Ok(st) if st.status == DmaStatus::Complete) {
            let _ = kdmaengine::with(|e| e.terminate_all(ch));
        }
        waited?;
        let mut res = [0u8; 7];
        for r in res.iter_mut() {
            *r = recv()?;
        }
        match dma {
            Ok(st) if st.status == DmaStatus::Complete => {}
            Ok(st) => {
                return Err(FloppyError::Setup(alloc::format!(
                    "{ch}: transfer ended {:?} with {} bytes left",
                    st.status,
                    st.residue
                )))
            }
            Err(e) => return Err(FloppyError::Setup(alloc::format!("{ch}: {e}"))),
        }
        if res[0] & 0xC0 != 0 {
            return Err(FloppyError::Controller {
                st0: res[0],
                st1: res[1],
                st2: res[2],
            });
        }
        let start = out.len();
        out.resize(start + len, 0);
        hal::PhysMemory::read(&direct::direct(), fdc.buf, &mut out[start..]);
        lba += n;
        left -= n;
    }
    Ok(fdc.buf.as_u64())
}
