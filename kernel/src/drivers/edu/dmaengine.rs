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

/// dmaengine device per edu function, once registered, with the driver object its
/// provider drives (kept across unbind: a rebind reuses it, so BAR0 has one owner).
/// (function, dmaengine device index, driver object).
type Registered = (pci::Bdf, usize, Arc<hw::Edu<IoMem>>);

static BY_BDF: IrqSpinLock<Vec<Registered>> = IrqSpinLock::new(Vec::new());

/// The driver object the provider of `bdf` drives, if the function had one.
pub fn driver_object(bdf: pci::Bdf) -> Option<Arc<hw::Edu<IoMem>>> {
    BY_BDF
        .lock()
        .iter()
        .find(|(b, ..)| *b == bdf)
        .map(|(.., e)| e.clone())
}
static READY: spin::Once<()> = spin::Once::new();

/// The edu driver bound (or re-bound) `bdf`: after boot, point its provider at the
/// new DMA device (a rebind keeps its IOMMU domain) and route its interrupts again;
/// a function seen for the first time gets a provider.
pub fn bound(slot: usize, bdf: pci::Bdf, edu: Arc<hw::Edu<IoMem>>, dma: Arc<dma::DmaDevice>) {
    if READY.get().is_none() {
        return; // `init` registers what is bound at boot
    }
    let known = BY_BDF.lock().iter().find(|(b, ..)| *b == bdf).map(|x| x.1);
    match known {
        Some(id) => {
            // The probe reused the object this provider drives (`driver_object`).
            if let Some(info) = crate::dmaengine::dev_info(id) {
                info.set_dma(Some(dma));
            }
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
        provider(edu.clone()),
        alloc::format!("edu on {bdf}, 1 channel, RAM <-> 4 KiB device buffer (28-bit DMA mask)"),
        Some(dma),
    );
    crate::dmaengine::set_max_len(id, MAX_DMA);
    BY_BDF.lock().push((bdf, id, edu));
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
