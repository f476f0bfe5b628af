//! `dmaengine`: a small framework in the shape of Linux dmaengine + virt-dma
//! (DESIGN.md §5, hw-facts §2).
//!
//! * A controller driver implements [`DmaProvider`] (per-channel hardware operations).
//! * [`DmaEngine`] is the registry: devices get ids `0, 1, …`, channels are named
//!   `dma{N}chan{M}`; clients request a channel by capability mask and a filter,
//!   push a [`SlaveConfig`], prepare a [`Descriptor`], [`DmaEngine::submit`] it (which
//!   consumes it and returns a [`Cookie`]), [`DmaEngine::issue_pending`], and learn the
//!   outcome from the completion callback or [`DmaEngine::tx_status`].
//! * Each channel keeps the virt-dma queues: submitted → issued → active → completed.
//!   Completion runs from [`DmaEngine::handle_irq`], the interrupt path: the provider
//!   reports per-channel events, the framework completes the cookie, runs the callback
//!   and starts the next issued descriptor.
//!
//! The engine is single-threaded (`&mut self`); the kernel wraps it in a lock.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use hal::DmaAddr;

bitflags::bitflags! {
    /// Capabilities of a DMA device (subset of Linux `dma_transaction_type`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DmaCaps: u32 {
        /// Memory-to-memory copies (`prep_memcpy`).
        const MEMCPY = 1 << 0;
        /// Slave (peripheral) scatter-gather transfers.
        const SLAVE = 1 << 1;
        /// Cyclic transfers (`prep_dma_cyclic`): a ring buffer split into periods,
        /// a callback per period, running until terminated.
        const CYCLIC = 1 << 2;
        /// Channels are handed out only through an explicit request.
        const PRIVATE = 1 << 3;
    }
}

/// Transfer direction (Linux `dma_transfer_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Memory to memory.
    MemToMem,
    /// Memory to a device FIFO.
    MemToDev,
    /// Device FIFO to memory.
    DevToMem,
}

/// Slave configuration (Linux `dma_slave_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveConfig {
    /// Direction this configuration is meant for.
    pub direction: Direction,
    /// Device-side source address (DevToMem).
    pub src_addr: DmaAddr,
    /// Device-side destination address (MemToDev).
    pub dst_addr: DmaAddr,
    /// Device source register width in bytes (1, 2, 4, 8, 16, 32 or 64).
    pub src_addr_width: u8,
    /// Device destination register width in bytes.
    pub dst_addr_width: u8,
    /// Source burst length in items of `src_addr_width`.
    pub src_maxburst: u32,
    /// Destination burst length in items of `dst_addr_width`.
    pub dst_maxburst: u32,
}

impl SlaveConfig {
    /// Checks the generic rules: widths are 1..=64 powers of two, the direction is a
    /// slave direction. Providers check their own limits on top.
    pub fn validate(&self) -> Result<(), DmaError> {
        for w in [self.src_addr_width, self.dst_addr_width] {
            if !(1..=64).contains(&w) || !w.is_power_of_two() {
                return Err(DmaError::BadBusWidth(w));
            }
        }
        if self.direction == Direction::MemToMem {
            return Err(DmaError::BadDirection(self.direction));
        }
        Ok(())
    }
}

/// A transaction cookie: > 0 and monotonic per channel, wrapping back to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cookie(pub i32);

/// Smallest valid cookie (Linux `DMA_MIN_COOKIE`).
pub const DMA_MIN_COOKIE: i32 = 1;

/// Status of a transaction (Linux `dma_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaStatus {
    /// Finished successfully.
    Complete,
    /// Queued or running.
    InProgress,
    /// Running on a paused channel.
    Paused,
    /// Finished with an error.
    Error,
}

/// Result of [`DmaEngine::tx_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxState {
    /// Status of the cookie.
    pub status: DmaStatus,
    /// Bytes left (0 when complete).
    pub residue: usize,
    /// Last completed cookie on the channel.
    pub last: Cookie,
    /// Last assigned cookie on the channel.
    pub used: Cookie,
}

/// Outcome handed to a completion callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxResult {
    /// The transfer completed.
    NoError,
    /// The controller reported an error.
    Error,
}

/// A completion callback; runs from [`DmaEngine::handle_irq`].
pub type Callback = Box<dyn FnMut(Cookie, TxResult) + Send>;

/// Errors of the framework and providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaError {
    /// No device with this id.
    NoSuchDevice(usize),
    /// No channel with this id.
    NoSuchChannel(ChanId),
    /// The channel is not held by a client (never requested or released).
    ChannelNotHeld(ChanId),
    /// No free channel matched the mask and filter.
    NoChannel,
    /// The device lacks a capability the operation needs.
    NotCapable(DmaCaps),
    /// A slave prep without a slave configuration.
    NotConfigured(ChanId),
    /// Bus width the provider cannot do.
    BadBusWidth(u8),
    /// Burst length the provider cannot do.
    BadBurst(u32),
    /// Direction the provider cannot do.
    BadDirection(Direction),
    /// Empty or over-long transfer.
    BadLength(usize),
    /// The provider could not allocate descriptor memory.
    NoMemory,
    /// The operation is not supported.
    Unsupported,
    /// The hardware did not respond in time.
    Timeout,
    /// The cookie was never assigned on this channel.
    BadCookie(Cookie),
    /// The controller cannot reach this address (ISA: above 16 MiB or across 64 KiB).
    BadAddress(DmaAddr),
    /// More scatter-gather segments than the controller takes in one descriptor.
    TooManySegments {
        /// What the controller takes.
        max: usize,
        /// What was asked.
        got: usize,
    },
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::NoSuchDevice(d) => write!(f, "no DMA device {d}"),
            DmaError::NoSuchChannel(c) => write!(f, "no DMA channel {c}"),
            DmaError::ChannelNotHeld(c) => write!(f, "channel {c} is not held by a client"),
            DmaError::NoChannel => write!(f, "no free channel matches the request"),
            DmaError::NotCapable(c) => write!(f, "device lacks capability {c:?}"),
            DmaError::NotConfigured(c) => write!(f, "channel {c} has no slave configuration"),
            DmaError::BadBusWidth(w) => write!(f, "unsupported bus width {w} bytes"),
            DmaError::BadBurst(b) => write!(f, "unsupported burst length {b}"),
            DmaError::BadDirection(d) => write!(f, "unsupported direction {d:?}"),
            DmaError::BadLength(l) => write!(f, "unsupported transfer length {l}"),
            DmaError::NoMemory => write!(f, "out of descriptor memory"),
            DmaError::Unsupported => write!(f, "operation not supported"),
            DmaError::Timeout => write!(f, "hardware timeout"),
            DmaError::BadCookie(c) => write!(f, "cookie {} was never assigned", c.0),
            DmaError::BadAddress(a) => {
                write!(
                    f,
                    "the controller cannot reach bus address {:#x}",
                    a.as_u64()
                )
            }
            DmaError::TooManySegments { max, got } => {
                write!(f, "{got} segments, the controller takes at most {max}")
            }
        }
    }
}

/// Channel identity: device id and channel index; displays as `dma{N}chan{M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChanId {
    /// Device id.
    pub dev: usize,
    /// Channel index within the device.
    pub chan: usize,
}

impl ChanId {
    /// Linux-style channel name, e.g. `dma0chan1`.
    pub fn name(&self) -> String {
        alloc::format!("{self}")
    }
}

impl fmt::Display for ChanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dma{}chan{}", self.dev, self.chan)
    }
}

/// Statistics of one channel (Linux sysfs `in_use`, `bytes_transferred`, `memcpy_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChanInfo {
    /// Channel.
    pub id: ChanId,
    /// Held by a client.
    pub in_use: bool,
    /// Descriptors completed without error.
    pub completed: u64,
    /// Bytes of those descriptors.
    pub bytes_transferred: u64,
    /// Descriptors submitted, issued or running.
    pub queued: usize,
}

/// What the provider's interrupt path found for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChanEvent {
    /// The active descriptor completed.
    Done(usize),
    /// The active descriptor failed; the provider has stopped the channel.
    Error(usize),
    /// One period of the active cyclic descriptor completed; the channel goes on.
    Period(usize),
}

/// Per-channel hardware operations of a DMA controller driver.
pub trait DmaProvider {
    /// The provider's prepared hardware descriptor (e.g. an LLI chain).
    type Desc;
    /// Driver name shown in channel listings (Linux `dev_name` of the DMA device).
    fn name(&self) -> &str {
        "dma"
    }
    /// Capabilities of the device.
    fn caps(&self) -> DmaCaps;
    /// Number of channels.
    fn channel_count(&self) -> usize;
    /// Accepts or rejects a slave configuration.
    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), DmaError>;
    /// Prepares a memory-to-memory copy.
    fn prep_memcpy(
        &mut self,
        chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<Self::Desc, DmaError>;
    /// Prepares a slave scatter-gather transfer over already-mapped `(addr, len)` pairs.
    fn prep_slave_sg(
        &mut self,
        chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: Direction,
        cfg: &SlaveConfig,
    ) -> Result<Self::Desc, DmaError>;
    /// Prepares a cyclic transfer over the mapped ring `buf` of `buf_len` bytes, one
    /// interrupt ([`ChanEvent::Period`]) per `period_len` bytes, wrapping forever.
    /// Providers without [`DmaCaps::CYCLIC`] keep this default.
    fn prep_cyclic(
        &mut self,
        chan: usize,
        buf: DmaAddr,
        buf_len: usize,
        period_len: usize,
        dir: Direction,
        cfg: &SlaveConfig,
    ) -> Result<Self::Desc, DmaError> {
        let _ = (chan, buf, buf_len, period_len, dir, cfg);
        Err(DmaError::Unsupported)
    }
    /// Total length of a descriptor in bytes.
    fn desc_len(&self, desc: &Self::Desc) -> usize;
    /// Starts `desc` on an idle channel.
    fn start(&mut self, chan: usize, desc: &Self::Desc);
    /// Stops the channel (terminate).
    fn stop(&mut self, chan: usize);
    /// Bytes left of the running descriptor `desc`.
    fn residue(&self, chan: usize, desc: &Self::Desc) -> usize;
    /// Suspends the channel.
    fn pause(&mut self, chan: usize) -> Result<(), DmaError>;
    /// Resumes a suspended channel.
    fn resume(&mut self, chan: usize) -> Result<(), DmaError>;
    /// Releases a descriptor's resources.
    fn free_desc(&mut self, desc: Self::Desc);
    /// Interrupt path: acknowledges the hardware and pushes one event per channel that
    /// finished. Returns false if the interrupt was not from this device.
    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool;
}

/// A prepared, not yet submitted descriptor. [`DmaEngine::submit`] consumes it, so it
/// cannot be submitted twice.
pub struct Descriptor<D> {
    chan: ChanId,
    len: usize,
    hw: D,
    callback: Option<Callback>,
    cyclic: bool,
}

impl<D> Descriptor<D> {
    /// Sets the completion callback.
    pub fn set_callback(&mut self, cb: impl FnMut(Cookie, TxResult) + Send + 'static) {
        self.callback = Some(Box::new(cb));
    }
    /// Channel the descriptor was prepared for.
    pub fn chan(&self) -> ChanId {
        self.chan
    }
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for a zero-length descriptor.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The provider's hardware descriptor.
    pub fn hw(&self) -> &D {
        &self.hw
    }
    /// True for a cyclic descriptor (never completes; a callback per period).
    pub fn is_cyclic(&self) -> bool {
        self.cyclic
    }
}

struct Queued<D> {
    cookie: Cookie,
    len: usize,
    hw: D,
    callback: Option<Callback>,
    cyclic: bool,
}

/// Number of recent failed cookies remembered per channel for `tx_status`.
const ERROR_HISTORY: usize = 16;

struct VChan<D> {
    in_use: bool,
    completed_count: u64,
    bytes: u64,
    config: Option<SlaveConfig>,
    cookie: i32,
    completed: i32,
    paused: bool,
    submitted: VecDeque<Queued<D>>,
    issued: VecDeque<Queued<D>>,
    active: Option<Queued<D>>,
    errors: VecDeque<Cookie>,
}

impl<D> VChan<D> {
    fn new() -> Self {
        VChan {
            in_use: false,
            completed_count: 0,
            bytes: 0,
            config: None,
            cookie: DMA_MIN_COOKIE - 1,
            completed: DMA_MIN_COOKIE - 1,
            paused: false,
            submitted: VecDeque::new(),
            issued: VecDeque::new(),
            active: None,
            errors: VecDeque::new(),
        }
    }
}

struct Device<P: DmaProvider> {
    provider: P,
    chans: Vec<VChan<P::Desc>>,
}

/// Linux `dma_async_is_complete`, wrap-aware.
pub fn cookie_is_complete(cookie: Cookie, last: Cookie, used: Cookie) -> bool {
    let (c, l, u) = (cookie.0, last.0, used.0);
    if l <= u {
        c <= l || c > u
    } else {
        c <= l && c > u
    }
}

/// The registry of devices and channels, with the virt-dma queues of every channel.
pub struct DmaEngine<P: DmaProvider> {
    devices: Vec<Device<P>>,
}

impl<P: DmaProvider> Default for DmaEngine<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: DmaProvider> DmaEngine<P> {
    /// An empty registry.
    pub fn new() -> Self {
        DmaEngine {
            devices: Vec::new(),
        }
    }

    /// Registers a device; returns its id (0, 1, …).
    pub fn register(&mut self, provider: P) -> usize {
        let n = provider.channel_count();
        let chans = (0..n).map(|_| VChan::new()).collect();
        self.devices.push(Device { provider, chans });
        let id = self.devices.len() - 1;
        log::debug!("dmaengine: dma{id} registered with {n} channels");
        id
    }

    /// The provider of device `dev`.
    pub fn provider(&self, dev: usize) -> Result<&P, DmaError> {
        self.devices
            .get(dev)
            .map(|d| &d.provider)
            .ok_or(DmaError::NoSuchDevice(dev))
    }

    /// Mutable access to the provider of device `dev`.
    pub fn provider_mut(&mut self, dev: usize) -> Result<&mut P, DmaError> {
        self.devices
            .get_mut(dev)
            .map(|d| &mut d.provider)
            .ok_or(DmaError::NoSuchDevice(dev))
    }

    /// Per-channel statistics, the view of Linux's `/sys/class/dma/dmaNchanM/`.
    pub fn chan_info(&self, id: ChanId) -> Result<ChanInfo, DmaError> {
        let d = self
            .devices
            .get(id.dev)
            .ok_or(DmaError::NoSuchDevice(id.dev))?;
        let c = d.chans.get(id.chan).ok_or(DmaError::NoSuchChannel(id))?;
        Ok(ChanInfo {
            id,
            in_use: c.in_use,
            completed: c.completed_count,
            bytes_transferred: c.bytes,
            queued: c.submitted.len() + c.issued.len() + c.active.iter().count(),
        })
    }

    /// Number of registered devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// All channels, with whether a client holds each.
    pub fn channels(&self) -> Vec<(ChanId, bool)> {
        let mut v = Vec::new();
        for (dev, d) in self.devices.iter().enumerate() {
            for (chan, c) in d.chans.iter().enumerate() {
                v.push((ChanId { dev, chan }, c.in_use));
            }
        }
        v
    }

    /// Requests a free channel of a device whose capabilities include `mask` and
    /// for which `filter` returns true (Linux `dma_request_channel`).
    pub fn request_channel(
        &mut self,
        mask: DmaCaps,
        mut filter: impl FnMut(ChanId) -> bool,
    ) -> Result<ChanId, DmaError> {
        for (dev, d) in self.devices.iter_mut().enumerate() {
            if !d.provider.caps().contains(mask) {
                continue;
            }
            for (chan, c) in d.chans.iter_mut().enumerate() {
                let id = ChanId { dev, chan };
                if !c.in_use && filter(id) {
                    c.in_use = true;
                    return Ok(id);
                }
            }
        }
        Err(DmaError::NoChannel)
    }

    fn dev_chan(&mut self, id: ChanId) -> Result<(&mut P, &mut VChan<P::Desc>), DmaError> {
        let d = self
            .devices
            .get_mut(id.dev)
            .ok_or(DmaError::NoSuchDevice(id.dev))?;
        let c = d
            .chans
            .get_mut(id.chan)
            .ok_or(DmaError::NoSuchChannel(id))?;
        Ok((&mut d.provider, c))
    }

    fn held(&mut self, id: ChanId) -> Result<(&mut P, &mut VChan<P::Desc>), DmaError> {
        let (p, c) = self.dev_chan(id)?;
        if !c.in_use {
            return Err(DmaError::ChannelNotHeld(id));
        }
        Ok((p, c))
    }

    /// Releases a channel: terminates everything on it and forgets its configuration.
    pub fn release(&mut self, id: ChanId) -> Result<(), DmaError> {
        self.terminate_all(id)?;
        let (_, c) = self.held(id)?;
        c.in_use = false;
        c.config = None;
        c.paused = false;
        Ok(())
    }

    /// Pushes a slave configuration (Linux `dmaengine_slave_config`).
    pub fn slave_config(&mut self, id: ChanId, cfg: SlaveConfig) -> Result<(), DmaError> {
        let (p, c) = self.held(id)?;
        cfg.validate()?;
        p.check_config(&cfg)?;
        c.config = Some(cfg);
        Ok(())
    }

    /// Prepares a memory-to-memory copy of `len` bytes.
    pub fn prep_memcpy(
        &mut self,
        id: ChanId,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<Descriptor<P::Desc>, DmaError> {
        let (p, _) = self.held(id)?;
        if !p.caps().contains(DmaCaps::MEMCPY) {
            return Err(DmaError::NotCapable(DmaCaps::MEMCPY));
        }
        if len == 0 {
            return Err(DmaError::BadLength(0));
        }
        let hw = p.prep_memcpy(id.chan, dst, src, len)?;
        let len = p.desc_len(&hw);
        Ok(Descriptor {
            chan: id,
            len,
            hw,
            callback: None,
            cyclic: false,
        })
    }

    /// The checks every slave prep shares: the channel is held, the device has `cap`,
    /// a slave configuration was pushed, the direction is a slave one.
    fn slave_prep(
        &mut self,
        id: ChanId,
        cap: DmaCaps,
        dir: Direction,
    ) -> Result<(&mut P, SlaveConfig), DmaError> {
        let (p, c) = self.held(id)?;
        if !p.caps().contains(cap) {
            return Err(DmaError::NotCapable(cap));
        }
        let cfg = c.config.ok_or(DmaError::NotConfigured(id))?;
        if dir == Direction::MemToMem {
            return Err(DmaError::BadDirection(dir));
        }
        Ok((p, cfg))
    }

    /// Prepares a slave scatter-gather transfer using the channel's slave configuration.
    pub fn prep_slave_sg(
        &mut self,
        id: ChanId,
        sg: &[(DmaAddr, usize)],
        dir: Direction,
    ) -> Result<Descriptor<P::Desc>, DmaError> {
        let (p, cfg) = self.slave_prep(id, DmaCaps::SLAVE, dir)?;
        if sg.is_empty() || sg.iter().any(|&(_, l)| l == 0) {
            return Err(DmaError::BadLength(0));
        }
        let hw = p.prep_slave_sg(id.chan, sg, dir, &cfg)?;
        let len = p.desc_len(&hw);
        Ok(Descriptor {
            chan: id,
            len,
            hw,
            callback: None,
            cyclic: false,
        })
    }

    /// Prepares a cyclic transfer (Linux `dmaengine_prep_dma_cyclic`): `buf_len` bytes
    /// at `buf`, split into periods of `period_len` bytes, with the channel's slave
    /// configuration. The callback runs after every period; the descriptor never
    /// completes and stays active until [`DmaEngine::terminate_all`].
    pub fn prep_dma_cyclic(
        &mut self,
        id: ChanId,
        buf: DmaAddr,
        buf_len: usize,
        period_len: usize,
        dir: Direction,
    ) -> Result<Descriptor<P::Desc>, DmaError> {
        let (p, cfg) = self.slave_prep(id, DmaCaps::CYCLIC, dir)?;
        if period_len == 0 || buf_len == 0 || !buf_len.is_multiple_of(period_len) {
            return Err(DmaError::BadLength(period_len));
        }
        let hw = p.prep_cyclic(id.chan, buf, buf_len, period_len, dir, &cfg)?;
        let len = p.desc_len(&hw);
        Ok(Descriptor {
            chan: id,
            len,
            hw,
            callback: None,
            cyclic: true,
        })
    }

    /// Drops a prepared descriptor without submitting it, freeing its resources.
    pub fn discard(&mut self, desc: Descriptor<P::Desc>) {
        if let Some(d) = self.devices.get_mut(desc.chan.dev) {
            d.provider.free_desc(desc.hw);
        }
    }

    /// Submits a descriptor: assigns the next cookie and queues it. Nothing runs until
    /// [`DmaEngine::issue_pending`].
    pub fn submit(&mut self, desc: Descriptor<P::Desc>) -> Result<Cookie, DmaError> {
        let id = desc.chan;
        let (p, c) = self.dev_chan(id)?;
        if !c.in_use {
            p.free_desc(desc.hw);
            return Err(DmaError::ChannelNotHeld(id));
        }
        let mut next = c.cookie.wrapping_add(1);
        if next < DMA_MIN_COOKIE {
            next = DMA_MIN_COOKIE;
        }
        c.cookie = next;
        c.submitted.push_back(Queued {
            cookie: Cookie(next),
            len: desc.len,
            hw: desc.hw,
            callback: desc.callback,
            cyclic: desc.cyclic,
        });
        Ok(Cookie(next))
    }

    /// Moves submitted descriptors to the issued queue and starts the hardware if idle.
    pub fn issue_pending(&mut self, id: ChanId) -> Result<(), DmaError> {
        let (p, c) = self.held(id)?;
        c.issued.extend(c.submitted.drain(..));
        Self::start_next(p, id.chan, c);
        Ok(())
    }

    fn start_next(p: &mut P, chan: usize, c: &mut VChan<P::Desc>) {
        if c.active.is_none() {
            if let Some(q) = c.issued.pop_front() {
                p.start(chan, &q.hw);
                c.active = Some(q);
            }
        }
    }

    /// Status of a cookie, with the residue of a running or queued descriptor.
    pub fn tx_status(&mut self, id: ChanId, cookie: Cookie) -> Result<TxState, DmaError> {
        let (p, c) = self.dev_chan(id)?;
        let last = Cookie(c.completed);
        let used = Cookie(c.cookie);
        if cookie.0 < DMA_MIN_COOKIE {
            return Err(DmaError::BadCookie(cookie));
        }
        let mut st = TxState {
            status: DmaStatus::Complete,
            residue: 0,
            last,
            used,
        };
        if cookie_is_complete(cookie, last, used) {
            if c.errors.contains(&cookie) {
                st.status = DmaStatus::Error;
            }
            return Ok(st);
        }
        st.status = if c.paused {
            DmaStatus::Paused
        } else {
            DmaStatus::InProgress
        };
        if let Some(a) = c.active.as_ref().filter(|a| a.cookie == cookie) {
            st.residue = p.residue(id.chan, &a.hw);
            if a.cyclic && st.residue == 0 {
                // Between periods a ring reads as full, not done.
                st.residue = a.len;
            }
        } else if let Some(q) = c
            .issued
            .iter()
            .chain(c.submitted.iter())
            .find(|q| q.cookie == cookie)
        {
            st.residue = q.len;
        }
        Ok(st)
    }

    /// Aborts the active descriptor and drops every queued one; no callbacks run.
    pub fn terminate_all(&mut self, id: ChanId) -> Result<(), DmaError> {
        let (p, c) = self.held(id)?;
        if c.active.is_some() {
            p.stop(id.chan);
        }
        let drop: Vec<Queued<P::Desc>> = c
            .active
            .take()
            .into_iter()
            .chain(c.issued.drain(..))
            .chain(c.submitted.drain(..))
            .collect();
        for q in drop {
            p.free_desc(q.hw);
        }
        c.paused = false;
        Ok(())
    }

    /// Suspends the channel; the residue stays readable.
    pub fn pause(&mut self, id: ChanId) -> Result<(), DmaError> {
        let (p, c) = self.held(id)?;
        p.pause(id.chan)?;
        c.paused = true;
        Ok(())
    }

    /// Resumes a paused channel.
    pub fn resume(&mut self, id: ChanId) -> Result<(), DmaError> {
        let (p, c) = self.held(id)?;
        p.resume(id.chan)?;
        c.paused = false;
        Ok(())
    }

    /// Interrupt path of device `dev`: completes finished descriptors, runs their
    /// callbacks and starts the next issued ones. Returns false if not ours.
    pub fn handle_irq(&mut self, dev: usize) -> Result<bool, DmaError> {
        let d = self
            .devices
            .get_mut(dev)
            .ok_or(DmaError::NoSuchDevice(dev))?;
        let mut events = Vec::new();
        if !d.provider.handle_irq(&mut events) {
            return Ok(false);
        }
        for ev in events {
            let (chan, res) = match ev {
                ChanEvent::Done(ch) => (ch, TxResult::NoError),
                ChanEvent::Error(ch) => (ch, TxResult::Error),
                ChanEvent::Period(ch) => {
                    // A period of a cyclic transfer: callback, and the descriptor
                    // stays active.
                    match d.chans.get_mut(ch).and_then(|c| c.active.as_mut()) {
                        Some(q) if q.cyclic => {
                            let cookie = q.cookie;
                            if let Some(cb) = q.callback.as_mut() {
                                cb(cookie, TxResult::NoError);
                            }
                        }
                        _ => log::warn!(
                            "dmaengine: dma{dev}chan{ch}: period event without a cyclic transfer"
                        ),
                    }
                    continue;
                }
            };
            let Some(c) = d.chans.get_mut(chan) else {
                log::warn!("dmaengine: dma{dev}: event for unknown channel {chan}");
                continue;
            };
            let Some(mut q) = c.active.take() else {
                log::warn!("dmaengine: dma{dev}chan{chan}: event without active descriptor");
                continue;
            };
            c.completed = q.cookie.0;
            if res == TxResult::NoError {
                c.completed_count += 1;
                c.bytes += q.len as u64;
            }
            if res == TxResult::Error {
                if c.errors.len() == ERROR_HISTORY {
                    c.errors.pop_front();
                }
                c.errors.push_back(q.cookie);
            }
            if let Some(cb) = q.callback.as_mut() {
                cb(q.cookie, res);
            }
            d.provider.free_desc(q.hw);
            Self::start_next(&mut d.provider, chan, c);
            if c.active.is_none() && res == TxResult::NoError {
                d.provider.stop(chan);
            }
        }
        Ok(true)
    }
}

pub mod erased;
pub use erased::{AnyDesc, Boxed, DynProvider};

#[cfg(test)]
mod tests;
