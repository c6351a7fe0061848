//! `taskbus crawl URL --follow REGEX --field title=css:title --out rows.jsonl`
//! through the binary, against a real HTTP server.

use std::process::Command;

use serde_json::Value;

use super::spider_site::SpiderSite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taskbus_crawl_follows_links_into_a_feed_and_exits_zero() {
    let site = SpiderSite::start("User-agent: *\nDisallow: /private\n").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows.jsonl");
    let url = site.url("/");
    let out_arg = out.display().to_string();
    let cwd = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_taskbus"))
            .args(["crawl", &url, "--follow", "/(a|deep)", "--depth", "2"])
            .args([
                "--field",
                "title=css:title",
                "--out",
                &out_arg,
                "--max-secs",
                "60",
            ])
            .current_dir(cwd)
            .env("TASKBUS__HTTP__LISTEN", "127.0.0.1:0")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let rows: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut titles: Vec<&str> = rows.iter().map(|r| r["title"].as_str().unwrap()).collect();
    titles.sort();
    assert_eq!(titles, ["A", "Deep 1", "Deep 2", "Home"], "{stderr}");
    assert!(stderr.contains("rows parsed: 4, stored: 4"), "{stderr}");
    assert_eq!(site.hits.count("/deep/3"), 0);
}
