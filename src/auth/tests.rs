//! The gate's decisions, without a broker.

use super::*;
use serde_json::json;

fn size() -> ClientRequest {
    ClientRequest::GetSize { topic: "t".into() }
}

fn delete() -> ClientRequest {
    ClientRequest::DeleteTask {
        id: "x".into(),
        by: None,
    }
}

fn body(value: serde_json::Value, format: Format) -> Vec<u8> {
    crate::protocol::encode(format, &value).to_vec()
}

fn guard_with(dir: &tempfile::TempDir, secret: &str) -> (Guard, Accounts) {
    let file = dir.path().join("accounts.sqlite3");
    let config = AuthConfig {
        required: true,
        worker_secret: secret.into(),
        ..AuthConfig::default()
    };
    let guard = Guard::new(&config, &file);
    (guard, Accounts::open(&file).unwrap())
}

#[test]
fn the_token_is_read_off_either_format() {
    for format in [Format::Json, Format::MsgPack] {
        let with = body(
            json!({"type": "get_size", "token": "tbk_x", "topic": "t"}),
            format,
        );
        assert_eq!(
            carried_token(&with, format).unwrap().as_deref(),
            Some("tbk_x")
        );
        let without = body(json!({"type": "get_size", "topic": "t"}), format);
        assert_eq!(carried_token(&without, format).unwrap(), None);
        let number = body(json!({"type": "get_size", "token": 5}), format);
        assert_eq!(
            carried_token(&number, format).unwrap_err().code,
            UNAUTHORIZED
        );
    }
}

#[test]
fn an_open_guard_reads_nothing() {
    let mut guard = Guard::open();
    let now = Instant::now();
    assert!(guard
        .check_request(b"not even json", Format::Json, &delete(), now)
        .is_ok());
    assert!(guard.check_ready(b"\xc1", now).is_ok());
}

#[test]
fn roles_decide_and_revocation_counts_after_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (mut guard, accounts) = guard_with(&dir, "");
    let viewer = accounts.create_token("looker", Role::Viewer).unwrap();
    let now = Instant::now();
    let request = |token: &str| body(json!({"type": "x", "token": token}), Format::Json);
    let viewing = request(&viewer);
    assert!(guard
        .check_request(&viewing, Format::Json, &size(), now)
        .is_ok());
    let refused = guard
        .check_request(&viewing, Format::Json, &delete(), now)
        .unwrap_err();
    assert_eq!(refused.code, FORBIDDEN, "{refused}");
    assert!(refused.message.contains("delete_task"), "{refused}");
    let missing = body(json!({"type": "get_size"}), Format::Json);
    let refused = guard.check_request(&missing, Format::Json, &size(), now);
    assert_eq!(refused.unwrap_err().code, UNAUTHORIZED);
    accounts.revoke_token("looker").unwrap();
    let later = now + CACHE_FOR;
    let refused = guard.check_request(&viewing, Format::Json, &size(), later);
    assert_eq!(refused.unwrap_err().code, UNAUTHORIZED);
}

#[test]
fn the_worker_secret_is_a_worker_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a-shared-secret-of-workers";
    let (mut guard, _accounts) = guard_with(&dir, secret);
    let now = Instant::now();
    let ready = body(json!({"type": "ready", "token": secret}), Format::MsgPack);
    assert!(guard.check_ready(&ready, now).is_ok());
    let wrong = body(
        json!({"type": "ready", "token": "a-shared-secret-of-worker"}),
        Format::MsgPack,
    );
    assert_eq!(
        guard.check_ready(&wrong, now).unwrap_err().code,
        UNAUTHORIZED
    );
    let deleting = guard.check_request(&ready, Format::MsgPack, &delete(), now);
    assert_eq!(deleting.unwrap_err().code, FORBIDDEN);
}
