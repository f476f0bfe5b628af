//! Boot-time decisions a real machine needs before any unit is touched: which
//! mode the boot options and the firmware ask for, which DRHDs are the
//! integrated graphics' own or name no device at all, and when translation
//! must be left on (Linux: `intel_iommu_setup`, `platform_optin_force_iommu`,
//! `init_no_remapping_devices`, `quirk_igfx_skip_te_disable`).
//!
//! Pure functions over the DMAR's resolved scopes and the PCI functions found,
//! so the host tests run them against every real DMAR in the corpus.

use crate::regs::Cap;
use crate::scope::UnitScope;
use hal::Bdf;

/// What the kernel does with the remapping units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Per-device translated domains for devices with drivers.
    Translate,
    /// Every device in a pass-through domain (ECAP.PT): bus address = physical.
    PassThrough,
    /// Units left alone for DMA (what firmware left on is turned off); DMA is
    /// untranslated.
    Off,
}

/// The mode for a boot, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The mode to use.
    pub mode: Mode,
    /// The DMAR's DMA_CTRL_PLATFORM_OPT_IN overrode `iommu=off` (or the
    /// kernel's default, off).
    pub forced_by_platform: bool,
    /// The `iommu=` value was not understood (treated as not given).
    pub unknown_option: bool,
}

/// The mode from the `iommu=` boot option and the DMAR's
/// DMA_CTRL_PLATFORM_OPT_IN flag (bit 2 of the DMAR flags: the firmware kept
/// DMA protection on up to the hand-off and asks the OS to keep it).
///
/// `on` translates, `pt` passes through, `off` or nothing (the kernel's
/// default) is off, except that the platform opt-in then forces translation
/// (Linux forces the IOMMU on the same way, unless told `intel_iommu=off`;
/// here only `iommu=force-off` keeps it off, so the usual `iommu=off` escape
/// cannot silently drop the protection the firmware asked for). An unknown
/// value counts as not given.
pub fn decide(iommu: Option<&str>, platform_opt_in: bool) -> Decision {
    let (asked, unknown_option) = match iommu {
        Some("on") => (Some(Mode::Translate), false),
        Some("pt") => (Some(Mode::PassThrough), false),
        Some("force-off") => {
            return Decision {
                mode: Mode::Off,
                forced_by_platform: false,
                unknown_option: false,
            }
        }
        Some("off") | None => (None, false),
        Some(_) => (None, true),
    };
    match asked {
        Some(mode) => Decision {
            mode,
            forced_by_platform: false,
            unknown_option,
        },
        None => Decision {
            mode: if platform_opt_in {
                Mode::Translate
            } else {
                Mode::Off
            },
            forced_by_platform: platform_opt_in,
            unknown_option,
        },
    }
}

/// A DRHD's part in the machine (Linux's `drhd->ignored`, `gfx_dedicated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitRole {
    /// An ordinary unit: brought up and used.
    Normal,
    /// Every device its scopes name that exists is a display controller (the
    /// integrated graphics, 00:02.0, on Intel laptops): the graphics unit.
    Graphics,
    /// Not INCLUDE_PCI_ALL and no device its scopes name exists (graphics
    /// disabled in the firmware, a DRHD for interrupt remapping only): ignored.
    Empty,
}

/// PCI base class of display controllers.
pub const CLASS_DISPLAY: u8 = 0x03;

/// The role of the DRHD `unit`, given `class_of`, the 24-bit class code of
/// each PCI function that exists (`None`: no such function).
pub fn unit_role(unit: &UnitScope, class_of: impl Fn(Bdf) -> Option<u32>) -> UnitRole {
    if unit.include_all {
        return UnitRole::Normal;
    }
    let classes: alloc::vec::Vec<u32> = unit
        .endpoints
        .iter()
        .chain(unit.bridges.iter())
        .filter_map(|&b| class_of(b))
        .collect();
    if classes.is_empty() {
        UnitRole::Empty
    } else if classes.iter().all(|c| (c >> 16) as u8 == CLASS_DISPLAY) {
        UnitRole::Graphics
    } else {
        UnitRole::Normal
    }
}

/// High bytes of the Intel integrated-graphics device IDs whose graphics
/// unit must not have translation turned off (Linux's
/// `quirk_igfx_skip_te_disable`, which added 0xa7 and 0x7d after the first
/// seven): Elkhart Lake 0x45xx, Alder Lake 0x46xx, Rocket Lake 0x4cxx, Jasper
/// Lake 0x4exx, Ice Lake 0x8axx, Lakefield 0x98xx, Tiger Lake 0x9axx, Raptor
/// Lake 0xa7xx, Meteor Lake 0x7dxx.
pub const IGFX_SKIP_TE_DISABLE: [u8; 9] = [0x45, 0x46, 0x4c, 0x4e, 0x8a, 0x98, 0x9a, 0xa7, 0x7d];

/// Whether the PCI function `vendor:device` of class `class` is an integrated
/// graphics device the skip-TE-disable quirk names.
pub fn igfx_skip_te_disable(vendor: u16, device: u16, class: u32) -> bool {
    vendor == 0x8086
        && (class >> 16) as u8 == CLASS_DISPLAY
        && IGFX_SKIP_TE_DISABLE.contains(&((device >> 8) as u8))
}

/// Whether a unit found with translation on must keep it: it is the graphics
/// unit, the machine has a quirked integrated graphics device, and the unit
/// drains reads or writes (CAP.DRD/DWD: Linux applies the quirk only then).
pub fn keep_translation(role: UnitRole, quirked_igfx: bool, cap: &Cap) -> bool {
    role == UnitRole::Graphics && quirked_igfx && (cap.drd || cap.dwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_options_and_platform_opt_in() {
        let d = |o, p| decide(o, p).mode;
        assert_eq!(d(None, false), Mode::Off, "the kernel's default");
        assert_eq!(d(Some("on"), false), Mode::Translate);
        assert_eq!(d(Some("pt"), false), Mode::PassThrough);
        assert_eq!(d(Some("off"), false), Mode::Off);
        // The firmware's opt-in forces translation over off and the default...
        let f = decide(Some("off"), true);
        assert_eq!((f.mode, f.forced_by_platform), (Mode::Translate, true));
        assert_eq!(d(None, true), Mode::Translate);
        // ...but not over an explicit choice of mode, nor over force-off.
        assert_eq!(d(Some("pt"), true), Mode::PassThrough);
        assert!(!decide(Some("on"), true).forced_by_platform);
        let k = decide(Some("force-off"), true);
        assert_eq!((k.mode, k.forced_by_platform), (Mode::Off, false));
        let u = decide(Some("yes"), false);
        assert_eq!((u.mode, u.unknown_option), (Mode::Off, true));
    }

    #[test]
    fn graphics_and_empty_units() {
        let gfx = Bdf::b(0, 2, 0);
        let unit = UnitScope {
            endpoints: alloc::vec![gfx],
            usable: true,
            ..Default::default()
        };
        let display = |b: Bdf| (b == gfx).then_some(0x03_0000);
        assert_eq!(unit_role(&unit, display), UnitRole::Graphics);
        // The same scope naming an edu (QEMU puts one at 00:02.0): ordinary.
        assert_eq!(
            unit_role(&unit, |b| (b == gfx).then_some(0x00_ff00)),
            UnitRole::Normal
        );
        // Graphics switched off in the firmware: nothing there.
        assert_eq!(unit_role(&unit, |_| None), UnitRole::Empty);
        let all = UnitScope {
            include_all: true,
            ..Default::default()
        };
        assert_eq!(unit_role(&all, |_| None), UnitRole::Normal);
    }

    #[test]
    fn skip_te_disable_ids() {
        assert!(
            igfx_skip_te_disable(0x8086, 0x9a49, 0x03_0000),
            "Tiger Lake UHD"
        );
        assert!(igfx_skip_te_disable(0x8086, 0x8a52, 0x03_0000), "Ice Lake");
        assert!(
            igfx_skip_te_disable(0x8086, 0x4626, 0x03_0000),
            "Alder Lake"
        );
        assert!(
            !igfx_skip_te_disable(0x8086, 0x5917, 0x03_0000),
            "Kaby Lake"
        );
        assert!(
            !igfx_skip_te_disable(0x8086, 0x9a09, 0x06_0400),
            "a TGL root port"
        );
        assert!(
            !igfx_skip_te_disable(0x10de, 0x9a49, 0x03_0000),
            "not Intel"
        );
        let mut cap = Cap::decode(0);
        assert!(
            !keep_translation(UnitRole::Graphics, true, &cap),
            "no drain"
        );
        cap.drd = true;
        assert!(keep_translation(UnitRole::Graphics, true, &cap));
        assert!(!keep_translation(UnitRole::Normal, true, &cap));
        assert!(!keep_translation(UnitRole::Graphics, false, &cap));
    }
}
