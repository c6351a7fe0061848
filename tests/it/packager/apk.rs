//! Integration tests of `taskbus::apk` on real APKs signed by `apksigner`
//! (built once per test binary by `make-apk-fixtures.sh`, see
//! `packager/support/fixtures.rs`; needs the Debian packages apksigner, zipalign, aapt
//! and android-framework-res).

use std::fs;
use std::path::Path;

use super::support::fixtures::{fixtures, verify};
use taskbus::apk::block::{self, Pair, SigningTail, TailParse, PADDING_ID, VASDOLLY_ID, WALLE_ID};
use taskbus::apk::cli::{self, ApkCommand};
use taskbus::apk::{inspect, read_channel, write_channel, ChannelInfo, FormatError, WriteOptions};

fn tail(apk: &Path) -> SigningTail {
    match block::parse_tail(0, &fs::read(apk).unwrap()).unwrap() {
        TailParse::Parsed(t) => t,
        TailParse::NeedFrom(at) => panic!("whole file given, needs {at}"),
    }
}

fn pair_count(apk: &Path, id: u32) -> usize {
    inspect(apk)
        .unwrap()
        .pairs
        .iter()
        .filter(|p| p.id == id)
        .count()
}

fn vasdolly(on: bool) -> WriteOptions {
    WriteOptions {
        vasdolly: on,
        ..WriteOptions::default()
    }
}

/// Signed sections of `out` equal the mother's: entries, CD, EOCD but its CD offset.
fn assert_signed_bytes_kept(mother: &Path, out: &Path) {
    let (m, o) = (tail(mother), tail(out));
    let (mb, ob) = (fs::read(mother).unwrap(), fs::read(out).unwrap());
    assert_eq!(m.block_offset, o.block_offset);
    let start = m.block_offset as usize;
    assert_eq!(mb[..start], ob[..start], "entries changed");
    let (ma, oa) = (m.after_block(), o.after_block());
    let eocd = (m.eocd.offset - m.eocd.cd_offset) as usize;
    assert_eq!(
        ma[..eocd + 16],
        oa[..eocd + 16],
        "central directory changed"
    );
    assert_eq!(ma[eocd + 20..], oa[eocd + 20..], "eocd changed");
}

fn check_variant(name: &str, min_sdk: Option<&str>) {
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mother = fx.join(name);
    let before = inspect(&mother).unwrap();
    assert_eq!(read_channel(&mother).unwrap(), None);

    let mut first = ChannelInfo::new("huawei", "1.0");
    first.extra.insert("build".into(), "7".into());
    let out1 = dir.path().join("first.apk");
    let report = write_channel(&mother, &out1, &first, &vasdolly(true)).unwrap();
    assert!(!report.replaced);
    assert_eq!(report.apk_bytes, fs::metadata(&out1).unwrap().len());
    verify(&out1, min_sdk);
    assert_signed_bytes_kept(&mother, &out1);
    assert_eq!(read_channel(&out1).unwrap(), Some(first));
    assert_eq!(tail(&out1).value(VASDOLLY_ID), Some(&b"huawei"[..]));
    let after = inspect(&out1).unwrap();
    if before.block_len.is_multiple_of(4096) {
        assert_eq!(after.block_len % 4096, 0, "block lost its 4096 multiple");
    }

    // Writing again over a channel APK replaces both pairs.
    let second = ChannelInfo::new("xiaomi", "2.0");
    let out2 = dir.path().join("second.apk");
    let report = write_channel(&out1, &out2, &second, &vasdolly(true)).unwrap();
    assert!(report.replaced);
    verify(&out2, min_sdk);
    assert_signed_bytes_kept(&mother, &out2);
    assert_eq!(read_channel(&out2).unwrap(), Some(second));
    assert_eq!(
        (pair_count(&out2, WALLE_ID), pair_count(&out2, VASDOLLY_ID)),
        (1, 1)
    );
    assert!(pair_count(&out2, PADDING_ID) <= 1);
    assert_eq!(tail(&out2).value(VASDOLLY_ID), Some(&b"xiaomi"[..]));

    // Without VasDolly, an old VasDolly pair must not survive with a stale channel.
    let third = ChannelInfo::new("oppo", "3.0");
    let out3 = dir.path().join("third.apk");
    write_channel(&out2, &out3, &third, &vasdolly(false)).unwrap();
    assert_eq!(
        (pair_count(&out3, WALLE_ID), pair_count(&out3, VASDOLLY_ID)),
        (1, 0)
    );
    assert_eq!(read_channel(&out3).unwrap(), Some(third));
    verify(&out3, min_sdk);
    assert_signed_bytes_kept(&mother, &out3);
}

#[test]
fn v123_channel_verifies_and_replaces() {
    check_variant("mother-v123.apk", None);
}

#[test]
fn v12_channel_verifies_and_replaces() {
    check_variant("mother-v12.apk", None);
}

#[test]
fn v3only_channel_verifies_and_replaces() {
    check_variant("mother-v3only.apk", Some("28"));
}

#[test]
fn vasdolly_pair_alone_is_read() {
    let Some(fx) = fixtures() else { return };
    let mother = fx.join("mother-v123.apk");
    let t = tail(&mother);
    let add = [Pair {
        id: VASDOLLY_ID,
        value: b"vivo".to_vec(),
    }];
    let mut bytes = fs::read(&mother).unwrap();
    bytes.truncate(t.block_offset as usize);
    bytes.extend(t.rebuild(&[], &add).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let apk = dir.path().join("vasdolly.apk");
    fs::write(&apk, bytes).unwrap();
    assert_eq!(
        read_channel(&apk).unwrap(),
        Some(ChannelInfo::new("vivo", ""))
    );
}

/// A failed write leaves `out` as it was and no temp file behind.
fn assert_fails_cleanly(mother: &Path, code: &str) -> taskbus::apk::ApkError {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.apk");
    fs::write(&out, b"previous").unwrap();
    let err = write_channel(mother, &out, &ChannelInfo::new("c", "1"), &vasdolly(true))
        .expect_err("must fail");
    assert_eq!(err.seed_code(), code, "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"previous");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.apk")]);
    err
}

#[test]
fn v1_only_and_unsigned_are_wrong_apk() {
    let Some(fx) = fixtures() else { return };
    for name in ["mother-v1.apk", "mother-unsigned.apk"] {
        let err = assert_fails_cleanly(&fx.join(name), "WRONG_APK");
        assert_eq!(
            err.format_error(),
            Some(&FormatError::NoSigningBlock),
            "{name}"
        );
        assert_eq!(err.error_code(), 404);
        let read = read_channel(&fx.join(name)).expect_err("no block to read");
        assert_eq!(read.seed_code(), "WRONG_APK");
    }
}

#[test]
fn missing_mother_is_no_apk() {
    let dir = tempfile::tempdir().unwrap();
    let err = assert_fails_cleanly(&dir.path().join("absent.apk"), "NO_APK");
    assert_eq!(err.error_code(), 402);
    assert_eq!(
        read_channel(&dir.path().join("absent.apk"))
            .unwrap_err()
            .seed_code(),
        "NO_APK"
    );
}

#[test]
fn garbage_empty_and_directory_are_wrong_apk() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.apk");
    fs::write(
        &garbage,
        (0..100_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let empty = dir.path().join("empty.apk");
    fs::write(&empty, b"").unwrap();
    let sub = dir.path().join("sub.apk");
    fs::create_dir(&sub).unwrap();
    for path in [&garbage, &empty, &sub] {
        assert_fails_cleanly(path, "WRONG_APK");
    }
}

#[test]
fn truncated_apks_are_wrong_apk() {
    let Some(fx) = fixtures() else { return };
    let bytes = fs::read(fx.join("mother-v123.apk")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = tail(&fx.join("mother-v123.apk"));
    for (name, len) in [
        ("half.apk", bytes.len() / 2),
        ("no-eocd-end.apk", bytes.len() - 10),
        ("cut-block.apk", t.block_offset as usize + 100),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, &bytes[..len]).unwrap();
        assert_fails_cleanly(&path, "WRONG_APK");
    }
    // Block and offsets intact, but the manifest renamed in the central directory:
    // only the zip validation sees it.
    let cd = t.eocd.cd_offset as usize;
    let name = b"AndroidManifest.xml";
    let at = cd
        + bytes[cd..]
            .windows(name.len())
            .position(|w| w == name)
            .expect("in cd");
    let mut renamed = bytes.clone();
    renamed[at] = b'X';
    let path = dir.path().join("renamed.apk");
    fs::write(&path, renamed).unwrap();
    let err = assert_fails_cleanly(&path, "WRONG_APK");
    assert_eq!(err.format_error(), Some(&FormatError::NoManifest));
}

#[test]
fn uncreatable_output_is_copy_apk_error() {
    let Some(fx) = fixtures() else { return };
    let mother = fx.join("mother-v123.apk");
    let dir = tempfile::tempdir().unwrap();
    let info = ChannelInfo::new("c", "1");
    let no_dir = dir.path().join("missing/out.apk");
    let err = write_channel(&mother, &no_dir, &info, &WriteOptions::default()).unwrap_err();
    assert_eq!(err.seed_code(), "COPY_APK_ERROR", "{err}");
    let opts = WriteOptions {
        temp_dir: Some(dir.path().join("missing-tmp")),
        ..WriteOptions::default()
    };
    let err = write_channel(&mother, &dir.path().join("o.apk"), &info, &opts).unwrap_err();
    assert_eq!(err.seed_code(), "COPY_APK_ERROR", "{err}");
    assert!(!dir.path().join("o.apk").exists());
    // `out` is a non-empty directory: the rename fails and the directory is untouched.
    let busy = dir.path().join("busy.apk");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep"), b"x").unwrap();
    let err = write_channel(&mother, &busy, &info, &WriteOptions::default()).unwrap_err();
    assert_eq!(err.seed_code(), "COPY_APK_ERROR", "{err}");
    assert!(busy.join("keep").is_file());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp file left behind"
    );
}

#[test]
fn separate_temp_dir_leaves_nothing_behind() {
    let Some(fx) = fixtures() else { return };
    let (out_dir, tmp_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = WriteOptions {
        temp_dir: Some(tmp_dir.path().to_path_buf()),
        fsync: false,
        ..WriteOptions::default()
    };
    let out = out_dir.path().join("c.apk");
    let info = ChannelInfo::new("c", "1");
    write_channel(&fx.join("mother-v12.apk"), &out, &info, &opts).unwrap();
    assert_eq!(read_channel(&out).unwrap(), Some(info));
    verify(&out, None);
    assert_eq!(fs::read_dir(tmp_dir.path()).unwrap().count(), 0);
}

#[test]
fn cli_package_names_output_and_reads_it_back() {
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mother = fx.join("mother-v123.apk");
    let info = ChannelInfo::new("11", "1.0");
    let out = cli::package(&mother, &info, Some(dir.path()), false).unwrap();
    assert_eq!(out, dir.path().join("mother-v123_11.apk"));
    assert_eq!(read_channel(&out).unwrap(), Some(info));
    verify(&out, None);
    cli::run(ApkCommand::Channel { file: out }).unwrap();
    assert!(cli::run(ApkCommand::Channel {
        file: mother.clone()
    })
    .is_err());
    cli::run(ApkCommand::Package {
        mother,
        channel: "12".into(),
        channel_version: "2".into(),
        out: Some(dir.path().to_path_buf()),
        vasdolly: true,
    })
    .unwrap();
    let got = read_channel(&dir.path().join("mother-v123_12.apk")).unwrap();
    assert_eq!(got, Some(ChannelInfo::new("12", "2")));
    verify(&dir.path().join("mother-v123_12.apk"), None);
    let bad = cli::package(
        &fx.join("mother-v123.apk"),
        &ChannelInfo::new("../x", ""),
        None,
        false,
    );
    assert!(bad.is_err());
}

#[test]
fn package_bench_reports_figures() {
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let args = taskbus::bench::package::PackageBenchArgs {
        apk: Some(fx.join("mother-v3only.apk")),
        count: 3,
        small_count: 20,
        small_apk: Some(fx.join("mother-v12.apk")),
        json: Some(json.clone()),
        ..bench_args()
    };
    let report = taskbus::bench::package::run_files(&args).unwrap();
    assert_eq!(
        report.apk_bytes,
        fs::metadata(fx.join("mother-v3only.apk")).unwrap().len()
    );
    assert_eq!(report.small_packages, 20);
    assert!(report.ratio_vs_copy > 0.0 && report.packages_per_s > 0.0);
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    for key in [
        "packages_per_s",
        "ratio_vs_copy",
        "apk_bytes",
        "small_packages_per_s",
    ] {
        assert!(written[key].is_number(), "{key} missing in {written}");
    }
}

#[test]
fn temp_dir_on_another_filesystem_still_lands_atomically() {
    use std::os::unix::fs::MetadataExt;
    let Some(fx) = fixtures() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let Ok(tmp_dir) = tempfile::tempdir_in("/dev/shm") else {
        println!("skipped: no /dev/shm for a second filesystem");
        return;
    };
    let dev = |p: &Path| fs::metadata(p).unwrap().dev();
    if dev(out_dir.path()) == dev(tmp_dir.path()) {
        println!("skipped: /dev/shm is on the same filesystem as the temp dir");
        return;
    }
    let opts = WriteOptions {
        temp_dir: Some(tmp_dir.path().to_path_buf()),
        ..WriteOptions::default()
    };
    let out = out_dir.path().join("c.apk");
    let info = ChannelInfo::new("cross", "1");
    write_channel(&fx.join("mother-v123.apk"), &out, &info, &opts).unwrap();
    assert_eq!(read_channel(&out).unwrap(), Some(info));
    verify(&out, None);
    assert_signed_bytes_kept(&fx.join("mother-v123.apk"), &out);
    assert_eq!(fs::read_dir(tmp_dir.path()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(out_dir.path()).unwrap().count(), 1);
}

#[test]
fn unreadable_mother_is_perm_error() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mother = dir.path().join("locked.apk");
    fs::copy(fx.join("mother-v123.apk"), &mother).unwrap();
    fs::set_permissions(&mother, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&mother).is_ok() {
        // root (uid 0 here) reads any file; the mapping is covered by the unit tests.
        let uid = fs::metadata(dir.path()).unwrap().uid();
        println!("skipped: uid {uid} can read a mode-000 file");
        return;
    }
    assert_fails_cleanly(&mother, "PERM_ERROR");
    assert_eq!(read_channel(&mother).unwrap_err().error_code(), 406);
}

/// Issue 12: temp copies are named with `random_chr` and a tag, and the sweep removes
/// only its own tag's (and the older `.taskbus-apk-XXXXXX.tmp` names).
#[test]
fn temp_names_use_random_chr_and_only_their_own_tag_is_swept() {
    let opts = WriteOptions {
        temp_tag: "inst".into(),
        temp_alphabet: "xy".into(),
        temp_random_len: 12,
        ..WriteOptions::default()
    };
    let name = taskbus::apk::temp_file_name(&opts);
    let random = name
        .strip_prefix(".taskbus-apk.inst.")
        .and_then(|rest| rest.strip_suffix(".tmp"))
        .unwrap_or_else(|| panic!("{name}"));
    assert_eq!(random.len(), 12, "{name}");
    assert!(random.chars().all(|c| c == 'x' || c == 'y'), "{name}");

    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join(&name);
    let legacy = dir.path().join(".taskbus-apk-Ab12Cd.tmp");
    let theirs = dir.path().join(taskbus::apk::temp_file_name(&WriteOptions {
        temp_tag: "inst.b".into(),
        ..opts.clone()
    }));
    let untagged = dir
        .path()
        .join(taskbus::apk::temp_file_name(&WriteOptions::default()));
    for file in [&ours, &legacy, &theirs, &untagged] {
        fs::write(file, b"x").unwrap();
    }
    let mut removed = taskbus::apk::sweep_temp_files(dir.path(), "inst", None).unwrap();
    removed.sort();
    let mut expected = vec![ours.clone(), legacy.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(theirs.exists() && untagged.exists());
}

/// The bench's flags as `taskbus-bench package` parses them with none given.
fn bench_args() -> taskbus::bench::package::PackageBenchArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        args: taskbus::bench::package::PackageBenchArgs,
    }
    Flags::parse_from(["package"]).args
}

/// Issue 12: the Redis mode of `taskbus-bench package` measures the intake end to end.
#[tokio::test(flavor = "multi_thread")]
async fn package_bench_redis_mode_reports_each_run() {
    if super::support::redis_or_skip().await.is_none() {
        return;
    }
    let Some(fx) = fixtures() else { return };
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.apk");
    fs::copy(fx.join("mother-v12.apk"), &small).unwrap();
    let json = dir.path().join("bench.json");
    let args = taskbus::bench::package::PackageBenchArgs {
        redis: true,
        small_apk: Some(small),
        small_count: 30,
        runs: 2,
        notice_delay_ms: vec![5, 0],
        json: Some(json.clone()),
        ..bench_args()
    };
    tokio::task::spawn_blocking(move || taskbus::bench::package::run(&args))
        .await
        .unwrap()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["tasks"], 30);
    let runs = report["runs"].as_array().unwrap();
    let delays: Vec<u64> = runs
        .iter()
        .map(|r| r["notice_delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(delays, [5, 5, 0, 0]);
    assert!(
        runs.iter().all(|r| r["seconds"].as_f64().unwrap() > 0.0),
        "{report}"
    );
}
