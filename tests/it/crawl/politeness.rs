//! The fetcher's retries (backoff, Retry-After), politeness limits (per-domain and
//! global concurrency, per-domain delay, bounded host state) and `bulk`, against the
//! example site on 127.0.0.1:0, whose counters record what the fetcher did.

use std::time::Duration;

use taskbus::crawl::site::{bind_local, LocalSite};
use taskbus::crawl::{Fetcher, FetcherConfig, UrlEntry};

use super::support::{content, fast_config, fetch, fetch_all};

fn gaps(site: &LocalSite, path: &str) -> Vec<Duration> {
    let arrivals = site.stats.arrivals(path);
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn flaky_page_succeeds_on_the_third_try_after_growing_backoff() {
    let (_, site) = bind_local().await;
    let config = fast_config();
    let fetcher = Fetcher::new(&config).unwrap();
    let result = fetch(
        &fetcher,
        UrlEntry::get(site.url("/flaky/a"), "t"),
        &content("", 3),
    )
    .await;
    assert!(result.sucess, "{:?}", result.error);
    assert_eq!((result.retry, result.status), (2, Some(200)));
    assert_eq!(site.stats.hits("/flaky/a"), 3);
    let gaps = gaps(&site, "/flaky/a");
    let base = Duration::from_millis(config.backoff_base_ms);
    assert!(gaps[0] >= base / 2, "first backoff {:?}", gaps[0]);
    assert!(gaps[1] >= base, "second backoff doubles: {:?}", gaps[1]);
}

#[tokio::test]
async fn a_page_that_never_succeeds_is_a_failed_result_after_max_retry() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let result = fetch(
        &fetcher,
        UrlEntry::get(site.url("/fail/x"), "plat"),
        &content("", 2),
    )
    .await;
    assert!(!result.sucess);
    assert_eq!((result.retry, result.status), (2, Some(500)));
    assert_eq!(result.error.as_deref(), Some("http status 500"));
    assert_eq!(result.platform.as_deref(), Some("plat"));
    assert_eq!(site.stats.hits("/fail/x"), 3);

    let once = fetch(
        &fetcher,
        UrlEntry::get(site.url("/flaky/once"), "t"),
        &content("", 0),
    )
    .await;
    assert!(!once.sucess && once.retry == 0 && site.stats.hits("/flaky/once") == 1);
}

#[tokio::test]
async fn retry_after_is_honoured_and_capped() {
    let (_, site) = bind_local().await;
    let config = FetcherConfig {
        backoff_base_ms: 5,
        retry_after_max_ms: 300,
        ..FetcherConfig::default()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let one_retry = content("", 1);
    let honoured = fetch(
        &fetcher,
        UrlEntry::get(site.url("/limited/a?after=1"), "t"),
        &one_retry,
    );
    let capped = fetch(
        &fetcher,
        UrlEntry::get(site.url("/limited/b?after=3600"), "t"),
        &one_retry,
    );
    let uncapped_fetcher = Fetcher::new(&FetcherConfig {
        retry_after_max_ms: 5_000,
        ..config.clone()
    })
    .unwrap();
    let honoured_long = fetch(
        &uncapped_fetcher,
        UrlEntry::get(site.url("/limited/c?after=1"), "t"),
        &one_retry,
    );
    let (honoured, capped, honoured_long) = tokio::join!(honoured, capped, honoured_long);
    for result in [&honoured, &capped, &honoured_long] {
        assert!(result.sucess && result.retry == 1, "{result:?}");
    }
    let capped_gap = gaps(&site, "/limited/b")[0];
    assert!(
        capped_gap >= Duration::from_millis(290) && capped_gap < Duration::from_secs(3),
        "{capped_gap:?}"
    );
    let long_gap = gaps(&site, "/limited/c")[0];
    assert!(
        long_gap >= Duration::from_millis(950),
        "Retry-After: 1 waited {long_gap:?}"
    );
    assert!(gaps(&site, "/limited/a")[0] >= Duration::from_millis(290));
}

fn slow_urls(site: &LocalSite, count: usize, ms: u64) -> Vec<String> {
    (0..count)
        .flat_map(|i| {
            let path = format!("/slow/{i}?ms={ms}");
            [site.url(&path), site.url_localhost(&path)]
        })
        .collect()
}

#[tokio::test]
async fn per_domain_concurrency_is_honoured() {
    let (addr, site) = bind_local().await;
    let config = FetcherConfig {
        per_domain_concurrency: 2,
        global_concurrency: 16,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let tasks = fetch_all(&fetcher, slow_urls(&site, 6, 120), content("", 0)).await;
    assert!(
        tasks.iter().all(|t| t.body.result[0].sucess),
        "{:?}",
        tasks[0].body.result
    );
    assert_eq!(site.stats.max_in_flight_for_host(&addr.to_string()), 2);
    assert_eq!(
        site.stats
            .max_in_flight_for_host(&format!("localhost:{}", addr.port())),
        2
    );
    assert!(site.stats.max_in_flight() <= 4);
}

#[tokio::test]
async fn global_concurrency_is_honoured_across_hosts() {
    let (_, site) = bind_local().await;
    let config = FetcherConfig {
        per_domain_concurrency: 8,
        global_concurrency: 3,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let tasks = fetch_all(&fetcher, slow_urls(&site, 6, 120), content("", 0)).await;
    assert_eq!(tasks.len(), 12);
    assert_eq!(site.stats.max_in_flight(), 3);
}

#[tokio::test]
async fn per_domain_delay_spaces_request_starts() {
    let (_, site) = bind_local().await;
    let config = FetcherConfig {
        per_domain_delay_ms: 80,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    // Opens the pooled connection, so the measured requests differ only by pacing.
    fetch_all(&fetcher, vec![site.url("/slow/warm?ms=1")], content("", 0)).await;
    let urls = (0..4).map(|_| site.url("/slow/d?ms=1")).collect();
    fetch_all(&fetcher, urls, content("", 0)).await;
    // Starts are paced at the client; arrivals at the server jitter a little.
    let gaps = gaps(&site, "/slow/d");
    assert_eq!(gaps.len(), 3);
    assert!(
        gaps.iter().all(|gap| *gap >= Duration::from_millis(50)),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().sum::<Duration>() >= Duration::from_millis(210),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn bulk_decides_one_parse_task_or_one_per_url_and_failures_stay() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let urls = vec![
        site.url("/list/1"),
        site.url("/fail/b"),
        site.url("/item/3"),
    ];
    let mut bulk = content("", 0);
    bulk.bulk = true;
    let together = fetch_all(&fetcher, urls.clone(), bulk).await;
    assert_eq!(together.len(), 1);
    let results: Vec<(&str, bool)> = together[0]
        .body
        .result
        .iter()
        .map(|r| (r.url.as_str(), r.sucess))
        .collect();
    assert_eq!(
        results,
        [
            (urls[0].as_str(), true),
            (urls[1].as_str(), false),
            (urls[2].as_str(), true)
        ]
    );
    assert_eq!(together[0].body.urls.len(), 3);

    let apart = fetch_all(&fetcher, urls.clone(), content("", 0)).await;
    assert_eq!(apart.len(), 3);
    for (task, url) in apart.iter().zip(&urls) {
        assert_eq!((task.body.urls.len(), task.body.result.len()), (1, 1));
        assert_eq!(
            (&task.body.urls[0].url.url, &task.body.result[0].url),
            (url, url)
        );
        assert_eq!(
            (task.topic.as_str(), task.guid.as_str()),
            ("crawl_test", "guid-1")
        );
    }
    assert_eq!(
        apart[1].body.result[0].error.as_deref(),
        Some("http status 500")
    );
}

#[tokio::test]
async fn per_host_state_stays_bounded() {
    let config = FetcherConfig {
        max_domains: 2,
        connect_timeout_ms: 500,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for i in 2..12 {
        let tasks = fetch_all(
            &fetcher,
            vec![format!("http://127.0.0.{i}:{port}/")],
            content("", 0),
        )
        .await;
        assert!(!tasks[0].body.result[0].sucess);
        assert!(
            fetcher.tracked_domains() <= 2,
            "{}",
            fetcher.tracked_domains()
        );
    }
}
