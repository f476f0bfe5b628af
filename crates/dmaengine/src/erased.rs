//! Type erasure, so one [`DmaEngine`](crate::DmaEngine) can hold providers of different
//! drivers (iDMA64, edu, the ISA 8237) as Linux's `dma_device_list` does.
//!
//! Wrap a provider in [`Boxed`] and box it as a [`DynProvider`]; its descriptors travel
//! through the framework as [`AnyDesc`] and are downcast back on the way into the
//! driver. A descriptor can only come back to the provider that made it (the framework
//! routes by channel id), so a failed downcast is a framework bug: it is logged and the
//! operation does nothing rather than panicking.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;

use crate::{
    ChanEvent, DmaAddr, DmaCaps, DmaProvider, EngineError, SlaveConfig, TransferDirection,
};

/// A type-erased hardware descriptor.
pub type AnyDesc = Box<dyn Any + Send>;

/// A provider behind a trait object, with erased descriptors.
pub type DynProvider = Box<dyn DmaProvider<Desc = AnyDesc> + Send>;

/// Adapter that erases `P`'s descriptor type.
pub struct Boxed<P>(pub P);

impl<P> Boxed<P>
where
    P: DmaProvider + Send + 'static,
    P::Desc: Send + 'static,
{
    /// `provider` as a [`DynProvider`].
    pub fn new_dyn(provider: P) -> DynProvider {
        Box::new(Boxed(provider))
    }
}

fn down<'a, D: 'static>(name: &str, d: &'a AnyDesc) -> Option<&'a D> {
    let r = d.downcast_ref::<D>();
    if r.is_none() {
        log::error!("dmaengine: {name}: descriptor of another provider; ignored");
    }
    r
}

impl<P> DmaProvider for Boxed<P>
where
    P: DmaProvider,
    P::Desc: Send + 'static,
{
    type Desc = AnyDesc;
    fn name(&self) -> &str {
        self.0.name()
    }
    fn caps(&self) -> DmaCaps {
        self.0.caps()
    }
    fn channel_count(&self) -> usize {
        self.0.channel_count()
    }
    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError> {
        self.0.check_config(cfg)
    }
    fn prep_memcpy(
        &mut self,
        chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<AnyDesc, EngineError> {
        Ok(Box::new(self.0.prep_memcpy(chan, dst, src, len)?))
    }
    fn prep_slave_sg(
        &mut self,
        chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<AnyDesc, EngineError> {
        Ok(Box::new(self.0.prep_slave_sg(chan, sg, dir, cfg)?))
    }
    fn prep_cyclic(
        &mut self,
        chan: usize,
        buf: DmaAddr,
        buf_len: usize,
        period_len: usize,
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<AnyDesc, EngineError> {
        Ok(Box::new(
            self.0
                .prep_cyclic(chan, buf, buf_len, period_len, dir, cfg)?,
        ))
    }
    fn desc_len(&self, desc: &AnyDesc) -> usize {
        down::<P::Desc>(self.0.name(), desc).map_or(0, |d| self.0.desc_len(d))
    }
    fn start(&mut self, chan: usize, desc: &AnyDesc) {
        if let Some(d) = desc.downcast_ref::<P::Desc>() {
            self.0.start(chan, d);
        } else {
            log::error!(
                "dmaengine: {}: descriptor of another provider",
                self.0.name()
            );
        }
    }
    fn stop(&mut self, chan: usize) {
        self.0.stop(chan)
    }
    fn residue(&self, chan: usize, desc: &AnyDesc) -> usize {
        down::<P::Desc>(self.0.name(), desc).map_or(0, |d| self.0.residue(chan, d))
    }
    fn pause(&mut self, chan: usize) -> Result<(), EngineError> {
        self.0.pause(chan)
    }
    fn resume(&mut self, chan: usize) -> Result<(), EngineError> {
        self.0.resume(chan)
    }
    fn free_desc(&mut self, desc: AnyDesc) {
        match desc.downcast::<P::Desc>() {
            Ok(d) => self.0.free_desc(*d),
            Err(_) => log::error!("dmaengine: {}: freeing a foreign descriptor", self.0.name()),
        }
    }
    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool {
        self.0.handle_irq(events)
    }
}

impl<T: DmaProvider + ?Sized> DmaProvider for Box<T> {
    type Desc = T::Desc;
    fn name(&self) -> &str {
        (**self).name()
    }
    fn caps(&self) -> DmaCaps {
        (**self).caps()
    }
    fn channel_count(&self) -> usize {
        (**self).channel_count()
    }
    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError> {
        (**self).check_config(cfg)
    }
    fn prep_memcpy(
        &mut self,
        chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<T::Desc, EngineError> {
        (**self).prep_memcpy(chan, dst, src, len)
    }
    fn prep_slave_sg(
        &mut self,
        chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<T::Desc, EngineError> {
        (**self).prep_slave_sg(chan, sg, dir, cfg)
    }
    fn prep_cyclic(
        &mut self,
        chan: usize,
        buf: DmaAddr,
        buf_len: usize,
        period_len: usize,
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<T::Desc, EngineError> {
        (**self).prep_cyclic(chan, buf, buf_len, period_len, dir, cfg)
    }
    fn desc_len(&self, desc: &T::Desc) -> usize {
        (**self).desc_len(desc)
    }
    fn start(&mut self, chan: usize, desc: &T::Desc) {
        (**self).start(chan, desc)
    }
    fn stop(&mut self, chan: usize) {
        (**self).stop(chan)
    }
    fn residue(&self, chan: usize, desc: &T::Desc) -> usize {
        (**self).residue(chan, desc)
    }
    fn pause(&mut self, chan: usize) -> Result<(), EngineError> {
        (**self).pause(chan)
    }
    fn resume(&mut self, chan: usize) -> Result<(), EngineError> {
        (**self).resume(chan)
    }
    fn free_desc(&mut self, desc: T::Desc) {
        (**self).free_desc(desc)
    }
    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool {
        (**self).handle_irq(events)
    }
}
