//! The kernel's one lock type: an IRQ-safe spin lock (Linux's
//! `spin_lock_irqsave` / `spin_unlock_irqrestore` as one guard).
//!
//! Taking the lock saves the interrupt flag and disables interrupts before
//! spinning; dropping the guard releases the lock and then restores the saved
//! flag. So an interrupt handler on this CPU can never find the lock held by the
//! code it interrupted (which would spin forever), and nested guards restore
//! the state in the right order. The kernel is single-CPU; on more CPUs the spin
//! still serialises them.
//!
//! Interrupt handlers take these locks too (with interrupts already off the
//! guard changes nothing and restores "off"). Code that runs with a guard held
//! must not wait for an interrupt.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use x86_64::instructions::interrupts;

/// A spin lock whose guard keeps interrupts disabled while held.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

/// Access to the data of an [`IrqSpinLock`]; interrupts stay off until drop.
pub struct IrqSpinLockGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    /// Whether interrupts were enabled when the lock was taken.
    irq_was_enabled: bool,
}

/// Disables interrupts and returns whether they were enabled.
fn irq_save() -> bool {
    let was = interrupts::are_enabled();
    interrupts::disable();
    was
}

fn irq_restore(was_enabled: bool) {
    if was_enabled {
        interrupts::enable();
    }
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        IrqSpinLock {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts (remembering whether they were on), then spins until
    /// the lock is free.
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let irq_was_enabled = irq_save();
        IrqSpinLockGuard {
            guard: ManuallyDrop::new(self.inner.lock()),
            irq_was_enabled,
        }
    }

    /// The lock if it is free now; `None` (interrupt state unchanged) if not.
    /// For interrupt handlers that must never spin.
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let irq_was_enabled = irq_save();
        match self.inner.try_lock() {
            Some(g) => Some(IrqSpinLockGuard {
                guard: ManuallyDrop::new(g),
                irq_was_enabled,
            }),
            None => {
                irq_restore(irq_was_enabled);
                None
            }
        }
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// Only for the fatal path: the holder must never touch the data again
    /// (it is the code that crashed, and nothing will resume it).
    pub unsafe fn force_unlock(&self) {
        // SAFETY: the caller guarantees the holder is gone for good.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `guard` is dropped exactly once, here, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        // Only after the lock is free may an interrupt (that could take it) run.
        irq_restore(self.irq_was_enabled);
    }
}

/// A fixed-size table of hooks (function pointers) that a lower layer calls and
/// higher layers fill in: no allocation, safe to read in interrupt context.
pub struct HookTable<F: Copy, const N: usize> {
    slots: IrqSpinLock<[Option<F>; N]>,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookTableFull;

impl core::fmt::Display for HookTableFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("hook table full")
    }
}

impl<F: Copy, const N: usize> HookTable<F, N> {
    pub const fn new() -> Self {
        HookTable {
            slots: IrqSpinLock::new([None; N]),
        }
    }

    /// Adds `hook`; an error when all `N` slots are taken.
    pub fn register(&self, hook: F) -> Result<(), HookTableFull> {
        let mut s = self.slots.lock();
        let free = s.iter_mut().find(|h| h.is_none()).ok_or(HookTableFull)?;
        *free = Some(hook);
        Ok(())
    }

    /// A copy of the registered hooks (taken under the lock, called without it,
    /// so a hook may itself take other locks).
    pub fn snapshot(&self) -> [Option<F>; N] {
        *self.slots.lock()
    }

    /// As `snapshot`, but `None` instead of spinning if the table is locked
    /// (for the fatal path).
    pub fn try_snapshot(&self) -> Option<[Option<F>; N]> {
        self.slots.try_lock().map(|s| *s)
    }

    /// Calls `f` with each registered hook in registration order.
    pub fn for_each(&self, mut f: impl FnMut(F)) {
        for h in self.snapshot().into_iter().flatten() {
            f(h);
        }
    }
}

impl<F: Copy, const N: usize> Default for HookTable<F, N> {
    fn default() -> Self {
        Self::new()
    }
}
