//! The one lock type (`crate::sync`): the guard keeps interrupts off while held
//! and restores exactly the state it found; hook tables fill and refuse when full.

use x86_64::instructions::interrupts::are_enabled;

use super::{KTest, TestResult};
use crate::kassert;
use crate::sync::{HookTable, HookTableFull, IrqSpinLock};

pub static TESTS: &[KTest] = &[KTest {
    name: "sync::irq_spin_lock_saves_and_restores_the_interrupt_flag",
    run: irq_spin_lock,
    profiles: &[],
    manual: false,
}];

fn irq_spin_lock() -> TestResult {
    static OUTER: IrqSpinLock<u32> = IrqSpinLock::new(0);
    static INNER: IrqSpinLock<()> = IrqSpinLock::new(());
    kassert!(are_enabled(), "interrupts off before the test");
    {
        let mut g = OUTER.lock();
        kassert!(!are_enabled(), "interrupts on while the lock is held");
        *g += 1;
        kassert!(OUTER.try_lock().is_none(), "try_lock took a held lock");
        kassert!(!are_enabled(), "a failed try_lock turned interrupts on");
        drop(INNER.lock());
        kassert!(
            !are_enabled(),
            "dropping an inner guard turned interrupts on under an outer one"
        );
    }
    kassert!(
        are_enabled(),
        "interrupts still off after the guard dropped"
    );
    {
        let g = OUTER.try_lock();
        kassert!(
            g.as_ref().is_some_and(|g| **g == 1),
            "try_lock of a free lock failed or lost the write"
        );
        kassert!(!are_enabled(), "interrupts on under a try_lock guard");
    }
    kassert!(
        are_enabled(),
        "interrupts still off after the try_lock guard"
    );
    x86_64::instructions::interrupts::disable();
    drop(OUTER.lock());
    let stayed_off = !are_enabled();
    x86_64::instructions::interrupts::enable();
    kassert!(
        stayed_off,
        "a guard taken with interrupts off turned them on"
    );

    static HOOKS: HookTable<fn() -> u32, 2> = HookTable::new();
    kassert!(HOOKS.register(|| 1).is_ok(), "first hook refused");
    kassert!(HOOKS.register(|| 2).is_ok(), "second hook refused");
    kassert!(
        HOOKS.register(|| 4) == Err(HookTableFull),
        "a full table took a third hook"
    );
    let mut sum = 0;
    HOOKS.for_each(|h| sum = sum * 10 + h());
    kassert!(sum == 12, "hooks ran as {sum}, not 1 then 2");
    Ok(())
}
