//! Packager tests on the real Redis (127.0.0.1:6379; keys under a unique prefix per
//! test): intake in the seed's format, resume after a crash, the retry queue and its
//! `packet_timeout`, upload records, the notice queue, cancellation; the seed's Python
//! notation, the rejected list, no retry of hopeless statuses, notices beside packaging,
//! the temp-file sweep and the instance lock; and (module
//! `packager::redis_stage`) the intake inside the `package` stage and the `taskbus-worker` binary.

use std::sync::Arc;
use std::time::Duration;

use super::support::*;
use redis::AsyncCommands;
use serde_json::{json, Value};
use taskbus::packager::intake::{RejectedRecord, UploadRecord};
use taskbus::packager::{
    run_with, NoticeResult, PackageStatus, PackageTask, Packager, PackagerConfig, PackagerEvent,
    StorageTarget,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    events: broadcast::Receiver<PackagerEvent>,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

async fn start(cfg: PackagerConfig) -> Running {
    let packager = Arc::new(Packager::new(cfg).await.unwrap());
    let events = packager.subscribe();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_with(packager, shutdown.clone()));
    Running {
        events,
        shutdown,
        handle,
    }
}

impl Running {
    /// Cancels and waits until every in-flight item is handled.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("run stops after cancel")
            .unwrap()
            .unwrap();
    }
}

async fn list(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    conn.lrange(key, 0, -1).await.unwrap()
}

async fn assert_lists_empty(conn: &mut redis::aio::MultiplexedConnection, cfg: &PackagerConfig) {
    for key in [
        cfg.redis_key.clone(),
        cfg.redis_retry_key.clone(),
        cfg.processing_key(),
        cfg.upload_file_schedule_key.clone(),
        cfg.upload_processing_key(),
        cfg.notice_key.clone(),
        cfg.notice_processing_key(),
    ] {
        assert_eq!(list(conn, &key).await, Vec::<String>::new(), "list {key}");
    }
}

fn local_target(cfg: &mut PackagerConfig, dir: &std::path::Path) -> std::path::PathBuf {
    let target = dir.join("uploaded");
    cfg.storage_list = vec!["disk".into()];
    cfg.storage_config.insert(
        "disk".into(),
        StorageTarget::Local {
            path: target.clone(),
            prefix: String::new(),
        },
    );
    target
}

fn is_outcome(event: &PackagerEvent, status: PackageStatus) -> bool {
    matches!(event, PackagerEvent::Outcome { status: s, .. } if *s == status)
}

#[tokio::test]
async fn seed_task_is_packaged_uploaded_and_notified() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let target = local_target(&mut cfg, dir.path());
    let Some(_) = write_mother(&cfg, "fuhaoniuniu") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let task = seed_task("fuhaoniuniu", json!(11), &server.url);
    let _: () = conn.rpush(&cfg.redis_key, task.to_string()).await.unwrap();

    let mut run = start(cfg.clone()).await;
    wait_for(&mut run.events, "delivered notice", |e| {
        matches!(
            e,
            PackagerEvent::Notice {
                result: NoticeResult::Delivered,
                ..
            }
        )
    })
    .await;
    run.stop().await;

    let package = cfg.sdk_game_path.join("fuhaoniuniu/fuhaoniuniu_11.apk");
    let uploaded = target.join("fuhaoniuniu/fuhaoniuniu_11.apk");
    assert_eq!(
        std::fs::read(&uploaded).unwrap(),
        std::fs::read(&package).unwrap()
    );
    verify_v123(&uploaded, "11");
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("201"));
    assert_eq!(field(&notice, "filename"), Some("fuhaoniuniu"));
    assert_eq!(field(&notice, "channel_version"), Some("1.0"));
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn task_left_in_schedule_key_is_resumed() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    // What a worker killed mid-package leaves behind.
    let task = seed_task("game", json!("c1"), "");
    let _: () = conn
        .rpush(cfg.processing_key(), task.to_string())
        .await
        .unwrap();

    let mut run = start(cfg.clone()).await;
    let resumed = wait_for(
        &mut run.events,
        "resume",
        |e| matches!(e, PackagerEvent::Resumed { list, .. } if *list == cfg.redis_key),
    )
    .await;
    assert!(
        matches!(resumed, PackagerEvent::Resumed { count: 1, .. }),
        "{resumed:?}"
    );
    wait_for(&mut run.events, "package", |e| {
        is_outcome(e, PackageStatus::Complete)
    })
    .await;
    run.stop().await;
    verify_v123(&cfg.sdk_game_path.join("game/game_c1.apk"), "c1");
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn failure_is_pushed_to_the_retry_key_in_the_seed_format() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.log_post_time = 3600;
    let socket = udp_receiver(&mut cfg).await;
    let task = seed_task("absent", json!(12), "");
    let _: () = conn.rpush(&cfg.redis_key, task.to_string()).await.unwrap();

    let mut run = start(cfg.clone()).await;
    wait_for(&mut run.events, "retry queued", |e| {
        matches!(e, PackagerEvent::RetryQueued { .. })
    })
    .await;
    let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(level, "error");
    assert!(info.contains("error_key=NO_APK"), "{info}");
    run.stop().await;

    let retry = list(&mut conn, &cfg.redis_retry_key).await;
    assert_eq!(retry.len(), 1);
    let pushed: Value = serde_json::from_str(&retry[0]).unwrap();
    let now = chrono::Utc::now().timestamp();
    let timeout = pushed["extend"]["packet_timeout"].as_i64().unwrap();
    assert!(
        (now + 3590..=now + 3600).contains(&timeout),
        "{timeout} vs {now}"
    );
    assert_eq!(pushed["extend"]["error_key"], "NO_APK");
    assert_eq!(pushed["extend"]["channel_version"], "1.0");
    assert_eq!(pushed["channel_id"], json!(12));
    assert_eq!(pushed["producer_note"], "kept as is");
    assert_eq!(list(&mut conn, &cfg.processing_key()).await.len(), 0);
    let _: () = conn.del(&cfg.redis_retry_key).await.unwrap();
}

#[tokio::test]
async fn retry_is_taken_only_after_packet_timeout() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let Some(_) = write_mother(&cfg, "early") else {
        return;
    };
    let Some(_) = write_mother(&cfg, "late") else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let late = PackageTask::from_value(seed_task("late", json!(1), ""))
        .unwrap()
        .with_failure(now + 3600, "NO_APK")
        .to_json();
    let early = PackageTask::from_value(seed_task("early", json!(1), ""))
        .unwrap()
        .with_failure(now - 1, "NO_APK")
        .to_json();
    let _: () = conn.rpush(&cfg.redis_retry_key, &late).await.unwrap();
    let _: () = conn.rpush(&cfg.redis_retry_key, &early).await.unwrap();

    let mut run = start(cfg.clone()).await;
    wait_for(&mut run.events, "early retry", |e| {
        is_outcome(e, PackageStatus::Complete)
    })
    .await;
    let deferred = wait_for(
        &mut run.events,
        "deferral",
        |e| matches!(e, PackagerEvent::Deferred { list, .. } if *list == cfg.redis_retry_key),
    )
    .await;
    assert!(
        matches!(deferred, PackagerEvent::Deferred { due_ms, .. } if due_ms == (now + 3600) * 1000)
    );
    run.stop().await;

    verify_v123(&cfg.sdk_game_path.join("early/early_1.apk"), "1");
    assert!(
        !cfg.sdk_game_path.join("late/late_1.apk").exists(),
        "not before packet_timeout"
    );
    assert_eq!(list(&mut conn, &cfg.redis_retry_key).await, vec![late]);
    let _: () = conn.del(&cfg.redis_retry_key).await.unwrap();
}

#[tokio::test]
async fn retry_left_in_schedule_key_goes_back_to_the_retry_key() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.retry_packet_count = 0;
    let Some(_) = write_mother(&cfg, "late") else {
        return;
    };
    // What a retry worker stopped between its pop and putting a not-due task back
    // leaves behind: it must not run before its packet_timeout.
    let now = chrono::Utc::now().timestamp();
    let late = PackageTask::from_value(seed_task("late", json!(1), ""))
        .unwrap()
        .with_failure(now + 3600, "NO_APK")
        .to_json();
    let _: () = conn.rpush(cfg.processing_key(), &late).await.unwrap();

    let mut run = start(cfg.clone()).await;
    let resumed = wait_for(
        &mut run.events,
        "resume",
        |e| matches!(e, PackagerEvent::Resumed { list, .. } if *list == cfg.redis_retry_key),
    )
    .await;
    assert!(
        matches!(resumed, PackagerEvent::Resumed { count: 1, .. }),
        "{resumed:?}"
    );
    run.stop().await;
    assert_eq!(list(&mut conn, &cfg.redis_retry_key).await, vec![late]);
    assert!(!cfg.sdk_game_path.join("late/late_1.apk").exists());
    assert_eq!(list(&mut conn, &cfg.processing_key()).await.len(), 0);
    let _: () = conn.del(&cfg.redis_retry_key).await.unwrap();
}

#[tokio::test]
async fn exhausted_retries_give_up_and_notify_the_failure() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.packet_retry_max = 1;
    let mut server = notice_server(&[(200, "success")]).await;
    let task = PackageTask::from_value(seed_task("absent", json!(5), &server.url))
        .unwrap()
        .with_failure(0, "NO_APK");
    let _: () = conn
        .rpush(&cfg.redis_retry_key, task.to_json())
        .await
        .unwrap();

    let mut run = start(cfg.clone()).await;
    let gave_up = wait_for(&mut run.events, "give up", |e| {
        matches!(e, PackagerEvent::GaveUp { .. })
    })
    .await;
    assert!(matches!(
        gave_up,
        PackagerEvent::GaveUp {
            status: PackageStatus::NoApk,
            ..
        }
    ));
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("402"));
    assert_eq!(field(&notice, "message"), Some("游戏母包不存在"));
    run.stop().await;
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn notice_queue_retries_until_success() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(503, "busy"), (200, "error"), (200, "success")]).await;
    let _: () = conn
        .rpush(
            &cfg.redis_key,
            seed_task("game", json!(3), &server.url).to_string(),
        )
        .await
        .unwrap();

    let mut run = start(cfg.clone()).await;
    let delivered = wait_for(&mut run.events, "delivered notice", |e| {
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
    run.stop().await;
    for _ in 0..3 {
        assert_eq!(field(&server.next().await, "channel_id"), Some("3"));
    }
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn notice_queue_gives_up_after_its_bound() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "fail")]).await;
    let _: () = conn
        .rpush(
            &cfg.redis_key,
            seed_task("game", json!(3), &server.url).to_string(),
        )
        .await
        .unwrap();

    let mut run = start(cfg.clone()).await;
    let gave_up = wait_for(&mut run.events, "notice given up", |e| {
        matches!(e, PackagerEvent::NoticeGaveUp { .. })
    })
    .await;
    assert!(matches!(
        gave_up,
        PackagerEvent::NoticeGaveUp { attempts: 3, .. }
    ));
    run.stop().await;
    for _ in 0..3 {
        server.next().await;
    }
    assert!(
        server.requests.try_recv().is_err(),
        "no attempt after the bound"
    );
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn upload_left_in_progress_is_resumed_and_notified() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let target = local_target(&mut cfg, dir.path());
    let mut server = notice_server(&[(200, "success")]).await;
    // A package built by the previous run.
    let Some(built) = write_mother(&cfg, "built") else {
        return;
    };
    let package = dir.path().join("built/game_8.apk");
    std::fs::create_dir_all(package.parent().unwrap()).unwrap();
    taskbus::apk::write_channel(
        &built,
        &package,
        &taskbus::apk::ChannelInfo::new("8", "1.0"),
        &taskbus::apk::WriteOptions::default(),
    )
    .unwrap();
    // What a worker killed mid-upload leaves behind.
    let record = UploadRecord {
        task: PackageTask::from_value(seed_task("game", json!(8), &server.url)).unwrap(),
        path: package.clone(),
        attempts: 0,
        due_ms: 0,
        done: Vec::new(),
    };
    let raw = serde_json::to_string(&record).unwrap();
    let _: () = conn.rpush(cfg.upload_processing_key(), raw).await.unwrap();

    let mut run = start(cfg.clone()).await;
    wait_for(&mut run.events, "upload", |e| {
        matches!(e, PackagerEvent::Uploaded { .. })
    })
    .await;
    assert_eq!(field(&server.next().await, "apk"), Some("game_8.apk"));
    run.stop().await;
    assert_eq!(
        std::fs::read(target.join("game/game_8.apk")).unwrap(),
        std::fs::read(&package).unwrap()
    );
    verify_v123(&target.join("game/game_8.apk"), "8");
    assert_lists_empty(&mut conn, &cfg).await;
}

#[tokio::test]
async fn cancel_ends_the_blocking_wait() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.redis_sleep_time = 60.0;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut run = start(cfg.clone()).await;
    // Once one task is through, every other worker sits in its 60 s blocking pop.
    let _: () = conn
        .rpush(&cfg.redis_key, seed_task("game", json!(1), "").to_string())
        .await
        .unwrap();
    wait_for(&mut run.events, "package", |e| {
        is_outcome(e, PackageStatus::Complete)
    })
    .await;
    let started = std::time::Instant::now();
    run.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

fn is_delivered(event: &PackagerEvent) -> bool {
    matches!(
        event,
        PackagerEvent::Notice {
            result: NoticeResult::Delivered,
            ..
        }
    )
}

/// Issue 12: a task in the seed documents' own notation (a Python dict) was dropped.
#[tokio::test]
async fn python_literal_task_of_the_seed_documents_is_packaged() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let Some(_) = write_mother(&cfg, "fuhaoniuniu") else {
        return;
    };
    // 'enforcement': False keeps a package that exists (HAVEN_SUB): only a reader of
    // the Python notation sees the False.
    let kept = cfg.sdk_game_path.join("fuhaoniuniu/fuhaoniuniu_10.apk");
    std::fs::write(&kept, b"built before").unwrap();
    let mut server = notice_server(&[(200, "success")]).await;
    for (channel, enforcement) in [(10, "False"), (11, "True")] {
        let task = format!(
            "{{'filename': 'fuhaoniuniu', 'channel_id': {channel}, \
             'extend': {{'channel_version': '1.0', 'enforcement': {enforcement}, 'note': None}}, \
             'finish_notice_url': '{}'}}",
            server.url
        );
        let _: () = conn.rpush(&cfg.redis_key, task).await.unwrap();
    }

    let run = start(cfg.clone()).await;
    let mut codes = Vec::new();
    for _ in 0..2 {
        let notice = server.next().await;
        codes.push((
            field(&notice, "channel_id").unwrap().to_string(),
            field(&notice, "errorCode").unwrap().to_string(),
        ));
    }
    codes.sort();
    assert_eq!(
        codes,
        [("10".into(), "403".into()), ("11".into(), "201".into())]
    );
    run.stop().await;
    assert_eq!(std::fs::read(&kept).unwrap(), b"built before");
    verify_v123(
        &cfg.sdk_game_path.join("fuhaoniuniu/fuhaoniuniu_11.apk"),
        "11",
    );
    assert_lists_empty(&mut conn, &cfg).await;
    assert!(list(&mut conn, &cfg.rejected_key()).await.is_empty());
}

/// Issue 12: an unreadable item vanished with only a log line.
#[tokio::test]
async fn unreadable_items_go_to_the_rejected_list_with_a_401_notice() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let mut server = notice_server(&[(200, "success")]).await;
    let url = &server.url;
    let items = [
        // Broken Python, but its notice URL can be read.
        format!("{{'filename': 'g', 'finish_notice_url': '{url}', 'channel_id': }}"),
        // JSON, but not an object; nobody to tell.
        "[1, 2]".to_string(),
        // A dict without channel_id and channel_version.
        format!("{{'filename': 'g', 'extend': {{}}, 'finish_notice_url': '{url}'}}"),
    ];
    for item in &items {
        let _: () = conn.rpush(&cfg.redis_key, item).await.unwrap();
    }

    let mut run = start(cfg.clone()).await;
    let mut noticed = Vec::new();
    for _ in 0..items.len() {
        match wait_for(&mut run.events, "rejected", |e| {
            matches!(e, PackagerEvent::Rejected { .. })
        })
        .await
        {
            PackagerEvent::Rejected { noticed: n, .. } => noticed.push(n),
            other => unreachable!("{other:?}"),
        }
    }
    noticed.sort();
    assert_eq!(noticed, [false, true, true]);
    for _ in 0..2 {
        let notice = server.next().await;
        assert_eq!(field(&notice, "errorCode"), Some("401"));
        assert_eq!(field(&notice, "error_key"), Some("ARG_MISS"));
    }
    run.stop().await;

    let rejected = list(&mut conn, &cfg.rejected_key()).await;
    let records: Vec<RejectedRecord> = rejected
        .iter()
        .map(|raw| serde_json::from_str(raw).unwrap())
        .collect();
    let mut stored: Vec<&str> = records.iter().map(|r| r.item.as_str()).collect();
    stored.sort();
    let mut pushed: Vec<&str> = items.iter().map(String::as_str).collect();
    pushed.sort();
    assert_eq!(stored, pushed, "each item kept exactly as pushed");
    for record in &records {
        assert!(record.reason.starts_with("401 ARG_MISS: "), "{record:?}");
        assert_eq!(record.list, cfg.processing_key());
    }
    let reason_of = |item: &str| &records.iter().find(|r| r.item == item).unwrap().reason;
    assert!(
        reason_of(&items[0]).contains("python literal"),
        "{records:?}"
    );
    assert!(reason_of(&items[1]).contains("[1,2]"), "{records:?}");
    assert!(reason_of(&items[2]).contains("channel_id"), "{records:?}");
    assert_lists_empty(&mut conn, &cfg).await;
    let _: () = conn.del(cfg.rejected_key()).await.unwrap();
}

/// Issue 12: WRONG_APK can never succeed, yet it was retried `packet_retry_max` times,
/// `log_post_time` apart, before anyone was told.
#[tokio::test]
async fn wrong_apk_is_given_up_at_once_and_notified() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.log_post_time = 3600;
    let Some(_) = write_mother_variant(&cfg, "game", "mother-unsigned.apk") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let task = seed_task("game", json!(6), &server.url);
    let _: () = conn.rpush(&cfg.redis_key, task.to_string()).await.unwrap();

    let mut run = start(cfg.clone()).await;
    let first = wait_for(&mut run.events, "first outcome", |e| {
        matches!(
            e,
            PackagerEvent::GaveUp { .. } | PackagerEvent::RetryQueued { .. }
        )
    })
    .await;
    assert!(
        matches!(
            first,
            PackagerEvent::GaveUp {
                status: PackageStatus::WrongApk,
                ..
            }
        ),
        "{first:?}"
    );
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("404"));
    assert_eq!(field(&notice, "error_key"), Some("WRONG_APK"));
    run.stop().await;
    assert_lists_empty(&mut conn, &cfg).await;
}

/// Issue 12: the first notice was sent by the packaging worker, so a slow receiver
/// held up packaging. Here one notice never gets an answer; the next task is still
/// packaged and notified.
#[tokio::test]
async fn a_hanging_notice_holds_up_neither_packaging_nor_other_notices() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    (cfg.packet_count, cfg.message_count, cfg.notice_timeout) = (1, 1, 2.0);
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(HANG, ""), (200, "success")]).await;
    for channel in [1, 2] {
        let task = seed_task("game", json!(channel), &server.url);
        let _: () = conn.rpush(&cfg.redis_key, task.to_string()).await.unwrap();
    }
    let mut run = start(cfg.clone()).await;
    let hanging = field(&server.next().await, "channel_id")
        .unwrap()
        .to_string();
    let answered = field(&server.next().await, "channel_id")
        .unwrap()
        .to_string();
    assert_ne!(hanging, answered);
    wait_for(&mut run.events, "the other notice delivered", is_delivered).await;
    run.stop().await;
    verify_v123(&cfg.sdk_game_path.join("game/game_1.apk"), "1");
    verify_v123(&cfg.sdk_game_path.join("game/game_2.apk"), "2");
    // The hanging notice timed out at stop and waits for its retry.
    assert_eq!(list(&mut conn, &cfg.notice_key).await.len(), 1);
    let _: () = conn.del(&cfg.notice_key).await.unwrap();
    assert_lists_empty(&mut conn, &cfg).await;
}

/// Issue 12: a SIGKILL left `.taskbus-apk-XXXXXX.tmp` files that no restart removed.
#[tokio::test]
async fn temp_files_a_kill_left_are_swept_at_start() {
    let Some(_conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.tempfile_dir = Some(dir.path().join("scratch"));
    let game_dir = cfg.sdk_game_path.join("game");
    let scratch = dir.path().join("scratch");
    for d in [&game_dir, &scratch] {
        std::fs::create_dir_all(d).unwrap();
    }
    let left = [
        game_dir.join(".taskbus-apk..abcdefgh.tmp"),
        game_dir.join(".taskbus-apk-Ab12Cd.tmp"),
        scratch.join(".taskbus-apk..QWERTYUI.tmp"),
    ];
    let kept = [
        game_dir.join(".taskbus-apk.other.abcdefgh.tmp"),
        game_dir.join("game_1.apk"),
        scratch.join("notes.tmp"),
    ];
    for file in left.iter().chain(&kept) {
        std::fs::write(file, b"x").unwrap();
    }
    let mut run = start(cfg.clone()).await;
    let swept = wait_for(&mut run.events, "sweep", |e| {
        matches!(e, PackagerEvent::Swept { .. })
    })
    .await;
    run.stop().await;
    let PackagerEvent::Swept { mut removed } = swept else {
        unreachable!()
    };
    removed.sort();
    let mut expected = left.to_vec();
    expected.sort();
    assert_eq!(removed, expected);
    assert!(left.iter().all(|f| !f.exists()));
    assert!(kept.iter().all(|f| f.exists()));
}

/// Issue 12: two processes without `instance` took each other's in-flight items.
#[tokio::test]
async fn a_second_process_of_one_instance_is_refused_naming_the_lock_key() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let is_started = |e: &PackagerEvent| matches!(e, PackagerEvent::Resumed { list, .. } if *list == cfg.notice_key);
    let mut first = start(cfg.clone()).await;
    wait_for(&mut first.events, "first started", is_started).await;

    let second = Arc::new(Packager::new(cfg.clone()).await.unwrap());
    let refused = run_with(second, CancellationToken::new()).await;
    let message = format!("{:#}", refused.expect_err("a second holder is refused"));
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains(&cfg.instance_lock_key()), "{message}");

    // Another instance on the same keys runs beside it.
    let other_cfg = PackagerConfig {
        instance: "other".into(),
        ..cfg.clone()
    };
    let mut other = start(other_cfg.clone()).await;
    let other_started = |e: &PackagerEvent| matches!(e, PackagerEvent::Resumed { list, .. } if *list == other_cfg.notice_key);
    wait_for(&mut other.events, "other instance started", other_started).await;
    other.stop().await;

    first.stop().await;
    let held: bool = conn.exists(cfg.instance_lock_key()).await.unwrap();
    assert!(!held, "the lock is released at stop");
    let mut again = start(cfg.clone()).await;
    wait_for(&mut again.events, "started again", is_started).await;
    again.stop().await;
}
