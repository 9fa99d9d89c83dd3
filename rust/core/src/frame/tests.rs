//! Tests of framing: round trips, truncations, flipped bits, limits and compression failures.

use super::*;

fn frames(n: u64, zstd: bool) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    for seq in 0..n {
        starts.push(out.len());
        let raw = format!("payload number {seq} {}", "x".repeat(seq as usize * 10));
        append(
            &mut out,
            Kind::Batch,
            seq,
            raw.as_bytes(),
            zstd.then_some(&mut c),
        )
        .unwrap();
    }
    (out, starts)
}

fn decoded(buf: &[u8]) -> (Vec<String>, Vec<(usize, usize, Damage)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for ev in Frames::new(buf) {
        match ev {
            Event::Frame {
                header, payload, ..
            } => {
                let raw = decode_payload(&header, payload).unwrap();
                good.push(String::from_utf8(raw).unwrap());
            }
            Event::Damaged {
                offset,
                len,
                damage,
            } => bad.push((offset, len, damage)),
        }
    }
    (good, bad)
}

#[test]
fn round_trip_plain_and_zstd() {
    for z in [false, true] {
        let (buf, _) = frames(5, z);
        let (good, bad) = decoded(&buf);
        assert_eq!(good.len(), 5);
        assert!(good[3].starts_with("payload number 3 xxx"));
        assert!(bad.is_empty());
    }
}

#[test]
fn every_truncation_is_a_torn_tail_that_keeps_the_prefix() {
    let (buf, starts) = frames(3, true);
    for cut in starts[2] + 1..buf.len() {
        let (good, bad) = decoded(&buf[..cut]);
        assert_eq!(good.len(), 2, "cut at {cut}");
        assert_eq!(
            bad,
            vec![(starts[2], cut - starts[2], Damage::TornTail)],
            "cut at {cut}"
        );
    }
}

#[test]
fn a_flipped_bit_loses_only_its_frame() {
    let (buf, starts) = frames(4, true);
    for at in starts[1]..starts[2] {
        let mut b = buf.clone();
        b[at] ^= 0x10;
        let (good, bad) = decoded(&b);
        assert_eq!(good.len(), 3, "flip at {at}");
        assert!(!good.iter().any(|g| g.starts_with("payload number 1 ")));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, starts[1]);
        assert_eq!(bad[0].1, starts[2] - starts[1]);
    }
}

#[test]
fn oversized_declarations_are_rejected_before_reading() {
    let (mut buf, _) = frames(1, false);
    buf[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&buf[0..28]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(parse_header(&buf), Err(Damage::Bad(m)) if m.contains("over the limit")));
}

#[test]
fn zstd_output_is_capped_at_the_declared_length() {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    let mut out = Vec::new();
    append(&mut out, Kind::Batch, 0, &vec![0u8; 1 << 20], Some(&mut c)).unwrap();
    let (h, payload) = Frames::new(&out).check(0).unwrap();
    let lying = Header { raw_len: 100, ..h };
    assert!(decode_payload(&lying, payload).is_err());
    assert_eq!(decode_payload(&h, payload).unwrap().len(), 1 << 20);
}

struct Failing;
impl Compress for Failing {
    fn compress(
        &mut self,
        _: &[u8],
        _: &[usize],
        out: &mut [u8],
    ) -> std::result::Result<usize, String> {
        out.fill(0xAB); // scribbles over the scratch space, as a failing codec may
        Err("injected".into())
    }
}

#[test]
fn a_compression_failure_appends_nothing() {
    let (mut out, _) = frames(2, true);
    let before = out.clone();
    let err = append_with(&mut out, Kind::Batch, 2, b"rows", &[], Some(&mut Failing));
    assert_eq!(err, Err(FrameError::Compression("injected".into())));
    assert_eq!(
        out, before,
        "no header placeholder or scratch bytes left behind"
    );
    let (good, bad) = decoded(&out);
    assert_eq!((good.len(), bad.len()), (2, 0));
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for len in 0..2000 {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state & 0xFF) as u8
            })
            .collect();
        for ev in Frames::new(&buf) {
            assert!(matches!(ev, Event::Damaged { .. }));
        }
    }
}

#[test]
fn cut_blocks_make_one_zstd_frame_that_declares_its_size() {
    let raw: Vec<u8> = (0..50_000u32).map(|i| (i % 7 + i / 5000) as u8).collect();
    let cuts = [0, 10, 5000, 5000, 20_000, 49_999, 50_000, 60_000];
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    let mut out = Vec::new();
    append_with(&mut out, Kind::Batch, 0, &raw, &cuts, Some(&mut c)).unwrap();
    let (h, payload) = Frames::new(&out).check(0).unwrap();
    let size = zstd::zstd_safe::get_frame_content_size(payload);
    assert!(matches!(size, Ok(Some(50_000))), "{size:?}");
    assert_eq!(decode_payload(&h, payload).unwrap(), raw);
    // The compressor is reusable, cut or not.
    let mut again = Vec::new();
    append_with(&mut again, Kind::Batch, 1, &raw, &[], Some(&mut c)).unwrap();
    let (h, payload) = Frames::new(&again).check(0).unwrap();
    assert_eq!(decode_payload(&h, payload).unwrap(), raw);
}
