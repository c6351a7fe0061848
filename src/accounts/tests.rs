//! Unit tests of the accounts database.

use super::*;

#[test]
fn a_password_is_checked_and_a_wrong_one_refused() {
    let accounts = Accounts::in_memory().unwrap();
    accounts
        .add_user("ana", Role::Admin, "correct horse")
        .unwrap();
    let who = accounts.check_password("ana", "correct horse").unwrap();
    assert_eq!(who.role, Role::Admin);
    assert!(accounts.check_password("ana", "wrong horse").is_none());
    assert!(accounts.check_password("bob", "correct horse").is_none());
    assert!(matches!(
        accounts.add_user("ana", Role::Viewer, "another one"),
        Err(AccountsError::UserExists(_))
    ));
    assert!(matches!(
        accounts.add_user("eve", Role::Viewer, "short"),
        Err(AccountsError::ShortPassword)
    ));
    assert!(matches!(
        accounts.add_user("a b", Role::Viewer, "long enough"),
        Err(AccountsError::BadName(_))
    ));
}

#[test]
fn the_file_holds_no_password_and_no_token_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let accounts = Accounts::open(&path).unwrap();
    accounts
        .add_user("ana", Role::Admin, "correct horse")
        .unwrap();
    let secret = accounts.create_token("ci", Role::Operator).unwrap();
    drop(accounts);
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("correct horse"));
    assert!(!text.contains(&secret));
    let reopened = Accounts::open(&path).unwrap();
    assert_eq!(reopened.check_token(&secret).unwrap().role, Role::Operator);
}

#[test]
fn a_revoked_token_stops_working_at_once() {
    let accounts = Accounts::in_memory().unwrap();
    let secret = accounts.create_token("ci", Role::Viewer).unwrap();
    let who = accounts.check_token(&secret).unwrap();
    assert_eq!(who.name, "token:ci");
    assert!(accounts.list_tokens().unwrap()[0].last_used_ms.is_some());
    accounts.revoke_token("ci").unwrap();
    assert!(accounts.check_token(&secret).is_none());
    assert!(accounts.check_token("tbk_not-a-token").is_none());
}

#[test]
fn a_session_ends_with_logout_removal_and_a_new_password() {
    let accounts = Accounts::in_memory().unwrap();
    accounts
        .add_user("ana", Role::Operator, "correct horse")
        .unwrap();
    let first = accounts.open_session("ana", 1.0).unwrap();
    let live = accounts.session(&first.id).unwrap();
    assert_eq!(live.identity.role, Role::Operator);
    assert_eq!(live.csrf, first.csrf);
    accounts.close_session(&first.id).unwrap();
    assert!(accounts.session(&first.id).is_none());
    let second = accounts.open_session("ana", 1.0).unwrap();
    accounts.set_password("ana", "battery staple").unwrap();
    assert!(accounts.session(&second.id).is_none());
    let third = accounts.open_session("ana", 1.0).unwrap();
    let expired = accounts.open_session("ana", -1.0).unwrap();
    assert!(accounts.session(&expired.id).is_none());
    accounts.remove_user("ana").unwrap();
    assert!(accounts.session(&third.id).is_none());
    assert!(matches!(
        accounts.open_session("ana", 1.0),
        Err(AccountsError::NoSuchUser(_))
    ));
}

#[test]
fn the_audit_log_keeps_the_newest_lines() {
    let accounts = Accounts::in_memory().unwrap();
    for i in 0..5 {
        accounts
            .audit("ana", "put_task", &format!("n={i}"), 3)
            .unwrap();
    }
    let lines = accounts.audit_lines(10, None).unwrap();
    let details: Vec<_> = lines.iter().map(|l| l.detail.as_str()).collect();
    assert_eq!(details, ["n=4", "n=3", "n=2"]);
    let older = accounts.audit_lines(10, Some(lines[0].id)).unwrap();
    assert_eq!(older.len(), 2);
}

#[test]
fn roles_are_ordered_and_each_verb_needs_one() {
    use crate::protocol::client::ClientRequest;
    assert!(Role::Admin.allows(Role::Operator));
    assert!(!Role::Viewer.allows(Role::Worker));
    assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
    assert!("root".parse::<Role>().is_err());
    assert_eq!(roles::role_for(&ClientRequest::Stats), Role::Viewer);
    let get = ClientRequest::GetTask {
        topic: "t".into(),
        count: 1,
    };
    assert_eq!(roles::role_for(&get), Role::Worker);
    assert!(roles::changes_state(&ClientRequest::DeleteTask {
        id: "x".into(),
        by: None,
    }));
    assert!(!roles::changes_state(&ClientRequest::Stats));
}
