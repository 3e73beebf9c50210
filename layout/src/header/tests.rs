//! Header slot tests: encode/decode round trips, every refused field, the slot choice.

use super::*;

fn sample() -> IndexHeader {
    let layout = NodeLayout::new(384, ElementType::F32, 64).unwrap();
    IndexHeader {
        generation: 1,
        n_slots: 100_000,
        live_count: 100_000,
        dim: 384,
        element: ElementType::F32,
        metric: Metric::L2,
        max_degree: 64,
        layout,
        entry_point: 123,
        pq_m: 48,
        build_l: 100,
        build_alpha: 1.2,
        saturated: true,
        near_error: Some(NearError {
            error: 0.25,
            scale: 3.5,
        }),
    }
}

#[test]
fn round_trip_and_slot_choice() {
    let p = Path::new("index.ssd");
    let h = sample();
    let enc = h.encode();
    assert_eq!(IndexHeader::decode(p, 0, &enc).unwrap(), h);
    let mut two = vec![0u8; 8192];
    two[..4096].copy_from_slice(&enc);
    assert_eq!(IndexHeader::choose(p, &two).unwrap().1, 0);
    let mut h2 = h.clone();
    h2.generation = 2;
    h2.live_count = 99_000;
    two[4096..].copy_from_slice(&h2.encode());
    let (got, slot) = IndexHeader::choose(p, &two).unwrap();
    assert_eq!((got.live_count, slot), (99_000, 1));
    // a torn newer slot falls back to the older one
    two[4096 + 40] ^= 0xff;
    assert_eq!(IndexHeader::choose(p, &two).unwrap().1, 0);
}

#[test]
fn corruption_is_named() {
    let p = Path::new("index.ssd");
    let mut enc = sample().encode();
    enc[30] ^= 1;
    match IndexHeader::decode(p, 0, &enc) {
        Err(LayoutError::ChecksumMismatch { what, .. }) => assert_eq!(what, "header slot 0"),
        other => panic!("{other:?}"),
    }
    let mut two = vec![0u8; 8192];
    two[..4096].copy_from_slice(&enc);
    assert!(matches!(
        IndexHeader::choose(p, &two),
        Err(LayoutError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        IndexHeader::decode(p, 1, &[0u8; 4096]),
        Err(LayoutError::Corrupt { .. })
    ));
}

#[test]
fn inconsistent_fields_are_rejected_even_with_good_crc() {
    let p = Path::new("index.ssd");
    let mut h = sample();
    h.entry_point = 100_000;
    assert!(matches!(
        IndexHeader::decode(p, 0, &h.encode()),
        Err(LayoutError::InvalidField {
            field: "entry_point",
            ..
        })
    ));
    let mut h = sample();
    h.pq_m = 0;
    assert!(matches!(
        IndexHeader::decode(p, 0, &h.encode()),
        Err(LayoutError::InvalidField { field: "pq_m", .. })
    ));
    let mut enc = sample().encode();
    put_u32(&mut enc, OFF_RECORD_BYTES, 1000);
    let crc = crc32fast::hash(&enc[..HEADER_CRC_OFFSET]);
    put_u32(&mut enc, HEADER_CRC_OFFSET, crc);
    assert!(matches!(
        IndexHeader::decode(p, 0, &enc),
        Err(LayoutError::Corrupt { .. })
    ));
    let mut enc = sample().encode();
    put_u16(&mut enc, OFF_MAJOR, 3);
    let crc = crc32fast::hash(&enc[..HEADER_CRC_OFFSET]);
    put_u32(&mut enc, HEADER_CRC_OFFSET, crc);
    assert!(matches!(
        IndexHeader::decode(p, 0, &enc),
        Err(LayoutError::InvalidField {
            field: "version_major",
            ..
        })
    ));
}

/// `sample()` encoded with `patch` applied and the CRC recomputed.
fn crafted(patch: impl Fn(&mut [u8; HEADER_SLOT_BYTES])) -> [u8; HEADER_SLOT_BYTES] {
    let mut enc = sample().encode();
    patch(&mut enc);
    let crc = crc32fast::hash(&enc[..HEADER_CRC_OFFSET]);
    put_u32(&mut enc, HEADER_CRC_OFFSET, crc);
    enc
}

#[test]
fn crc_valid_fields_out_of_range_are_refused_naming_field_and_value() {
    let p = Path::new("/x/index.ssd");
    let err = |enc: &[u8]| IndexHeader::decode(p, 1, enc).unwrap_err().to_string();
    let gen_max = crafted(|b| put_u64(b, OFF_GENERATION, u64::MAX));
    assert_eq!(
        err(&gen_max),
        "/x/index.ssd: field `generation` = 18446744073709551615: header slot 1: \
         generations stay below 2^62 = 4611686018427387904"
    );
    assert_eq!(
        err(&crafted(|b| put_u64(b, OFF_GENERATION, MAX_GENERATION))),
        "/x/index.ssd: field `generation` = 4611686018427387904: header slot 1: \
         generations stay below 2^62 = 4611686018427387904"
    );
    let last = crafted(|b| put_u64(b, OFF_GENERATION, MAX_GENERATION - 1));
    assert_eq!(
        IndexHeader::decode(p, 1, &last).unwrap().generation,
        MAX_GENERATION - 1
    );
    // a crafted slot never wins the choice: slot 0 (generation 1) stays in force
    let mut two = vec![0u8; 2 * HEADER_SLOT_BYTES];
    two[..HEADER_SLOT_BYTES].copy_from_slice(&sample().encode());
    two[HEADER_SLOT_BYTES..].copy_from_slice(&gen_max);
    let (h, slot) = IndexHeader::choose(p, &two).unwrap();
    assert_eq!((h.generation, slot), (1, 0));
    let cases: [(_, &str); 12] = [
        (
            crafted(|b| put_u32(b, OFF_NEAR_SCALE, f32::INFINITY.to_bits())),
            "field `near_scale` = inf: header slot 1: must be a finite number ≥ 0 (with \
             near_error measured)",
        ),
        (
            crafted(|b| put_u32(b, OFF_NEAR_ERROR, (-0.5f32).to_bits())),
            "field `near_error` = -0.5: header slot 1: must be a number in 0..=1e6, or \
             unmeasured (all bits set)",
        ),
        (
            crafted(|b| put_u32(b, OFF_NEAR_ERROR, f32::NAN.to_bits())),
            "field `near_error` = NaN: header slot 1: must be a number in 0..=1e6, or \
             unmeasured (all bits set)",
        ),
        (
            crafted(|b| {
                put_u16(b, OFF_MINOR, 2);
            }),
            "field `near_error` = 1048576000: header slot 1: must be 0 in format minor 2 (it \
             has no such field)",
        ),
        (
            crafted(|b| put_u32(b, OFF_BUILD_FLAGS, 3)),
            "field `build_flags` = 3: header slot 1: only bit 0 (saturated graph) is defined",
        ),
        (
            crafted(|b| put_u16(b, OFF_MINOR, 1)),
            "field `build_flags` = 1: header slot 1: must be 0 in format minor 1 (it has \
             no such field)",
        ),
        (
            crafted(|b| put_u32(b, OFF_BUILD_L, MAX_LIST_SIZE as u32 + 1)),
            "field `build_l` = 100001: header slot 1: must be in 1..=100000",
        ),
        (
            crafted(|b| put_u32(b, OFF_BUILD_L, 0)),
            "field `build_l` = 0: header slot 1: must be in 1..=100000",
        ),
        (
            crafted(|b| put_u32(b, OFF_BUILD_ALPHA, f32::INFINITY.to_bits())),
            "field `build_alpha` = inf: header slot 1: must be a finite number ≥ 1",
        ),
        (
            crafted(|b| put_u16(b, OFF_RESERVED0, 7)),
            "field `reserved (offset 46)` = 7: header slot 1: must be 0",
        ),
        (
            crafted(|b| put_u32(b, OFF_RESERVED1, 1)),
            "field `reserved (offset 100)` = 1: header slot 1: must be 0",
        ),
        (
            crafted(|b| b[4000] = 9),
            "field `zero padding` = 9: header slot 1: byte at offset 4000 must be 0 in \
             format minor 3",
        ),
    ];
    for (enc, want) in cases {
        assert_eq!(err(&enc), format!("/x/index.ssd: {want}"));
    }
    // a newer minor of the same major may use the reserved bytes: ignored, not refused
    let newer = crafted(|b| {
        put_u16(b, OFF_MINOR, FORMAT_VERSION_MINOR + 1);
        put_u32(b, OFF_RESERVED1, 1);
        b[4000] = 9;
    });
    assert_eq!(IndexHeader::decode(p, 1, &newer).unwrap(), sample());
    // a minor-1 header (written before the flags) reads as not saturated
    // (and, before minor 3, as not measured)
    let old = IndexHeader {
        saturated: false,
        near_error: None,
        ..sample()
    };
    let minor1 = {
        let mut b = old.encode();
        put_u16(&mut b, OFF_MINOR, 1);
        put_u32(&mut b, OFF_NEAR_ERROR, 0);
        put_u32(&mut b, OFF_NEAR_SCALE, 0);
        let crc = crc32fast::hash(&b[..HEADER_CRC_OFFSET]);
        put_u32(&mut b, HEADER_CRC_OFFSET, crc);
        b
    };
    assert_eq!(IndexHeader::decode(p, 1, &minor1).unwrap(), old);
    // minor 3 round-trips both a measure and "not measured"
    let m = |error, scale| Some(NearError { error, scale });
    for near_error in [m(0.25, 1.0), m(0.0, 0.0), None] {
        let h = IndexHeader {
            near_error,
            ..sample()
        };
        assert_eq!(IndexHeader::decode(p, 1, &h.encode()).unwrap(), h);
    }
}

#[test]
fn neighbor_codes_make_a_major_2_header_and_a_major_1_header_cannot_claim_them() {
    let p = Path::new("index.ssd");
    let mut h = sample();
    h.layout = NodeLayout::with_neighbor_codes(384, ElementType::F32, 64, 31).unwrap();
    let enc = h.encode();
    assert_eq!(get_u16(&enc, OFF_MAJOR), 2);
    assert_eq!(IndexHeader::decode(p, 0, &enc).unwrap(), h);
    assert_eq!(get_u16(&sample().encode(), OFF_MAJOR), 1);
    let mut f = sample();
    f.layout = NodeLayout::with_encoding(384, ElementType::F32, 64, 43, true).unwrap();
    assert_eq!(get_u16(&f.encode(), OFF_MAJOR), 2);
    assert_eq!(IndexHeader::decode(p, 0, &f.encode()).unwrap(), f);
    // (header, field offset, value written, 2- or 4-byte field, the field refused)
    let cases = [
        (sample(), OFF_MAJOR, 2, 2, "version_major"), // format 2 without either feature
        (f.clone(), OFF_VECTOR_ENCODING, 7, 4, "vector_encoding"),
        (h.clone(), OFF_MAJOR, 1, 2, "nbr_code_m"), // format 1 claiming codes
    ];
    for (hdr, off, v, width, want) in cases {
        let mut enc = hdr.encode();
        if width == 2 {
            put_u16(&mut enc, off, v as u16);
        } else {
            put_u32(&mut enc, off, v);
        }
        let crc = crc32fast::hash(&enc[..HEADER_CRC_OFFSET]);
        put_u32(&mut enc, HEADER_CRC_OFFSET, crc);
        match IndexHeader::decode(p, 0, &enc) {
            Err(LayoutError::InvalidField { field, .. }) => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}
