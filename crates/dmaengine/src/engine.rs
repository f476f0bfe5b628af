//! The registry of devices and channels ([`DmaEngine`], Linux's `dmaengine.c`) and
//! each channel's virt-dma queues (submitted → issued → active → completed, Linux's
//! `virt-dma.c`), completed from the interrupt path.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::{
    cookie_is_complete, Callback, ChanEvent, ChanId, ChanInfo, Cookie, Descriptor, DmaAddr,
    DmaCaps, DmaProvider, DmaStatus, EngineError, SlaveConfig, TransferDirection, TxResult,
    TxState, DMA_MIN_COOKIE,
};

struct Queued<D> {
    cookie: Cookie,
    len: usize,
    hw: D,
    callback: Option<Callback>,
    cyclic: bool,
}

/// Number of recent failed cookies remembered per channel for `tx_status`.
const ERROR_HISTORY: usize = 16;

pub(crate) struct VChan<D> {
    in_use: bool,
    completed_count: u64,
    bytes: u64,
    config: Option<SlaveConfig>,
    pub(crate) cookie: i32,
    pub(crate) completed: i32,
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

pub(crate) struct Device<P: DmaProvider> {
    provider: P,
    pub(crate) chans: Vec<VChan<P::Desc>>,
}

/// The registry of devices and channels, with the virt-dma queues of every channel.
pub struct DmaEngine<P: DmaProvider> {
    pub(crate) devices: Vec<Device<P>>,
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
    pub fn provider(&self, dev: usize) -> Result<&P, EngineError> {
        self.devices
            .get(dev)
            .map(|d| &d.provider)
            .ok_or(EngineError::NoSuchDevice(dev))
    }

    /// Mutable access to the provider of device `dev`.
    pub fn provider_mut(&mut self, dev: usize) -> Result<&mut P, EngineError> {
        self.devices
            .get_mut(dev)
            .map(|d| &mut d.provider)
            .ok_or(EngineError::NoSuchDevice(dev))
    }

    /// Per-channel statistics, the view of Linux's `/sys/class/dma/dmaNchanM/`.
    pub fn chan_info(&self, id: ChanId) -> Result<ChanInfo, EngineError> {
        let d = self
            .devices
            .get(id.dev)
            .ok_or(EngineError::NoSuchDevice(id.dev))?;
        let c = d.chans.get(id.chan).ok_or(EngineError::NoSuchChannel(id))?;
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
    ) -> Result<ChanId, EngineError> {
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
        Err(EngineError::NoChannel)
    }

    fn dev_chan(&mut self, id: ChanId) -> Result<(&mut P, &mut VChan<P::Desc>), EngineError> {
        let d = self
            .devices
            .get_mut(id.dev)
            .ok_or(EngineError::NoSuchDevice(id.dev))?;
        let c = d
            .chans
            .get_mut(id.chan)
            .ok_or(EngineError::NoSuchChannel(id))?;
        Ok((&mut d.provider, c))
    }

    fn held(&mut self, id: ChanId) -> Result<(&mut P, &mut VChan<P::Desc>), EngineError> {
        let (p, c) = self.dev_chan(id)?;
        if !c.in_use {
            return Err(EngineError::ChannelNotHeld(id));
        }
        Ok((p, c))
    }

    /// Releases a channel: terminates everything on it and forgets its configuration.
    pub fn release(&mut self, id: ChanId) -> Result<(), EngineError> {
        self.terminate_all(id)?;
        let (_, c) = self.held(id)?;
        c.in_use = false;
        c.config = None;
        c.paused = false;
        Ok(())
    }

    /// Pushes a slave configuration (Linux `dmaengine_slave_config`).
    pub fn slave_config(&mut self, id: ChanId, cfg: SlaveConfig) -> Result<(), EngineError> {
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
    ) -> Result<Descriptor<P::Desc>, EngineError> {
        let (p, _) = self.held(id)?;
        if !p.caps().contains(DmaCaps::MEMCPY) {
            return Err(EngineError::NotCapable(DmaCaps::MEMCPY));
        }
        if len == 0 {
            return Err(EngineError::BadLength(0));
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
        dir: TransferDirection,
    ) -> Result<(&mut P, SlaveConfig), EngineError> {
        let (p, c) = self.held(id)?;
        if !p.caps().contains(cap) {
            return Err(EngineError::NotCapable(cap));
        }
        let cfg = c.config.ok_or(EngineError::NotConfigured(id))?;
        if dir == TransferDirection::MemToMem {
            return Err(EngineError::BadDirection(dir));
        }
        Ok((p, cfg))
    }

    /// Prepares a slave scatter-gather transfer using the channel's slave configuration.
    pub fn prep_slave_sg(
        &mut self,
        id: ChanId,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
    ) -> Result<Descriptor<P::Desc>, EngineError> {
        let (p, cfg) = self.slave_prep(id, DmaCaps::SLAVE, dir)?;
        if sg.is_empty() || sg.iter().any(|&(_, l)| l == 0) {
            return Err(EngineError::BadLength(0));
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
        dir: TransferDirection,
    ) -> Result<Descriptor<P::Desc>, EngineError> {
        let (p, cfg) = self.slave_prep(id, DmaCaps::CYCLIC, dir)?;
        if period_len == 0 || buf_len == 0 || !buf_len.is_multiple_of(period_len) {
            return Err(EngineError::BadLength(period_len));
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
    pub fn submit(&mut self, desc: Descriptor<P::Desc>) -> Result<Cookie, EngineError> {
        let id = desc.chan;
        let (p, c) = self.dev_chan(id)?;
        if !c.in_use {
            p.free_desc(desc.hw);
            return Err(EngineError::ChannelNotHeld(id));
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
    pub fn issue_pending(&mut self, id: ChanId) -> Result<(), EngineError> {
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
    pub fn tx_status(&mut self, id: ChanId, cookie: Cookie) -> Result<TxState, EngineError> {
        let (p, c) = self.dev_chan(id)?;
        let last = Cookie(c.completed);
        let used = Cookie(c.cookie);
        if cookie.0 < DMA_MIN_COOKIE {
            return Err(EngineError::BadCookie(cookie));
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
    pub fn terminate_all(&mut self, id: ChanId) -> Result<(), EngineError> {
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
    pub fn pause(&mut self, id: ChanId) -> Result<(), EngineError> {
        let (p, c) = self.held(id)?;
        p.pause(id.chan)?;
        c.paused = true;
        Ok(())
    }

    /// Resumes a paused channel.
    pub fn resume(&mut self, id: ChanId) -> Result<(), EngineError> {
        let (p, c) = self.held(id)?;
        p.resume(id.chan)?;
        c.paused = false;
        Ok(())
    }

    /// Interrupt path of device `dev`: completes finished descriptors, runs their
    /// callbacks and starts the next issued ones. Returns false if not ours.
    pub fn handle_irq(&mut self, dev: usize) -> Result<bool, EngineError> {
        let d = self
            .devices
            .get_mut(dev)
            .ok_or(EngineError::NoSuchDevice(dev))?;
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
