use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::property::*;

fn s(x: &str) -> Value {
    Value::String(x.into())
}

fn pkg(v: Vec<Value>) -> Value {
    Value::Package(v)
}

fn uuid() -> Value {
    Value::Buffer(DEVICE_PROPERTIES_UUID.to_vec())
}

/// `Name (_DSD, Package () { ToUUID ("daffd814-..."), Package () { props } })`.
fn dsd(props: Vec<Value>) -> Value {
    pkg(vec![uuid(), pkg(props)])
}

fn prop(name: &str, v: Value) -> Value {
    pkg(vec![s(name), v])
}

#[test]
fn uuid_bytes_are_to_uuid_of_the_device_properties_guid() {
    // ToUUID: the first three fields little-endian, the rest byte by byte.
    let text = "daffd814-6eba-4d8c-8a91-bc9bbf4aa301";
    let hex: Vec<u8> = text
        .split('-')
        .map(|f| {
            (0..f.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>()
        })
        .enumerate()
        .flat_map(|(i, mut f)| {
            if i < 3 {
                f.reverse();
            }
            f
        })
        .collect();
    assert_eq!(hex, DEVICE_PROPERTIES_UUID);
}

#[test]
fn external_facing_port_one_and_other_nonzero_values_count() {
    let d = dsd(vec![prop("ExternalFacingPort", Value::Integer(1))]);
    assert_eq!(external_facing_port(&d), Ok(true));
    let d = dsd(vec![
        prop("HotPlugSupportInD3", Value::Integer(1)),
        prop("ExternalFacingPort", Value::Integer(0xff)),
    ]);
    assert_eq!(external_facing_port(&d), Ok(true));
}

#[test]
fn zero_absent_or_another_uuid_is_not_external_facing() {
    let zero = dsd(vec![prop("ExternalFacingPort", Value::Integer(0))]);
    assert_eq!(external_facing_port(&zero), Ok(false));
    let other = dsd(vec![prop("HotPlugSupportInD3", Value::Integer(1))]);
    assert_eq!(external_facing_port(&other), Ok(false));
    // The property under a UUID that is not the device-properties one.
    let mut wrong = DEVICE_PROPERTIES_UUID;
    wrong[0] ^= 1;
    let d = pkg(vec![
        Value::Buffer(wrong.to_vec()),
        pkg(vec![prop("ExternalFacingPort", Value::Integer(1))]),
    ]);
    assert_eq!(external_facing_port(&d), Ok(false));
    // Names are case-sensitive (Linux compares with strcmp).
    let d = dsd(vec![prop("externalfacingport", Value::Integer(1))]);
    assert_eq!(external_facing_port(&d), Ok(false));
    assert_eq!(external_facing_port(&pkg(vec![])), Ok(false));
}

#[test]
fn a_second_uuid_pair_is_read_too() {
    let d = pkg(vec![
        Value::Buffer(vec![0; 16]),
        pkg(vec![]),
        uuid(),
        pkg(vec![prop("ExternalFacingPort", Value::Integer(1))]),
    ]);
    assert_eq!(external_facing_port(&d), Ok(true));
}

#[test]
fn malformed_dsd_contents_are_refused_with_a_reason() {
    assert_eq!(
        external_facing_port(&Value::Integer(1)),
        Err(DsdError::NotPackage("an integer"))
    );
    assert_eq!(
        external_facing_port(&pkg(vec![uuid()])),
        Err(DsdError::OddCount(1))
    );
    // A 15-byte UUID, or the UUID followed by a string.
    let short = pkg(vec![Value::Buffer(vec![0; 15]), pkg(vec![])]);
    assert_eq!(
        external_facing_port(&short),
        Err(DsdError::BadPair {
            index: 0,
            found: "a buffer"
        })
    );
    let not_pkg = pkg(vec![uuid(), s("ExternalFacingPort")]);
    assert_eq!(
        external_facing_port(&not_pkg),
        Err(DsdError::BadPair {
            index: 0,
            found: "a string"
        })
    );
    // Property entries: not a package, one element, a non-string name.
    for bad in [
        Value::Integer(1),
        pkg(vec![s("ExternalFacingPort")]),
        pkg(vec![Value::Integer(1), Value::Integer(1)]),
        pkg(vec![
            s("ExternalFacingPort"),
            Value::Integer(1),
            Value::Integer(1),
        ]),
    ] {
        let d = dsd(vec![prop("Other", Value::Integer(0)), bad]);
        assert_eq!(
            external_facing_port(&d),
            Err(DsdError::BadProperty { index: 1 })
        );
    }
    // The value: a string, a package, too big for the u8 Linux reads.
    let d = dsd(vec![prop("ExternalFacingPort", s("yes"))]);
    let e = external_facing_port(&d).unwrap_err();
    assert_eq!(
        e,
        DsdError::WrongType {
            name: "ExternalFacingPort".into(),
            found: "a string"
        }
    );
    assert_eq!(
        e.to_string(),
        "property ExternalFacingPort is a string, not an integer"
    );
    let d = dsd(vec![prop(
        "ExternalFacingPort",
        pkg(vec![Value::Integer(1)]),
    )]);
    assert!(matches!(
        external_facing_port(&d),
        Err(DsdError::WrongType { .. })
    ));
    let d = dsd(vec![prop("ExternalFacingPort", Value::Integer(0x100))]);
    assert_eq!(
        external_facing_port(&d),
        Err(DsdError::Overflow {
            name: "ExternalFacingPort".into(),
            value: 0x100,
            max: 0xff
        })
    );
}

#[test]
fn a_bad_pair_after_good_properties_keeps_them_as_linux_does() {
    // Linux stops at the bad pair but keeps what it found before it.
    let d = pkg(vec![
        uuid(),
        pkg(vec![prop("ExternalFacingPort", Value::Integer(1))]),
        Value::Integer(7),
        pkg(vec![]),
    ]);
    assert_eq!(external_facing_port(&d), Ok(true));
    // A malformed properties package is skipped, a later good one is used.
    let d = pkg(vec![
        uuid(),
        pkg(vec![Value::Integer(1)]),
        uuid(),
        pkg(vec![prop("ExternalFacingPort", Value::Integer(1))]),
    ]);
    assert_eq!(external_facing_port(&d), Ok(true));
}

#[test]
fn first_of_two_same_named_properties_wins() {
    let d = dsd(vec![
        prop("ExternalFacingPort", Value::Integer(0)),
        prop("ExternalFacingPort", Value::Integer(1)),
    ]);
    assert_eq!(external_facing_port(&d), Ok(false));
    assert_eq!(read_u8(&d, "Nope"), Ok(None));
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Value::Integer),
        "[A-Za-z]{0,20}".prop_map(|x: String| Value::String(x)),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Buffer),
        Just(Value::Buffer(DEVICE_PROPERTIES_UUID.to_vec())),
        Just(Value::String(EXTERNAL_FACING_PORT.into())),
        Just(Value::Other("a method")),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Package)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any value tree gives an answer or an error, never a panic; and an
    /// error always has a message.
    #[test]
    fn never_panics_on_any_value_tree(v in any_value()) {
        match external_facing_port(&v) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
