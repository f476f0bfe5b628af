//! Random configuration space: enumeration never panics, terminates with bounded
//! work, and leaves config space as it found it.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::fake::*;
use crate::*;

#[derive(Debug, Clone)]
struct RandomFn {
    bus: u8,
    dev: u8,
    func: u8,
    header: Vec<u32>,
    body: Vec<u32>,
    ext: Vec<u32>,
    wmask_ones: bool,
    kind: u8,
    aliased: bool,
}

fn random_fn() -> impl Strategy<Value = RandomFn> {
    (
        (
            // Biased towards bus 0 and function 0, so random functions are found.
            prop_oneof![1 => Just(0u8), 2 => 0u8..6],
            0u8..4,
            prop_oneof![2 => Just(0u8), 1 => 0u8..8],
        ),
        prop::collection::vec(any::<u32>(), 16),
        prop::collection::vec(any::<u32>(), 48),
        prop::collection::vec(any::<u32>(), 4),
        any::<bool>(),
        0u8..5,
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |((bus, dev, func), header, body, ext, wmask_ones, kind, aliased)| RandomFn {
                bus,
                dev,
                func,
                header,
                body,
                ext,
                wmask_ones,
                kind,
                aliased,
            },
        )
}

fn build(fns: &[RandomFn], conventional: bool) -> FakeConfig {
    let cfg = if conventional {
        FakeConfig::conventional()
    } else {
        FakeConfig::new()
    };
    for f in fns {
        let mut data = f.header.clone();
        data.extend_from_slice(&f.body);
        data.resize(64, 0);
        match f.kind {
            // Bridge with small bus numbers, so bridges point at populated buses.
            0 | 1 => {
                data[0] = (data[0] & 0xFFFF_0000) | 0x8086;
                data[3] = (data[3] & 0xFF00_FFFF) | (u32::from(f.kind == 1) << 23 | 1) << 16;
                let (p, s, u) = (data[6] & 7, (data[6] >> 8) & 7, (data[6] >> 16) & 7);
                data[6] = u << 16 | s << 8 | p;
            }
            // Valid endpoint with a capability list at a random place.
            2 => {
                data[0] = (data[0] & 0xFFFF_0000) | 0x1234;
                data[1] |= 1 << 20;
                data[3] &= 0xFF80_FFFF;
            }
            _ => {}
        }
        // Extended space: random headers at 0x100.. whose pointers stay near.
        let mut all = data;
        all.resize(64 + 64, 0);
        for (i, e) in f.ext.iter().enumerate() {
            all[64 + i * 4] = e & 0x1FFF_FFFF | ((0x100 + (e >> 29) * 4) << 20);
        }
        let wmask: Vec<u32> = if f.wmask_ones {
            Vec::new()
        } else {
            f.header.iter().map(|h| h.rotate_left(7)).collect()
        };
        let bdf = Bdf::b(f.bus, f.dev, f.func);
        cfg.add(bdf, FakeFunction::raw(&all, &wmask));
        if f.aliased {
            cfg.alias_functions(bdf);
        }
    }
    cfg
}

fn snapshot(cfg: &FakeConfig, fns: &[RandomFn]) -> Vec<Option<u32>> {
    let mut v = Vec::new();
    for f in fns {
        let b = Bdf::b(f.bus, f.dev, f.func);
        for off in (0..0x200u16).step_by(4) {
            v.push(cfg.peek32(b, off));
        }
    }
    v
}

fn check(e: &Enumeration, cfg: &FakeConfig) {
    let mut seen = BTreeSet::new();
    for d in &e.devices {
        assert!(seen.insert(d.bdf), "{} listed twice", d.bdf);
        for b in &d.bars {
            assert!(b.size.is_power_of_two(), "{b:?}");
            assert!(b.index < 6);
        }
        assert!(d.capabilities.len() <= crate::caps::MAX_CAPS);
        for c in &d.capabilities {
            assert!(c.offset >= 0x40 && c.offset & 3 == 0);
        }
        for c in &d.ext_capabilities {
            assert!(c.offset >= 0x100 && c.offset < 0x1000 && c.offset & 3 == 0);
        }
        if let Some(p) = d.parent {
            assert!(e.get(p).is_some_and(|p| p.is_bridge()));
        }
    }
    let buses: BTreeSet<u8> = e.buses.iter().copied().collect();
    assert_eq!(buses.len(), e.buses.len(), "bus scanned twice");
    // Bounded work: per bus at most 32 devices x 8 functions x a few hundred reads.
    assert!(cfg.accesses() < 200_000 * e.buses.len().max(1) as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn enumeration_of_random_config_space(fns in prop::collection::vec(random_fn(), 0..24), conventional in any::<bool>()) {
        let cfg = build(&fns, conventional);
        let before = snapshot(&cfg, &fns);
        let e = enumerate(&cfg, &ScanOptions::default());
        check(&e, &cfg);
        // Sizing and probing restored every register it touched.
        prop_assert_eq!(&before, &snapshot(&cfg, &fns));
        // Through the dword-only read-modify-write path: same result, and Status
        // error bits survive the Command writes.
        let e2 = enumerate(&DwordOnly(&cfg), &ScanOptions::default());
        prop_assert_eq!(&e.devices, &e2.devices);
        prop_assert_eq!(&before, &snapshot(&cfg, &fns));
        // Formatting every device never panics.
        for d in &e.devices {
            let _ = alloc::format!("{}", lspci_line(d));
        }
    }
}
