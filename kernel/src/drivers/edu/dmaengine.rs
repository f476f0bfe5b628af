//! edu as a dmaengine provider: registers the `edu` crate's [`EduEngine`] (one
//! channel, RAM <-> the device's 4 KiB buffer) for each bound edu, over the driver's
//! own [`hw::Edu`] object, and routes the driver's DMA-done interrupt to the dmaengine
//! core. No registers are touched here.

use alloc::sync::Arc;
use alloc::vec::Vec;

use ::edu::{self as hw, engine::EduEngine};

use crate::drivers::edu::{self as edudrv, MAX_DMA};
use crate::mm::IoMem;
use crate::sync::IrqSpinLock;

/// dmaengine device per edu function, once registered.
static BY_BDF: IrqSpinLock<Vec<(pci::Bdf, usize)>> = IrqSpinLock::new(Vec::new());
static READY: spin::Once<()> = spin::Once::new();

/// The edu driver bound (or re-bound) `bdf`: after boot, point its provider at the
/// new DMA device (a rebind keeps its IOMMU domain) and route its interrupts again;
/// a function seen for the first time gets a provider.
pub fn bound(slot: usize, bdf: pci::Bdf, edu: Arc<hw::Edu<IoMem>>, dma: Arc<dma::DmaDevice>) {
    if READY.get().is_none() {
        return; // `init` registers what is bound at boot
    }
    let known = BY_BDF.lock().iter().find(|(b, _)| *b == bdf).map(|x| x.1);
    match known {
        Some(id) => {
            if let Some(info) = crate::dmaengine::dev_info(id) {
                info.set_dma(Some(dma));
            }
            // The provider keeps the driver object of the first bind (its Arc keeps
            // that BAR0 mapping alive); the rebind's new object is not used here.
            drop(edu);
            edudrv::set_dma_done_callback(slot, dma_done, id);
        }
        None => add(slot, bdf, edu, dma),
    }
}

fn provider(edu: Arc<hw::Edu<IoMem>>) -> ::dmaengine::DynProvider {
    ::dmaengine::Boxed::new_dyn(EduEngine::new(edu, crate::arch::tsc::delay_us))
}

fn add(slot: usize, bdf: pci::Bdf, edu: Arc<hw::Edu<IoMem>>, dma: Arc<dma::DmaDevice>) {
    let id = crate::dmaengine::register(
        provider(edu),
        alloc::format!("edu on {bdf}, 1 channel, RAM <-> 4 KiB device buffer (28-bit DMA mask)"),
        Some(dma),
    );
    crate::dmaengine::set_max_len(id, MAX_DMA);
    BY_BDF.lock().push((bdf, id));
    edudrv::set_dma_done_callback(slot, dma_done, id);
}

/// The edu driver's DMA-done callback: completion for dmaengine device `dev`.
fn dma_done(dev: usize) {
    crate::dmaengine::irq(dev);
}

/// Registers one provider per bound edu device.
pub fn init() {
    for i in 0.. {
        let Some((slot, bdf, edu, dma)) =
            edudrv::with_edu_at(i, |e| (e.slot, e.bdf, e.dev.clone(), e.dma.clone()))
        else {
            break;
        };
        add(slot, bdf, edu, dma);
    }
    READY.call_once(|| ());
}
