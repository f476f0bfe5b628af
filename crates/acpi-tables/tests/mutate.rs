//! Property tests: random byte mutations and truncations of real DMAR tables
//! (and the other corpus tables) never panic, and what comes back is
//! consistent: structures in order and inside the table, errors pointing
//! inside the data.

mod common;

use std::fs;
use std::sync::OnceLock;

use proptest::prelude::*;

use acpi_tables::{any, dmar, fix_checksum};

use common::*;

fn corpus_files(name: &str) -> &'static [Vec<u8>] {
    static DMAR: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static OTHER: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let cell = if name == "dmar.dat" { &DMAR } else { &OTHER };
    cell.get_or_init(|| {
        let mut v = Vec::new();
        for m in machines() {
            for f in files_with_ext(&m, "dat") {
                let fname = f.file_name().unwrap().to_string_lossy().to_string();
                if (name == "dmar.dat") == (fname == "dmar.dat") {
                    v.push(fs::read(&f).unwrap());
                }
            }
        }
        assert!(!v.is_empty());
        v
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set a byte (index taken modulo the length).
    Set(usize, u8),
    /// Set a 16-bit little-endian value, e.g. a structure length.
    Set16(usize, u16),
    /// Cut the data.
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), prop_oneof![Just(0u16), Just(1), Just(4), Just(6), Just(0xffff), any::<u16>()])
            .prop_map(|(i, v)| Mutation::Set16(i, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut t: Vec<u8>, muts: &[Mutation], restamp: bool) -> Vec<u8> {
    for m in muts {
        if t.is_empty() {
            break;
        }
        let n = t.len();
        match *m {
            Mutation::Set(i, b) => t[i % n] = b,
            Mutation::Set16(i, v) => {
                let i = i % n;
                t[i] = v as u8;
                if i + 1 < n {
                    t[i + 1] = (v >> 8) as u8;
                }
            }
            Mutation::Truncate(i) => t.truncate(i % (n + 1)),
        }
    }
    // Restamping length and checksum sends the parser past the header
    // checks into the structures, where the interesting bugs would be.
    if restamp && t.len() >= 36 {
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t);
    }
    t
}

fn check_dmar(t: &[u8]) {
    match dmar::parse(t) {
        Ok(d) => {
            let len = d.header.length as usize;
            assert!(len <= t.len());
            let mut prev = None;
            for s in &d.structures {
                assert!(s.offset() >= 48 && s.offset() < len);
                assert!(prev.is_none_or(|p| p < s.offset()));
                prev = Some(s.offset());
                for sc in s.scopes() {
                    assert!(sc.offset > s.offset() && sc.offset + 6 + 2 * sc.path.len() <= len);
                    let _ = sc.path_display().to_string();
                }
            }
            for w in &d.warnings {
                assert!(w.offset < len);
                let _ = w.to_string();
            }
        }
        Err(e) => {
            assert!(e.offset <= t.len().max(36), "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_dmar_never_panics(
        idx in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..8),
        restamp in any::<bool>(),
    ) {
        let files = corpus_files("dmar.dat");
        let t = apply(files[idx % files.len()].clone(), &muts, restamp);
        check_dmar(&t);
    }

    #[test]
    fn mutated_other_tables_never_panic(
        idx in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..8),
        restamp in any::<bool>(),
    ) {
        let files = corpus_files("other");
        let t = apply(files[idx % files.len()].clone(), &muts, restamp);
        if let Err(e) = any::decode(&t) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn random_bytes_as_dmar(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut t = b"DMAR".to_vec();
        t.extend_from_slice(&[0; 32]);
        t.extend_from_slice(&body);
        let t = apply(t, &[], true);
        check_dmar(&t);
    }
}
