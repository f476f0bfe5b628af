//! Every real machine's DMAR in `shared/corpus` (beside the repository): the
//! PCI topology its scopes imply is built (each path hop but the last is a
//! bridge, given a fresh secondary bus; each sub-hierarchy bridge gets a
//! device below it), the scopes are resolved through it as the kernel does,
//! and every device must land on the DRHD that names it, every other device
//! of a segment on its INCLUDE_PCI_ALL unit, and every RMRR device on some
//! unit. Bridge kinds are not in a DMAR, so aliases are not checked here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use acpi_tables::dmar::{DeviceScope, Dmar, ScopeType};
use hal::Bdf;
use iommu_vtd::{coverage, Coverage, UnitScope};
use pci::topology::{BridgeKind, BridgeNode, Node};
use pci::Topology;

fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("ACPI_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    assert!(
        dir.join("manifest.tsv").is_file(),
        "ACPI corpus not found at {}; refusing to pass without it",
        dir.display()
    );
    dir
}

/// Builds the topology a DMAR's PCI scopes imply.
struct Implied {
    nodes: BTreeMap<pci::Bdf, Node>,
    next_bus: u16,
}

impl Implied {
    fn new(dmar: &Dmar) -> Self {
        // Fresh buses above every start bus the table uses.
        let top = dmar
            .structures
            .iter()
            .flat_map(|s| s.scopes())
            .map(|s| u16::from(s.start_bus))
            .max()
            .unwrap_or(0);
        Implied {
            nodes: BTreeMap::new(),
            next_bus: top + 1,
        }
    }

    fn node(&mut self, bdf: pci::Bdf, parent: Option<pci::Bdf>) {
        self.nodes.entry(bdf).or_insert(Node {
            bdf,
            parent,
            bridge: None,
            quirk: Default::default(),
        });
    }

    /// Makes `bdf` a bridge (if it is not one yet) and returns its secondary bus.
    fn bridge(&mut self, bdf: pci::Bdf) -> Option<u8> {
        let n = self.nodes.get_mut(&bdf)?;
        if let Some(b) = n.bridge {
            return Some(b.secondary);
        }
        let bus = u8::try_from(self.next_bus).ok()?;
        self.next_bus += 1;
        n.bridge = Some(BridgeNode {
            kind: BridgeKind::PciePort,
            secondary: bus,
            subordinate: bus,
        });
        Some(bus)
    }

    /// Adds the path of a PCI scope; returns the device it names.
    fn add(&mut self, seg: u16, s: &DeviceScope) -> Option<pci::Bdf> {
        let mut bus = s.start_bus;
        let mut parent = None;
        let mut last = None;
        for (i, hop) in s.path.iter().enumerate() {
            let b = pci::Bdf::new(seg, bus, hop.device, hop.function)?;
            self.node(b, parent);
            if i + 1 < s.path.len() {
                bus = self.bridge(b)?;
            }
            parent = Some(b);
            last = Some(b);
        }
        last
    }
}

fn vb(b: pci::Bdf) -> Bdf {
    Bdf::b(b.bus, b.device, b.function)
}

fn path(t: &Topology, b: pci::Bdf) -> Vec<Bdf> {
    std::iter::once(b).chain(t.ancestors(b)).map(vb).collect()
}

fn is_pci(s: &DeviceScope) -> bool {
    matches!(
        s.scope_type,
        ScopeType::PciEndpoint | ScopeType::PciSubHierarchy
    )
}

#[test]
fn every_corpus_dmar_routes_its_devices_to_the_naming_unit() {
    let mut machines: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("dmar.dat").is_file())
        .collect();
    machines.sort();
    assert!(machines.len() > 100, "only {} DMARs", machines.len());
    let (mut devices, mut multi_hop, mut rmrr_devs) = (0usize, 0usize, 0usize);
    let (mut subtrees, mut rmrr_multi_hop) = (0usize, 0usize);
    let mut problems = Vec::new();
    for m in &machines {
        let name = m.file_name().unwrap().to_string_lossy().to_string();
        let dmar = match acpi_tables::dmar::parse(&fs::read(m.join("dmar.dat")).unwrap()) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut implied = Implied::new(&dmar);
        let drhds: Vec<_> = dmar.drhds().collect();
        // Sub-hierarchy bridges get a device below them.
        let mut below = Vec::new();
        for d in &drhds {
            for s in d.scopes.iter().filter(|s| is_pci(s)) {
                let Some(b) = implied.add(d.segment, s) else {
                    problems.push(format!("{name}: scope {} unbuildable", s.path_display()));
                    continue;
                };
                if s.scope_type == ScopeType::PciSubHierarchy {
                    if let Some(sec) = implied.bridge(b) {
                        let child = pci::Bdf::new(d.segment, sec, 0, 0).unwrap();
                        implied.node(child, Some(b));
                        below.push(child);
                    }
                }
            }
        }
        for r in dmar.rmrrs() {
            for s in r.scopes.iter().filter(|s| is_pci(s)) {
                implied.add(r.segment, s);
            }
        }
        let topo = Topology::from_nodes(implied.nodes.values().copied().collect());
        // Resolved as the kernel resolves them (kernel/src/iommu.rs `reach`).
        let units: Vec<UnitScope> = drhds
            .iter()
            .map(|d| {
                let mut u = UnitScope {
                    segment: d.segment,
                    include_all: d.include_pci_all(),
                    usable: true,
                    ..Default::default()
                };
                for s in &d.scopes {
                    let r = s.resolve(|b, dv, f| topo.secondary_bus(d.segment, b, dv, f));
                    let Some((b, dv, f)) = r else { continue };
                    match s.scope_type {
                        ScopeType::PciEndpoint => u.endpoints.push(Bdf::b(b, dv, f)),
                        ScopeType::PciSubHierarchy => u.bridges.push(Bdf::b(b, dv, f)),
                        _ => {}
                    }
                }
                u
            })
            .collect();
        for (i, d) in drhds.iter().enumerate() {
            for s in d.scopes.iter().filter(|s| is_pci(s)) {
                devices += 1;
                if s.path.len() > 1 {
                    multi_hop += 1;
                }
                if s.scope_type == ScopeType::PciSubHierarchy {
                    subtrees += 1;
                }
                let r = s.resolve(|b, dv, f| topo.secondary_bus(d.segment, b, dv, f));
                let Some((b, dv, f)) = r else {
                    problems.push(format!("{name}: {} does not resolve", s.path_display()));
                    continue;
                };
                let dev = pci::Bdf::new(d.segment, b, dv, f).unwrap();
                let got = coverage(&units, d.segment, &path(&topo, dev));
                if got != Coverage::Unit(i) {
                    problems.push(format!(
                        "{name}: {} named by DRHD {i} lands on {got:?}",
                        s.path_display()
                    ));
                }
            }
        }
        for child in below {
            let got = coverage(&units, child.segment, &path(&topo, child));
            let parent = topo.get(child).and_then(|n| n.parent).unwrap();
            let want = units
                .iter()
                .position(|u| u.segment == child.segment && u.bridges.contains(&vb(parent)));
            if got.unit() != want {
                problems.push(format!("{name}: {child} below {parent} lands on {got:?}"));
            }
        }
        // A device no scope names goes to the segment's INCLUDE_PCI_ALL unit.
        for seg in drhds.iter().map(|d| d.segment) {
            let stray = pci::Bdf::new(seg, 0xff, 31, 7).unwrap();
            if implied.nodes.contains_key(&stray) {
                continue;
            }
            let want = drhds
                .iter()
                .position(|d| d.segment == seg && d.include_pci_all());
            let got = coverage(&units, seg, &[vb(stray)]);
            if got.unit() != want {
                problems.push(format!(
                    "{name}: unnamed device lands on {got:?}, want {want:?}"
                ));
            }
        }
        for r in dmar.rmrrs() {
            for s in r.scopes.iter().filter(|s| is_pci(s)) {
                rmrr_devs += 1;
                if s.path.len() > 1 {
                    rmrr_multi_hop += 1;
                }
                let res = s.resolve(|b, dv, f| topo.secondary_bus(r.segment, b, dv, f));
                let Some((b, dv, f)) = res else {
                    problems.push(format!(
                        "{name}: RMRR scope {} does not resolve",
                        s.path_display()
                    ));
                    continue;
                };
                let dev = pci::Bdf::new(r.segment, b, dv, f).unwrap();
                if coverage(&units, r.segment, &path(&topo, dev))
                    .unit()
                    .is_none()
                {
                    problems.push(format!(
                        "{name}: RMRR device {} [{:#x}-{:#x}] is on no unit",
                        s.path_display(),
                        r.base,
                        r.limit
                    ));
                }
            }
        }
    }
    println!(
        "corpus: {} DMARs, {devices} DRHD PCI scopes ({multi_hop} multi-hop, {subtrees} sub-hierarchies), \
         {rmrr_devs} RMRR devices ({rmrr_multi_hop} multi-hop)",
        machines.len()
    );
    for p in &problems {
        println!("  {p}");
    }
    assert!(problems.is_empty(), "{} problem(s)", problems.len());
}

/// Issue #17 item 5, on every real DMAR of the corpus: the DRHD whose only
/// device is the integrated graphics (an endpoint scope 00:02.0, a display
/// controller) is the graphics unit; with it ignored (`iommu.igfx=off`) the
/// graphics device gets no IOMMU while every other named device stays on
/// its unit; and with no graphics device present (switched off in the
/// firmware) that DRHD names nothing and is ignored.
#[test]
fn corpus_graphics_units_are_found_and_can_be_left_off() {
    use iommu_vtd::policy::{unit_role, UnitRole};
    let mut machines: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("dmar.dat").is_file())
        .collect();
    machines.sort();
    let igfx = Bdf::b(0, 2, 0);
    let (mut with_gfx, mut checked_devices) = (0usize, 0usize);
    let mut problems = Vec::new();
    for m in &machines {
        let name = m.file_name().unwrap().to_string_lossy().to_string();
        let Ok(dmar) = acpi_tables::dmar::parse(&fs::read(m.join("dmar.dat")).unwrap()) else {
            continue; // the routing test reports unparsable tables
        };
        let mut implied = Implied::new(&dmar);
        let drhds: Vec<_> = dmar.drhds().collect();
        for d in &drhds {
            for s in d.scopes.iter().filter(|s| is_pci(s)) {
                implied.add(d.segment, s);
            }
        }
        let topo = Topology::from_nodes(implied.nodes.values().copied().collect());
        let mut units: Vec<UnitScope> = drhds
            .iter()
            .map(|d| {
                let mut u = UnitScope {
                    segment: d.segment,
                    include_all: d.include_pci_all(),
                    usable: true,
                    ..Default::default()
                };
                for s in &d.scopes {
                    let r = s.resolve(|b, dv, f| topo.secondary_bus(d.segment, b, dv, f));
                    let Some((b, dv, f)) = r else { continue };
                    match s.scope_type {
                        ScopeType::PciEndpoint => u.endpoints.push(Bdf::b(b, dv, f)),
                        ScopeType::PciSubHierarchy => u.bridges.push(Bdf::b(b, dv, f)),
                        _ => {}
                    }
                }
                u
            })
            .collect();
        // 00:02.0 is a display controller, every other function something else.
        let class_of = |seg: u16| {
            let topo = &topo;
            move |b: Bdf| {
                let pb = pci::Bdf::new(seg, b.bus, b.devfn() >> 3, b.devfn() & 7)?;
                topo.get(pb)?;
                Some(if b == igfx && seg == 0 {
                    0x03_0000
                } else {
                    0x08_8000
                })
            }
        };
        let roles: Vec<UnitRole> = units
            .iter()
            .map(|u| unit_role(u, class_of(u.segment)))
            .collect();
        let named_gfx_only = |u: &UnitScope| {
            !u.include_all && u.segment == 0 && u.endpoints == [igfx] && u.bridges.is_empty()
        };
        for (i, u) in units.iter().enumerate() {
            let want = if named_gfx_only(u) {
                UnitRole::Graphics
            } else if !u.include_all && u.endpoints.is_empty() && u.bridges.is_empty() {
                UnitRole::Empty
            } else {
                UnitRole::Normal
            };
            if roles[i] != want {
                problems.push(format!("{name}: DRHD {i} is {:?}, want {want:?}", roles[i]));
            }
        }
        let Some(g) = roles.iter().position(|r| *r == UnitRole::Graphics) else {
            continue;
        };
        with_gfx += 1;
        // Graphics switched off in the firmware: 00:02.0 is absent.
        if unit_role(&units[g], |_| None) != UnitRole::Empty {
            problems.push(format!("{name}: graphics unit without graphics not empty"));
        }
        // iommu.igfx=off: the unit is not used.
        units[g].usable = false;
        let got = coverage(&units, 0, &[igfx]);
        if got != Coverage::FailedUnit(g) {
            problems.push(format!("{name}: 00:02.0 with igfx off lands on {got:?}"));
        }
        for (i, d) in drhds.iter().enumerate().filter(|&(i, _)| i != g) {
            for s in d.scopes.iter().filter(|s| is_pci(s)) {
                let Some((b, dv, f)) =
                    s.resolve(|b, dv, f| topo.secondary_bus(d.segment, b, dv, f))
                else {
                    continue;
                };
                let dev = pci::Bdf::new(d.segment, b, dv, f).unwrap();
                checked_devices += 1;
                let got = coverage(&units, d.segment, &path(&topo, dev));
                if got != Coverage::Unit(i) {
                    problems.push(format!("{name}: {dev} with igfx off lands on {got:?}"));
                }
            }
        }
    }
    println!(
        "corpus: {} DMARs, {with_gfx} with a graphics unit; {checked_devices} other devices unmoved by igfx off",
        machines.len()
    );
    for p in &problems {
        println!("  {p}");
    }
    assert!(with_gfx > 50, "only {with_gfx} graphics units found");
    assert!(problems.is_empty(), "{} problem(s)", problems.len());
}
