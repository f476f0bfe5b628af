//! dmaengine in the kernel (Linux: drivers/dma/dmaengine.c): one registry
//! (`crates/dmaengine`) holding every DMA controller driver as a provider, the way
//! Linux keeps `dma_device_list`, and `dmatest`.
//!
//! Providers register themselves (this layer names none of them):
//! * `idma64`: the Intel LPSS iDMA64 driver (`crates/idma64`), bound through the LPSS
//!   PCI functions (`drivers::lpss`); with `idma64=sim` the function is simulated
//!   (`drivers::lpss::sim`).
//! * `edu`: QEMU's edu device as a slave/memcpy engine through its 4 KiB buffer
//!   (`drivers::edu::dmaengine`).
//! * `i8237`: the ISA DMA controller, third-party DMA (`drivers::i8237::dmaengine`).
//!
//! The registry lives behind one IRQ-safe spin lock: completion runs from interrupt
//! handlers ([`irq`]), which take the same lock. Completion callbacks therefore run in
//! interrupt context and must not call back into the registry.

pub mod dmatest;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dmaengine::{ChanId, Cookie, DmaEngine, DmaStatus, DynProvider, EngineError, TxState};
use spin::Once;

use crate::sync::IrqSpinLock;

/// What the `dma` view shows of a registered device, and what clients map against.
pub struct DevInfo {
    /// Description (`idma64 on 0000:00:15.0 (simulated)`).
    pub desc: String,
    /// The device DMA mappings are made for (Linux `chan->device->dev`): for iDMA64 the
    /// parent LPSS function, for edu the edu function; none for the 8237. Replaced when
    /// the PCI function is rebound (its IOMMU domain changes then).
    dma: IrqSpinLock<Option<Arc<dma::DmaDevice>>>,
    /// Interrupts that reached this provider.
    pub irqs: AtomicU64,
    /// No interrupt line: [`wait`] polls the provider instead.
    pub polled: AtomicBool,
    /// The most one transfer may move (0: no limit beyond the provider's own), for
    /// clients that size their own transfers (dmatest). Set by the provider.
    pub max_len: AtomicUsize,
    /// Arms a deliberate one-byte corruption in the next copy: only an engine
    /// that is a model can be told to misbehave (dmatest `--corrupt`).
    pub fault_injection: Once<fn() -> bool>,
}

struct Registry {
    engine: DmaEngine<DynProvider>,
    devs: Vec<Arc<DevInfo>>,
    /// Client name per channel (the `dma` view's "in use by").
    clients: Vec<(ChanId, &'static str)>,
}

static REG: IrqSpinLock<Option<Registry>> = IrqSpinLock::new(None);

/// The registry, created on first use (the caller holds `REG`).
fn registry(g: &mut Option<Registry>) -> &mut Registry {
    g.get_or_insert_with(|| Registry {
        engine: DmaEngine::new(),
        devs: Vec::new(),
        clients: Vec::new(),
    })
}

/// Runs `f` on the engine under the registry lock (the interrupt path takes it too).
pub fn with<R>(f: impl FnOnce(&mut DmaEngine<DynProvider>) -> R) -> R {
    f(&mut registry(&mut REG.lock()).engine)
}

impl DevInfo {
    /// The device to map buffers for.
    pub fn dma(&self) -> Option<Arc<dma::DmaDevice>> {
        self.dma.lock().clone()
    }

    /// Replaces it (the PCI function was rebound and has a new DMA device).
    pub fn set_dma(&self, dev: Option<Arc<dma::DmaDevice>>) {
        *self.dma.lock() = dev;
    }
}

/// Registers a provider; returns its device id (the N of `dmaNchanM`).
pub fn register(provider: DynProvider, desc: String, dma: Option<Arc<dma::DmaDevice>>) -> usize {
    let mut g = REG.lock();
    let r = registry(&mut g);
    let id = r.engine.register(provider);
    log::info!("dmaengine: dma{id}: {desc}");
    r.devs.push(Arc::new(DevInfo {
        desc,
        dma: IrqSpinLock::new(dma),
        irqs: AtomicU64::new(0),
        polled: AtomicBool::new(false),
        max_len: AtomicUsize::new(0),
        fault_injection: Once::new(),
    }));
    id
}

/// The registry's record of device `dev`.
pub fn dev_info(dev: usize) -> Option<Arc<DevInfo>> {
    REG.lock().as_ref().and_then(|r| r.devs.get(dev).cloned())
}

/// Sets the largest transfer clients should ask of device `dev`.
pub fn set_max_len(dev: usize, len: usize) {
    if let Some(d) = dev_info(dev) {
        d.max_len.store(len, Ordering::Release);
    }
}

/// Gives device `dev` a fault-injection switch (a model engine only).
pub fn set_fault_injection(dev: usize, arm: fn() -> bool) {
    if let Some(d) = dev_info(dev) {
        d.fault_injection.call_once(|| arm);
    }
}

/// Marks device `dev` as having no interrupt: waiters poll it.
pub fn set_polled(dev: usize) {
    if let Some(d) = dev_info(dev) {
        d.polled.store(true, Ordering::Release);
        log::info!("dmaengine: dma{dev}: no interrupt, completions are polled");
    }
}

/// Interrupt entry for device `dev`: the provider acknowledges its hardware, finished
/// descriptors complete and their callbacks run (here, in interrupt context).
pub fn irq(dev: usize) -> bool {
    // Every holder of the lock has interrupts off, so on this one CPU it is free
    // here when called from an interrupt handler.
    let mut g = REG.lock();
    let Some(r) = g.as_mut() else {
        return false;
    };
    if let Some(d) = r.devs.get(dev) {
        d.irqs.fetch_add(1, Ordering::Relaxed);
    }
    r.engine.handle_irq(dev).unwrap_or(false)
}

/// Requests a channel for `client` (Linux `dma_request_channel` with a filter). The
/// filter runs under the registry's lock: it must not call back into this module.
pub fn request(
    client: &'static str,
    mask: dmaengine::DmaCaps,
    filter: impl FnMut(ChanId) -> bool,
) -> Result<ChanId, EngineError> {
    let mut g = REG.lock();
    let r = g.as_mut().ok_or(EngineError::NoChannel)?;
    let c = r.engine.request_channel(mask, filter)?;
    r.clients.push((c, client));
    Ok(c)
}

/// Releases a channel (terminates what runs on it).
pub fn release(c: ChanId) -> Result<(), EngineError> {
    let mut g = REG.lock();
    let r = g.as_mut().ok_or(EngineError::NoSuchDevice(c.dev))?;
    r.clients.retain(|(id, _)| *id != c);
    r.engine.release(c)
}

/// Client holding channel `c`, if any.
pub fn client_of(c: ChanId) -> Option<&'static str> {
    REG.lock()
        .as_ref()
        .and_then(|r| r.clients.iter().find(|(id, _)| *id == c).map(|x| x.1))
}

/// Waits (sleeping between timer ticks) until `cookie` on `c` is no longer in
/// progress, or `timeout_ms` passes; returns the final state.
pub fn wait(c: ChanId, cookie: Cookie, timeout_ms: u64) -> Result<TxState, EngineError> {
    let until =
        crate::arch::apic::ticks() + timeout_ms.div_ceil(1000 / crate::arch::apic::TICK_HZ) + 1;
    loop {
        let st = with(|e| e.tx_status(c, cookie))?;
        if !matches!(st.status, DmaStatus::InProgress | DmaStatus::Paused) {
            return Ok(st);
        }
        if crate::arch::apic::ticks() > until {
            return Err(EngineError::Timeout);
        }
        if dev_info(c.dev).is_some_and(|d| d.polled.load(Ordering::Acquire)) {
            irq(c.dev);
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}
