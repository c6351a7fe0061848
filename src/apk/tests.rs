//! Unit tests of the pure layout code and the serde types, on synthetic APK bytes.

use super::block::*;
use super::{ChannelInfo, FormatError};

fn pair(id: u32, len: usize, fill: u8) -> Pair {
    Pair {
        id,
        value: vec![fill; len],
    }
}

fn v2_pairs() -> Vec<Pair> {
    vec![pair(V2_ID, 1500, 0xa5), pair(V3_ID, 1700, 0x5a)]
}

/// A 46-byte stand-in for a central directory record.
fn fake_cd() -> Vec<u8> {
    let mut cd = b"PK\x01\x02".to_vec();
    cd.extend((0..42u8).map(|i| i.wrapping_mul(7)));
    cd
}

fn eocd(cd_offset: u32, cd_size: u32, comment: &[u8]) -> Vec<u8> {
    let mut e = 0x0605_4b50u32.to_le_bytes().to_vec();
    e.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    e.extend_from_slice(&cd_size.to_le_bytes());
    e.extend_from_slice(&cd_offset.to_le_bytes());
    e.extend_from_slice(&(comment.len() as u16).to_le_bytes());
    e.extend_from_slice(comment);
    e
}

/// Block ‖ CD ‖ EOCD for a block starting at file offset `block_offset`.
fn tail_at(block_offset: u64, pairs: &[Pair], align: bool, comment: &[u8]) -> Vec<u8> {
    let mut out = build_block(pairs, align);
    let cd = fake_cd();
    let cd_offset = u32::try_from(block_offset + out.len() as u64).expect("fits u32");
    out.extend_from_slice(&cd);
    out.extend_from_slice(&eocd(cd_offset, cd.len() as u32, comment));
    out
}

fn prefix(len: usize) -> Vec<u8> {
    let mut p = b"PK\x03\x04".to_vec();
    p.extend((4..len).map(|i| (i % 251) as u8));
    p
}

fn apk(prefix_len: usize, pairs: &[Pair], align: bool, comment: &[u8]) -> Vec<u8> {
    let mut file = prefix(prefix_len);
    file.extend(tail_at(prefix_len as u64, pairs, align, comment));
    file
}

fn parsed(base: u64, bytes: &[u8]) -> SigningTail {
    match parse_tail(base, bytes).expect("parses") {
        TailParse::Parsed(t) => t,
        TailParse::NeedFrom(at) => panic!("needs bytes from {at}"),
    }
}

fn parse_err(bytes: &[u8]) -> FormatError {
    parse_tail(0, bytes).expect_err("must be rejected")
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn parses_layout_and_pairs() {
    let file = apk(4096, &v2_pairs(), true, b"");
    let tail = parsed(0, &file);
    assert_eq!(tail.block_offset, 4096);
    assert_eq!(tail.block_len(), 4096);
    assert_eq!(tail.eocd.cd_offset, 8192);
    assert_eq!(tail.file_len, file.len() as u64);
    assert_eq!(tail.schemes(), vec!["v2", "v3"]);
    assert!(tail.page_aligned());
    let ids: Vec<u32> = tail.pairs.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![V2_ID, V3_ID, PADDING_ID]);
    assert_eq!(tail.value(V2_ID), Some(&[0xa5u8; 1500][..]));
}

#[test]
fn rebuild_keeps_signed_sections_and_alignment() {
    let file = apk(4096, &v2_pairs(), true, b"note");
    let tail = parsed(0, &file);
    let walle = Pair {
        id: WALLE_ID,
        value: br#"{"channel":"c1","channel_version":"1.0"}"#.to_vec(),
    };
    let new_tail = tail
        .rebuild(&[WALLE_ID], std::slice::from_ref(&walle))
        .unwrap();
    let mut out = file[..4096].to_vec();
    out.extend_from_slice(&new_tail);
    let again = parsed(0, &out);
    assert_eq!(again.block_offset, 4096);
    assert_eq!(again.block_len() % BLOCK_ALIGN, 0);
    assert_eq!(again.value(WALLE_ID), Some(walle.value.as_slice()));
    assert_eq!(again.value(V2_ID), tail.value(V2_ID));
    // CD and EOCD are unchanged but for the CD offset field.
    let (old_after, new_after) = (tail.after_block(), again.after_block());
    assert_eq!(old_after.len(), new_after.len());
    let eocd_at = fake_cd().len();
    assert_eq!(old_after[..eocd_at + 16], new_after[..eocd_at + 16]);
    assert_eq!(old_after[eocd_at + 20..], new_after[eocd_at + 20..]);
    let cd_offset = u32_le(new_after, eocd_at + 16);
    assert_eq!(u64::from(cd_offset), 4096 + again.block_len());
}

#[test]
fn second_write_replaces_the_pair() {
    let file = apk(100, &v2_pairs(), true, b"");
    let mut current = file.clone();
    for channel in ["first", "second"] {
        let tail = parsed(0, &current);
        let add = [
            pair(WALLE_ID, 30, channel.len() as u8),
            Pair {
                id: VASDOLLY_ID,
                value: channel.as_bytes().to_vec(),
            },
        ];
        let new_tail = tail.rebuild(&[WALLE_ID, VASDOLLY_ID], &add).unwrap();
        current.truncate(100);
        current.extend_from_slice(&new_tail);
    }
    let tail = parsed(0, &current);
    let count = |id| tail.pairs.iter().filter(|p| p.id == id).count();
    assert_eq!(
        (count(WALLE_ID), count(VASDOLLY_ID), count(PADDING_ID)),
        (1, 1, 1)
    );
    assert_eq!(tail.value(VASDOLLY_ID), Some(&b"second"[..]));
    assert_eq!(tail.block_len(), 4096);
}

#[test]
fn dropped_ids_disappear() {
    let mut pairs = v2_pairs();
    pairs.push(pair(VASDOLLY_ID, 5, b'x'));
    let tail = parsed(0, &apk(64, &pairs, true, b""));
    let new_tail = tail
        .rebuild(&[WALLE_ID, VASDOLLY_ID], &[pair(WALLE_ID, 10, 1)])
        .unwrap();
    let mut out = prefix(64);
    out.extend_from_slice(&new_tail);
    assert_eq!(parsed(0, &out).value(VASDOLLY_ID), None);
}

#[test]
fn large_value_grows_block_to_next_page() {
    let file = apk(4096, &v2_pairs(), true, b"");
    let tail = parsed(0, &file);
    let new_tail = tail.rebuild(&[], &[pair(WALLE_ID, 5000, 7)]).unwrap();
    let mut out = file[..4096].to_vec();
    out.extend_from_slice(&new_tail);
    let again = parsed(0, &out);
    assert_eq!(again.block_len(), 3 * 4096);
    assert_eq!(again.eocd.cd_offset, 4 * 4096);
}

#[test]
fn unaligned_block_without_padding_stays_unpadded() {
    let file = apk(333, &v2_pairs(), false, b"");
    let tail = parsed(0, &file);
    assert!(!tail.page_aligned());
    let new_tail = tail.rebuild(&[], &[pair(WALLE_ID, 40, 3)]).unwrap();
    let mut out = file[..333].to_vec();
    out.extend_from_slice(&new_tail);
    let again = parsed(0, &out);
    assert_eq!(again.block_len(), tail.block_len() + 12 + 40);
    assert_eq!(again.value(PADDING_ID), None);
}

#[test]
fn padding_shorter_than_a_pair_header_adds_a_page() {
    // 8 + (12 + len) + 24 = 4096 - 5 leaves 5 bytes: too small for a padding pair.
    let len = 4096 - 5 - 8 - 12 - 24;
    let block = build_block(&[pair(V2_ID, len, 1)], true);
    assert_eq!(block.len(), 8192);
    let tail = parsed(0, &apk(4096, &[pair(V2_ID, len, 1)], true, b""));
    let padding = tail.value(PADDING_ID).expect("padding pair");
    assert_eq!(padding.len(), 4096 + 5 - 12);
    assert!(padding.iter().all(|b| *b == 0));
}

#[test]
fn comment_with_fake_eocd_is_skipped() {
    // A comment holding an EOCD signature whose length does not reach the end is ignored.
    let mut comment = 0x0605_4b50u32.to_le_bytes().to_vec();
    comment.extend_from_slice(&[0u8; 30]);
    let file = apk(4096, &v2_pairs(), true, &comment);
    let tail = parsed(0, &file);
    assert_eq!(
        tail.eocd.offset,
        file.len() as u64 - 22 - comment.len() as u64
    );
    assert!(tail.after_block().ends_with(&comment));
}

#[test]
fn short_buffer_asks_for_earlier_bytes() {
    let file = apk(4096, &v2_pairs(), true, b"");
    let mut base = file.len() as u64 - 30;
    let mut rounds = 0;
    let tail = loop {
        rounds += 1;
        match parse_tail(base, &file[base as usize..]).unwrap() {
            TailParse::Parsed(t) => break t,
            TailParse::NeedFrom(at) => {
                assert!(at < base, "must ask for earlier bytes");
                base = at;
            }
        }
    };
    assert!(rounds <= 4);
    assert_eq!(tail.block_offset, 4096);
    assert_eq!(tail.bytes(), &file[4096..]);
}

#[test]
fn offsets_above_2_gib_are_unsigned() {
    // Only the tail of a 3 GB file exists in memory; its offsets exceed i32::MAX.
    let base = 3_000_000_000u64;
    let bytes = tail_at(base, &v2_pairs(), true, b"");
    let tail = parsed(base, &bytes);
    assert_eq!(tail.block_offset, base);
    assert_eq!(tail.eocd.cd_offset, base + 4096);
    assert!(tail.eocd.cd_offset > i32::MAX as u64);
    let new_tail = tail.rebuild(&[], &[pair(WALLE_ID, 5000, 9)]).unwrap();
    let eocd_at = new_tail.len() - 22;
    let cd_offset = u64::from(u32_le(&new_tail, eocd_at + 16));
    assert_eq!(cd_offset, base + 3 * 4096);
    let again = parsed(base, &new_tail);
    assert_eq!(again.block_len(), 3 * 4096);
    assert_eq!(again.value(WALLE_ID).map(<[u8]>::len), Some(5000));
}

#[test]
fn output_past_4_gib_is_refused() {
    let base = u64::from(u32::MAX) - 4096 * 2;
    let tail = parsed(base, &tail_at(base, &v2_pairs(), true, b""));
    let err = tail
        .rebuild(&[], &[pair(WALLE_ID, 5000, 9)])
        .expect_err("cd offset would overflow u32");
    assert_eq!(err, FormatError::TooLarge);
}

#[test]
fn zip64_locator_is_rejected() {
    let mut file = prefix(4096);
    let block = build_block(&v2_pairs(), true);
    file.extend_from_slice(&block);
    let cd = fake_cd();
    file.extend_from_slice(&cd);
    let mut locator = 0x0706_4b50u32.to_le_bytes().to_vec();
    locator.extend_from_slice(&[0u8; 16]);
    file.extend_from_slice(&locator);
    file.extend(eocd(8192, cd.len() as u32, b""));
    assert_eq!(parse_err(&file), FormatError::Zip64);
}

#[test]
fn zip64_marker_offsets_are_rejected() {
    let mut file = prefix(200);
    file.extend(eocd(u32::MAX, 46, b""));
    assert_eq!(parse_err(&file), FormatError::Zip64);
}

#[test]
fn not_a_zip() {
    assert_eq!(parse_err(b"short"), FormatError::NotZip);
    let garbage: Vec<u8> = (0..70_000u32).map(|i| (i * 31 % 256) as u8).collect();
    assert_eq!(parse_err(&garbage), FormatError::NotZip);
}

#[test]
fn zip_without_block_is_rejected() {
    let mut file = prefix(4096);
    let cd = fake_cd();
    file.extend_from_slice(&cd);
    file.extend(eocd(4096, cd.len() as u32, b""));
    assert_eq!(parse_err(&file), FormatError::NoSigningBlock);
}

#[test]
fn corrupt_blocks_are_rejected() {
    let file = apk(4096, &v2_pairs(), true, b"");
    let mut sizes_differ = file.clone();
    sizes_differ[4096] ^= 1;
    assert!(matches!(parse_err(&sizes_differ), FormatError::Corrupt(_)));
    let mut bad_pair = file.clone();
    bad_pair[4096 + 8..4096 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(parse_err(&bad_pair), FormatError::Corrupt(_)));
    let mut huge_block = file.clone();
    let footer = 8192 - 24;
    huge_block[footer..footer + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(parse_err(&huge_block), FormatError::Corrupt(_)));
    let mut bad_cd_size = file;
    let eocd_at = bad_cd_size.len() - 22;
    bad_cd_size[eocd_at + 12] ^= 1;
    assert!(matches!(parse_err(&bad_cd_size), FormatError::Corrupt(_)));
}

#[test]
fn channel_info_json_is_walle_compatible() {
    let mut info = ChannelInfo::new("huawei", "1.0");
    assert_eq!(
        info.to_walle_payload().unwrap(),
        br#"{"channel":"huawei","channel_version":"1.0"}"#.to_vec()
    );
    info.extra.insert("buildId".into(), "42".into());
    let back: ChannelInfo = serde_json::from_slice(&info.to_walle_payload().unwrap()).unwrap();
    assert_eq!(back, info);
    let walle_only: ChannelInfo = serde_json::from_str(r#"{"channel":"x","k":"v"}"#).unwrap();
    assert_eq!(walle_only.channel_version, "");
    assert_eq!(walle_only.extra["k"], "v");
    info.extra.insert("channel".into(), "dup".into());
    assert_eq!(info.to_walle_payload().unwrap_err().seed_code(), "ARG_MISS");
    assert!(ChannelInfo::new("", "1").to_walle_payload().is_err());
}

#[test]
fn channel_file_names() {
    let mother = std::path::Path::new("/apk/sdkgame/niu/niu.apk");
    assert_eq!(super::channel_apk_name(mother, "11").unwrap(), "niu_11.apk");
    for bad in ["", "../x", "a/b", ".hidden", "a\0b"] {
        assert!(super::channel_apk_name(mother, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn write_options_defaults_and_unknown_keys() {
    let opts: super::WriteOptions = serde_json::from_str(r#"{"vasdolly": true}"#).unwrap();
    assert!(opts.vasdolly && opts.fsync && opts.validate_zip);
    assert_eq!(opts.temp_dir, None);
    let err = serde_json::from_str::<super::WriteOptions>(r#"{"fsynk": false}"#).unwrap_err();
    assert!(err.to_string().contains("fsynk"), "{err}");
}

#[test]
fn v31_only_block_counts_as_signed() {
    let tail = parsed(0, &apk(4096, &[pair(V31_ID, 900, 3)], true, b""));
    assert_eq!(tail.schemes(), vec!["v3.1"]);
    let padding_only = parsed(0, &apk(4096, &[], true, b""));
    assert!(padding_only.schemes().is_empty());
}
