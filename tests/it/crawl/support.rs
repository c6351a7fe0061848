//! The crawl modules' shared fixtures: fetcher helpers.

use taskbus::crawl::{Content, Fetcher, FetcherConfig, LocalTask, ResultEntry, UrlEntry};

pub fn fast_config() -> FetcherConfig {
    FetcherConfig {
        backoff_base_ms: 40,
        backoff_max_ms: 400,
        ..FetcherConfig::default()
    }
}

pub fn content(encode: &str, max_retry: u32) -> Content {
    Content {
        encode: encode.to_string(),
        max_retry,
        ..Content::default()
    }
}

pub async fn fetch(fetcher: &Fetcher, entry: UrlEntry, content: &Content) -> ResultEntry {
    fetcher.fetch_url(&entry, content).await
}

pub async fn fetch_all(fetcher: &Fetcher, urls: Vec<String>, content: Content) -> Vec<LocalTask> {
    let entries = urls.into_iter().map(|u| UrlEntry::get(u, "test")).collect();
    let mut task = LocalTask::with_urls("crawl_test", "guid-1", entries);
    task.body.content = content;
    fetcher.fetch_task(task).await
}
