//! Interrupt descriptor table and the common interrupt entry path.
//!
//! Every one of the 256 vectors gets a tiny assembly stub (generated with
//! `.rept` below) that pushes a uniform frame — a dummy error code where the CPU
//! pushes none, then the vector number — and jumps to `isr_common`, which saves
//! every general-purpose register and calls [`dispatch`] with a pointer to the
//! whole frame. So an exception report can show all registers, and device
//! interrupts (later: APIC timer, MSI) share the same path.
//!
//! CPU exceptions (vectors 0–31) are fatal: the handler the console layer sets
//! (`set_exception_handler`) prints the report and ends QEMU with a failure code (Intel SDM Vol. 3A §6.15 lists which
//! vectors push an error code).

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;
use x86_64::instructions::tables::{lidt, DescriptorTablePointer};
use x86_64::registers::control::Cr2;
use x86_64::VirtAddr;

use super::gdt;

/// The register state saved by `isr_common`, lowest address first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Vectors whose exceptions push an error code (SDM Vol. 3A, Table 6-1):
// #DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
// The stub for every other vector pushes a 0 so the frame layout is uniform.
// Stubs are 16-byte aligned so stub N sits at isr_stubs + 16*N.
core::arch::global_asm!(
    r#"
    .section .text.isr, "ax"
    .global busmaster_isr_stubs
    .p2align 4
busmaster_isr_stubs:
    .set vec, 0
    .rept 256
    .p2align 4
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp busmaster_isr_common
    .set vec, vec + 1
    .endr

busmaster_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call busmaster_isr_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    static busmaster_isr_stubs: u8;
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Handler for a non-exception vector; runs with interrupts disabled.
pub type IrqHandler = fn(&mut TrapFrame);

// A const only to initialise the arrays below (each element gets its own atomic).
#[allow(clippy::declare_interior_mutable_const)]
const NO_HANDLER: AtomicUsize = AtomicUsize::new(0);
static IRQ_HANDLERS: [AtomicUsize; 256] = [NO_HANDLER; 256];
static IRQ_COUNTS: [AtomicUsize; 256] = [NO_HANDLER; 256];

/// Error from [`register_handler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqError {
    ReservedVector(u8),
    Busy(u8),
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::ReservedVector(v) => write!(f, "vector {v} is a CPU exception vector"),
            IrqError::Busy(v) => write!(f, "vector {v} already has a handler"),
        }
    }
}

/// Installs `handler` for a device vector (32..=255).
#[allow(dead_code)] // used by the interrupt controllers of later layers
pub fn register_handler(vector: u8, handler: IrqHandler) -> Result<(), IrqError> {
    if vector < 32 {
        return Err(IrqError::ReservedVector(vector));
    }
    IRQ_HANDLERS[vector as usize]
        .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| IrqError::Busy(vector))
}

/// How many times each vector fired (for the `irq` view).
#[allow(dead_code)]
pub fn irq_count(vector: u8) -> usize {
    IRQ_COUNTS[vector as usize].load(Ordering::Relaxed)
}

pub fn init() {
    let idt = IDT.call_once(|| {
        // Only the address of the assembly symbol is taken, never its contents.
        let stubs = core::ptr::addr_of!(busmaster_isr_stubs) as u64;
        let selector = gdt::kernel_code_selector().0;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let addr = stubs + 16 * vector as u64;
            let ist = match vector {
                8 => gdt::IST_DOUBLE_FAULT + 1,
                2 => gdt::IST_NMI + 1,
                18 => gdt::IST_MACHINE_CHECK + 1,
                _ => 0,
            };
            *gate = Gate {
                offset_low: addr as u16,
                selector,
                ist: ist as u8,
                // Present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
                type_attr: 0x8E,
                offset_mid: (addr >> 16) as u16,
                offset_high: (addr >> 32) as u32,
                reserved: 0,
            };
        }
        Idt(gates)
    });
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT lives in a static for the kernel's whole life and every
    // gate points at a stub of `busmaster_isr_stubs` above.
    unsafe { lidt(&ptr) };
}

/// Loads an empty IDT: the next exception escalates to a triple fault, which
/// resets the machine (reboot's last resort, and the harness self-test that
/// proves the runner catches a reset).
pub fn load_empty_idt() {
    let ptr = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately invalid, see above; the caller raises an exception
    // right after and never expects to return.
    unsafe { lidt(&ptr) };
}

const EXCEPTION_NAMES: [(&str, &str); 32] = [
    ("#DE", "divide error"),
    ("#DB", "debug"),
    ("NMI", "non-maskable interrupt"),
    ("#BP", "breakpoint"),
    ("#OF", "overflow"),
    ("#BR", "bound range exceeded"),
    ("#UD", "invalid opcode"),
    ("#NM", "device not available"),
    ("#DF", "double fault"),
    ("#CSO", "coprocessor segment overrun"),
    ("#TS", "invalid TSS"),
    ("#NP", "segment not present"),
    ("#SS", "stack-segment fault"),
    ("#GP", "general protection"),
    ("#PF", "page fault"),
    ("#15", "reserved"),
    ("#MF", "x87 floating-point error"),
    ("#AC", "alignment check"),
    ("#MC", "machine check"),
    ("#XM", "SIMD floating-point"),
    ("#VE", "virtualization"),
    ("#CP", "control protection"),
    ("#22", "reserved"),
    ("#23", "reserved"),
    ("#24", "reserved"),
    ("#25", "reserved"),
    ("#26", "reserved"),
    ("#27", "reserved"),
    ("#HV", "hypervisor injection"),
    ("#VC", "VMM communication"),
    ("#SX", "security"),
    ("#31", "reserved"),
];

/// Decodes a page-fault error code into words (SDM Vol. 3A §4.7).
fn page_fault_cause(code: u64) -> (&'static str, &'static str, &'static str) {
    let present = if code & 1 != 0 {
        "protection violation"
    } else {
        "page not present"
    };
    let access = if code & 0x10 != 0 {
        "instruction fetch"
    } else if code & 2 != 0 {
        "write"
    } else {
        "read"
    };
    let mode = if code & 4 != 0 { "user" } else { "kernel" };
    (present, access, mode)
}

/// Writes the full report of a CPU exception.
pub fn write_exception_report(out: &mut dyn Write, f: &TrapFrame) -> core::fmt::Result {
    let (mnemonic, name) = EXCEPTION_NAMES
        .get(f.vector as usize)
        .copied()
        .unwrap_or(("#??", "unknown"));
    writeln!(out)?;
    writeln!(
        out,
        "!!! CPU EXCEPTION {mnemonic} ({name}), vector {} error code {:#x}",
        f.vector, f.error_code
    )?;
    if f.vector == 14 {
        let (present, access, mode) = page_fault_cause(f.error_code);
        writeln!(
            out,
            "!!! page fault at CR2={:#018x}: {present}, {access}, {mode} mode",
            Cr2::read_raw()
        )?;
    }
    writeln!(
        out,
        "RIP={:#018x} CS={:#06x} RFLAGS={:#010x} RSP={:#018x} SS={:#06x} CR2={:#018x}",
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        Cr2::read_raw()
    )?;
    writeln!(
        out,
        "RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    )?;
    writeln!(
        out,
        "RSI={:#018x} RDI={:#018x} RBP={:#018x} R8 ={:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    )?;
    writeln!(
        out,
        "R9 ={:#018x} R10={:#018x} R11={:#018x} R12={:#018x}",
        f.r9, f.r10, f.r11, f.r12
    )?;
    writeln!(
        out,
        "R13={:#018x} R14={:#018x} R15={:#018x}",
        f.r13, f.r14, f.r15
    )
}

/// What a CPU exception ends in (the console layer's fatal report); until one
/// is set, an exception halts.
static EXCEPTION_HANDLER: Once<fn(&TrapFrame) -> !> = Once::new();

/// Sets the function CPU exceptions (vectors 0–31) call; only the first call
/// has an effect.
pub fn set_exception_handler(f: fn(&TrapFrame) -> !) {
    EXCEPTION_HANDLER.call_once(|| f);
}

/// Called by `busmaster_isr_common` with interrupts disabled.
#[no_mangle]
extern "C" fn busmaster_isr_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    if vector < 32 {
        match EXCEPTION_HANDLER.get() {
            Some(h) => h(frame),
            None => crate::arch::halt_forever(),
        }
    }
    IRQ_COUNTS[vector].fetch_add(1, Ordering::Relaxed);
    let handler = IRQ_HANDLERS[vector].load(Ordering::Acquire);
    if handler == 0 {
        log::warn!("unexpected interrupt on vector {vector}");
    } else {
        // SAFETY: non-zero entries are only ever stored by `register_handler`,
        // from a value of type `IrqHandler`.
        let handler: IrqHandler = unsafe { core::mem::transmute::<usize, IrqHandler>(handler) };
        handler(frame);
    }
    // The spurious vector must not be acknowledged (SDM Vol. 3A §11.9).
    if vector != 0xFF {
        crate::arch::apic::eoi();
    }
}
