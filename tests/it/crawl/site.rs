//! The example site itself: it serves until cancelled, answers the seed's search API
//! shape (and refuses incomplete forms), and its counters drain back to zero.

use std::time::Duration;

use serde_json::json;
use taskbus::crawl::site::{bind_local, serve};
use taskbus::crawl::{Content, Fetcher, FetcherConfig, UrlEntry};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn serve_stops_when_cancelled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, shutdown.clone()));
    let fetcher = Fetcher::new(&FetcherConfig::default()).unwrap();
    let page = fetcher
        .fetch_url(
            &UrlEntry::get(format!("http://{addr}/list/1"), "t"),
            &Content::default(),
        )
        .await;
    assert!(
        page.sucess && page.html.contains("li class=\"item\""),
        "{page:?}"
    );
    drop(fetcher);
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server).await;
    stopped.expect("server stops").unwrap().unwrap();
}

#[tokio::test]
async fn search_api_refuses_incomplete_forms_and_counters_drain() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&FetcherConfig::default()).unwrap();
    let mut entry = UrlEntry::get(site.url("/ware/searchList.action"), "jd_app");
    entry.method = "POST".into();
    entry.data = json!({"categoryId": "9987", "c1": "830", "c2": "866", "page": 1, "sort": "", "_format_": "json"});
    let result = fetcher.fetch_url(&entry, &Content::default()).await;
    assert_eq!(result.status, Some(400));
    assert!(
        result.html.contains("missing field stock"),
        "{}",
        result.html
    );
    let missing = fetcher
        .fetch_url(
            &UrlEntry::get(site.url("/list/99"), "t"),
            &Content::default(),
        )
        .await;
    assert_eq!((missing.status, missing.sucess), (Some(404), false));
    assert_eq!(site.stats.in_flight(), 0);
    // The two pages and the site's robots.txt (a 404: every url allowed).
    assert_eq!(site.stats.requests(), 3);
    assert_eq!(site.stats.hits("/robots.txt"), 1);
    assert_eq!(site.stats.hits("/ware/searchList.action"), 1);
}
