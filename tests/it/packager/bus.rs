//! Packager tests without Redis: status codes, `package_one`, the bus handler, uploads
//! (local directory and S3 on a local moto server), notices and UDP lines.
//!
//! Mother APKs are real signed fixtures (`packager::support::fixtures`); every package
//! built here goes through `apksigner verify`, `zipalign -c 4` and a channel read-back.

use std::sync::Arc;

use super::support::fixtures;
use super::support::*;
use object_store::ObjectStoreExt;
use serde_json::json;
use taskbus::packager::{
    handle_bus_task, package_one, NoticeResult, PackageStatus, PackageTask, Packager,
    PackagerConfig, PackagerEvent, StorageTarget, TaskType, UdpLevel, UdpLogger,
};

fn bus_config(dir: &std::path::Path) -> PackagerConfig {
    PackagerConfig {
        task_type: TaskType::Bus,
        ..test_config(dir)
    }
}

fn task(value: serde_json::Value) -> PackageTask {
    PackageTask::from_value(value).unwrap()
}

fn with_local_target(cfg: &mut PackagerConfig, dir: &std::path::Path) -> std::path::PathBuf {
    let target = dir.join("uploaded");
    cfg.storage_list = vec!["disk".into()];
    cfg.storage_config.insert(
        "disk".into(),
        StorageTarget::Local {
            path: target.clone(),
            prefix: "apk".into(),
        },
    );
    target
}

#[test]
fn status_table_is_the_seeds() {
    let seed = [
        ("NO_READY", 101, "打包未开始"),
        ("COMPLETE", 201, "打包已完成"),
        ("ARG_MISS", 401, "参数不完整，请检查"),
        ("NO_APK", 402, "游戏母包不存在"),
        ("HAVEN_SUB", 403, "游戏已分包，请勿重复操作"),
        ("WRONG_APK", 404, "apk文件不能正常读取"),
        ("COPY_APK_ERROR", 405, "无法创建文件,打包失败,请联系管理员"),
        ("PERM_ERROR", 406, "无法读取游戏母包, 请设置好访问权限"),
        ("UNKNOWN_ERROR", 501, "UNKNOWN_ERROR"),
    ];
    let ours: Vec<_> = PackageStatus::ALL
        .iter()
        .map(|s| (s.key(), s.code(), s.message()))
        .collect();
    assert_eq!(ours, seed);
    for (key, code, _) in seed {
        assert_eq!(PackageStatus::from_code(code).unwrap().key(), key);
        assert_eq!(PackageStatus::from_key(key).code(), code);
    }
}

#[tokio::test]
async fn package_one_builds_the_named_package() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let Some(_) = write_mother(&cfg, "fuhaoniuniu") else {
        return;
    };
    let t = task(seed_task("fuhaoniuniu", json!(11), "http://127.0.0.1:9/x"));
    let outcome = package_one(&cfg, &t).await;
    assert_eq!(outcome.status, PackageStatus::Complete, "{outcome:?}");
    let expected = cfg.sdk_game_path.join("fuhaoniuniu/fuhaoniuniu_11.apk");
    assert_eq!(outcome.path.as_deref(), Some(expected.as_path()));
    verify_v123(&expected, "11");
    let names: Vec<_> = std::fs::read_dir(expected.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only mother and package, no temp file: {names:?}"
    );
    assert_eq!(outcome.to_json()["code"], 201);
}

#[tokio::test]
async fn package_goes_under_subpackage_sdk_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    cfg.subpackage_sdk_path = Some(dir.path().join("sub"));
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let outcome = package_one(&cfg, &task(seed_task("game", json!("ch-7"), ""))).await;
    assert_eq!(outcome.status, PackageStatus::Complete, "{outcome:?}");
    let expected = dir.path().join("sub/game/game_ch-7.apk");
    assert_eq!(outcome.path.as_deref(), Some(expected.as_path()));
    verify_v123(&expected, "ch-7");
}

#[tokio::test]
async fn missing_or_unsafe_fields_are_arg_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let cases = [
        json!({"channel_id": 1, "extend": {"channel_version": "1"}}),
        json!({"filename": "game", "extend": {"channel_version": "1"}}),
        json!({"filename": "game", "channel_id": 1}),
        json!({"filename": "game", "channel_id": 1, "extend": {}}),
        json!({"filename": "../game", "channel_id": 1, "extend": {"channel_version": "1"}}),
        json!({"filename": "game", "channel_id": [1], "extend": {"channel_version": "1"}}),
    ];
    for case in cases {
        let outcome = package_one(&cfg, &task(case.clone())).await;
        assert_eq!(outcome.status, PackageStatus::ArgMiss, "{case}");
        assert_eq!(outcome.to_json()["code"], 401);
    }
}

#[tokio::test]
async fn missing_mother_is_no_apk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let outcome = package_one(&cfg, &task(seed_task("absent", json!(3), ""))).await;
    assert_eq!(outcome.status, PackageStatus::NoApk);
    assert_eq!(outcome.to_json()["message"], "游戏母包不存在");
}

#[tokio::test]
async fn unreadable_mother_is_wrong_apk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let mother = cfg.sdk_game_path.join("game/game.apk");
    std::fs::create_dir_all(mother.parent().unwrap()).unwrap();
    std::fs::write(&mother, b"this is not an apk").unwrap();
    let outcome = package_one(&cfg, &task(seed_task("game", json!(3), ""))).await;
    assert_eq!(outcome.status, PackageStatus::WrongApk, "{outcome:?}");
    assert!(!cfg.sdk_game_path.join("game/game_3.apk").exists());
}

#[tokio::test]
async fn every_signed_variant_is_packaged_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    for (i, (variant, _)) in fixtures::SIGNED.iter().enumerate() {
        let game = format!("game{i}");
        let Some(_) = write_mother_variant(&cfg, &game, variant) else {
            return;
        };
        let mut value = seed_task(&game, json!(100 + i), "");
        value["extend"]["channel_version"] = json!("2.5");
        let outcome = package_one(&cfg, &task(value)).await;
        assert_eq!(
            outcome.status,
            PackageStatus::Complete,
            "{variant}: {outcome:?}"
        );
        let package = outcome.path.expect("package path");
        fixtures::verify_package(&package, variant, &(100 + i).to_string(), "2.5");
    }
}

#[tokio::test]
async fn package_without_fsync_is_whole_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    cfg.fsync = false;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let outcome = package_one(&cfg, &task(seed_task("game", json!(9), ""))).await;
    assert_eq!(outcome.status, PackageStatus::Complete, "{outcome:?}");
    verify_v123(&outcome.path.unwrap(), "9");
}

#[tokio::test]
async fn v1_only_and_unsigned_mothers_are_wrong_apk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let socket = udp_receiver(&mut cfg).await;
    let mut server = notice_server(&[(200, "success")]).await;
    let packager = Packager::new(cfg.clone()).await.unwrap();
    for variant in fixtures::UNSIGNED {
        let game = variant.trim_end_matches(".apk");
        let Some(_) = write_mother_variant(&cfg, game, variant) else {
            return;
        };
        let outcome = package_one(&cfg, &task(seed_task(game, json!(1), ""))).await;
        assert_eq!(
            outcome.status,
            PackageStatus::WrongApk,
            "{variant}: {outcome:?}"
        );
        assert_eq!(outcome.to_json()["code"], 404);
        assert!(
            outcome.detail.contains("no apk signing block"),
            "{outcome:?}"
        );
        let package = cfg.sdk_game_path.join(format!("{game}/{game}_1.apk"));
        assert!(!package.exists(), "{variant}: no package");
        let leftovers = std::fs::read_dir(package.parent().unwrap())
            .unwrap()
            .count();
        assert_eq!(leftovers, 1, "{variant}: only the mother, no temp file");

        // On the bus: a final FAIL whose error names the code, an `error` UDP line, and
        // the 404 notice at once: no later attempt can succeed.
        let err = handle_bus_task(&packager, seed_task(game, json!(2), &server.url))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("WRONG_APK (404)"), "{err}");
        let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
        assert_eq!(level, "error");
        assert!(info.contains("code=404 error_key=WRONG_APK"), "{info}");
        let notice = server.next().await;
        assert_eq!(field(&notice, "errorCode"), Some("404"), "{variant}");
        assert_eq!(field(&notice, "error_key"), Some("WRONG_APK"), "{variant}");
    }
    packager.close().await;
    assert!(
        server.requests.try_recv().is_err(),
        "one notice per failure"
    );
}

#[tokio::test]
async fn existing_package_is_haven_sub_only_without_enforcement() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut value = seed_task("game", json!(5), "");
    assert_eq!(
        package_one(&cfg, &task(value.clone())).await.status,
        PackageStatus::Complete
    );
    let package = cfg.sdk_game_path.join("game/game_5.apk");
    std::fs::write(&package, b"old").unwrap();

    value["extend"]["enforcement"] = json!(false);
    let outcome = package_one(&cfg, &task(value.clone())).await;
    assert_eq!(outcome.status, PackageStatus::HavenSub);
    assert_eq!(outcome.path.as_deref(), Some(package.as_path()));
    assert_eq!(std::fs::read(&package).unwrap(), b"old");

    value["extend"]["enforcement"] = json!(true);
    assert_eq!(
        package_one(&cfg, &task(value)).await.status,
        PackageStatus::Complete
    );
    assert_ne!(
        std::fs::read(&package).unwrap(),
        b"old",
        "enforcement rebuilds"
    );
    verify_v123(&package, "5");
}

#[tokio::test]
async fn udp_notice_line_has_the_seed_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let socket = udp_receiver(&mut cfg).await;
    let udp = UdpLogger::from_config(&cfg).await.unwrap();
    udp.send(UdpLevel::Notice, "SIGHUP received, exiting").await;
    let line = udp_line(&socket).await;
    let (_, level, info) = parse_udp_line(&line);
    assert_eq!(
        (level.as_str(), info.as_str()),
        ("notice", "SIGHUP received, exiting")
    );
}

#[tokio::test]
async fn bus_task_uploads_to_a_directory_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let target = with_local_target(&mut cfg, dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let packager = Packager::new(cfg).await.unwrap();

    let out = handle_bus_task(&packager, seed_task("game", json!(11), &server.url))
        .await
        .unwrap();
    assert_eq!(out["code"], 201);
    let package = std::path::PathBuf::from(out["path"].as_str().unwrap());
    verify_v123(&package, "11");
    let uploaded = target.join("apk/game/game_11.apk");
    assert_eq!(
        std::fs::read(&uploaded).unwrap(),
        std::fs::read(&package).unwrap()
    );

    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("201"));
    assert_eq!(field(&notice, "message"), Some("打包已完成"));
    assert_eq!(field(&notice, "channel_id"), Some("11"));
    assert_eq!(field(&notice, "apk"), Some("game_11.apk"));
    assert!(field(&notice, "urls")
        .unwrap()
        .ends_with("apk/game/game_11.apk"));
}

#[tokio::test]
async fn debug_deletes_after_upload_and_does_not_notify() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    cfg.debug = true;
    let target = with_local_target(&mut cfg, dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    let out = handle_bus_task(&packager, seed_task("game", json!(2), &server.url))
        .await
        .unwrap();
    let package = std::path::PathBuf::from(out["path"].as_str().unwrap());
    assert!(!package.exists(), "local package deleted");
    verify_v123(&target.join("apk/game/game_2.apk"), "2");
    // The first notice attempt would have finished before the handler returned.
    assert!(
        server.requests.try_recv().is_err(),
        "no notice in debug mode"
    );
}

#[tokio::test]
async fn bus_notice_is_retried_until_success() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(500, "oops"), (200, "fail"), (200, "success")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    let mut events = packager.subscribe();
    handle_bus_task(&packager, seed_task("game", json!(1), &server.url))
        .await
        .unwrap();
    let delivered = wait_for(&mut events, "delivered notice", |e| {
        matches!(
            e,
            PackagerEvent::Notice {
                result: NoticeResult::Delivered,
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(delivered, PackagerEvent::Notice { attempt: 3, .. }),
        "{delivered:?}"
    );
    for _ in 0..3 {
        assert_eq!(field(&server.next().await, "errorCode"), Some("201"));
    }
    packager.close().await;
}

#[tokio::test]
async fn bus_notice_gives_up_after_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "nope")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    let mut events = packager.subscribe();
    handle_bus_task(&packager, seed_task("game", json!(1), &server.url))
        .await
        .unwrap();
    let gave_up = wait_for(&mut events, "notice given up", |e| {
        matches!(e, PackagerEvent::NoticeGaveUp { .. })
    })
    .await;
    assert!(matches!(
        gave_up,
        PackagerEvent::NoticeGaveUp { attempts: 3, .. }
    ));
    for _ in 0..3 {
        server.next().await;
    }
    packager.close().await;
    assert!(
        server.requests.try_recv().is_err(),
        "no attempt after the bound"
    );
}

#[tokio::test]
async fn notice_answered_miss_sends_a_waring_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let socket = udp_receiver(&mut cfg).await;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let server = notice_server(&[(200, "miss")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    let mut events = packager.subscribe();
    handle_bus_task(&packager, seed_task("game", json!(9), &server.url))
        .await
        .unwrap();
    let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(level, "waring");
    assert!(info.contains("filename=game channel_id=9"), "{info}");
    let event = wait_for(&mut events, "notice", |e| {
        matches!(e, PackagerEvent::Notice { .. })
    })
    .await;
    assert!(matches!(
        event,
        PackagerEvent::Notice {
            result: NoticeResult::Missing,
            ..
        }
    ));
}

#[tokio::test]
async fn failed_packaging_is_retryable_and_sends_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let socket = udp_receiver(&mut cfg).await;
    let packager = Packager::new(cfg).await.unwrap();
    let err = handle_bus_task(&packager, seed_task("absent", json!(4), ""))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(level, "error");
    assert!(
        info.contains("code=402") && info.contains("error_key=NO_APK"),
        "{info}"
    );
}

#[tokio::test]
async fn arg_miss_is_final_and_notified() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let mut server = notice_server(&[(200, "success")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    let body = json!({"filename": "game", "finish_notice_url": server.url});
    let err = handle_bus_task(&packager, body).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("401"));
    assert_eq!(field(&notice, "error_key"), Some("ARG_MISS"));
    let not_an_object = handle_bus_task(&packager, json!([1, 2])).await.unwrap_err();
    assert!(!not_an_object.is_retryable());
}

#[tokio::test]
async fn bus_task_uploads_to_s3() {
    let Some(moto) = moto_or_skip().await else {
        return;
    };
    let bucket = "taskbus-apk";
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    let target = StorageTarget::S3 {
        bucket: bucket.into(),
        endpoint: Some(moto.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        prefix: "channels".into(),
        allow_http: true,
        virtual_hosted: false,
    };
    cfg.storage_list = vec!["s3".into()];
    cfg.storage_config.insert("s3".into(), target);
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let packager = Packager::new(cfg).await.unwrap();
    let out = handle_bus_task(&packager, seed_task("game", json!(77), ""))
        .await
        .unwrap();
    assert_eq!(
        out["urls"],
        json!([format!("s3://{bucket}/channels/game/game_77.apk")])
    );

    let store = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&moto.endpoint)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let key = object_store::path::Path::from("channels/game/game_77.apk");
    let stored = store.get(&key).await.unwrap().bytes().await.unwrap();
    let local = std::fs::read(out["path"].as_str().unwrap()).unwrap();
    assert_eq!(stored.as_ref(), local.as_slice());
    verify_v123(std::path::Path::new(out["path"].as_str().unwrap()), "77");
}

/// `../..` up to `/`, then `path`: a relative spelling of an absolute path from the
/// test's working directory.
fn relative_from_cwd(path: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.strip_prefix("/").unwrap())
}

/// Issue 12: the notice's `path` was relative to the worker's working directory.
#[tokio::test]
async fn notice_path_is_absolute_whatever_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = bus_config(dir.path());
    cfg.sdk_game_path = relative_from_cwd(&dir.path().join("sdkgame"));
    assert!(cfg.sdk_game_path.is_relative());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let packager = Packager::new(cfg).await.unwrap();
    handle_bus_task(&packager, seed_task("game", json!(7), &server.url))
        .await
        .unwrap();
    let notice = server.next().await;
    let path = std::path::Path::new(field(&notice, "path").unwrap());
    assert!(path.is_absolute(), "{path:?}");
    assert_eq!(
        path.canonicalize().unwrap(),
        dir.path()
            .join("sdkgame/game/game_7.apk")
            .canonicalize()
            .unwrap()
    );
    packager.close().await;
}

/// Issue 12: bus mode sweeps too, but only temp files no live writer can hold.
#[tokio::test]
async fn bus_stage_sweeps_stale_temp_files_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bus_config(dir.path());
    let game_dir = cfg.sdk_game_path.join("game");
    std::fs::create_dir_all(&game_dir).unwrap();
    let stale = game_dir.join(".taskbus-apk..abcdefgh.tmp");
    let fresh = game_dir.join(".taskbus-apk..hgfedcba.tmp");
    for file in [&stale, &fresh] {
        std::fs::write(file, b"x").unwrap();
    }
    let old = std::time::SystemTime::now()
        - taskbus::packager::stage::BUS_SWEEP_AGE
        - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let stage =
        taskbus::packager::stage::PackageStage::new(&cfg, false, std::time::Duration::from_secs(1))
            .await
            .unwrap();
    assert!(!stale.exists(), "a stale temp file is swept");
    assert!(fresh.exists(), "a recent one may be a live write");
    drop(stage);
}
