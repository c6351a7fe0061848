//! The OpenAPI document against the running API, checked by `schemathesis` (PyPI):
//! generated requests to every operation, no 5xx, every status, content type and
//! body as the document says.

use std::process::Stdio;

use super::HttpBus;

/// The schemathesis command line, if it is installed.
fn schemathesis() -> Option<&'static str> {
    let found = std::process::Command::new("st")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("st");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("schemathesis (`st`) is required under CI: pip install schemathesis");
    }
    eprintln!("skipped: schemathesis (`st`) not found; pip install schemathesis");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let Some(st) = schemathesis() else {
        return;
    };
    let bus = HttpBus::start(|_| {}).await;
    // Every check but one: `positive_data_acceptance` expects every body the schema
    // allows to be accepted, while the verbs also check what a schema cannot say
    // (a cron expression, a known total task); those refusals are 400s with a
    // reason, checked by `status_code_conformance` like every other.
    let output = tokio::process::Command::new(st)
        .arg("run")
        .arg(bus.url("/api/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {}", bus.tokens.admin)])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "15", "--seed", "1"])
        .args(["--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("Tested: 22"),
        "not every operation was tested:\n{report}"
    );
    bus.stop().await;
}
