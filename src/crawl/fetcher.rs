//! The fetcher stage: a crawl task becomes parse tasks whose `body.result` holds one
//! fetch result per url. Retries with backoff, politeness limits, proxies, cookies
//! and charset decoding live here; a failed fetch is a result with `sucess: false`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use rand::Rng;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::{Client, Proxy, Response, StatusCode, Url};
use serde_json::{json, Map, Value};

use super::charset::decode_body;
use super::config::FetcherConfig;
use super::envelope::{Content, LocalTask, ResultEntry, UrlEntry};
use super::error::CrawlError;
use super::limits::Limits;
use super::request::{join_cookies, task_cookie, Hop, RequestSpec};
use super::robots::RobotsCache;

/// `other.skipped` of a result the fetcher did not request: robots.txt disallows it.
pub const SKIPPED_ROBOTS: &str = "robots";

/// Clients kept for proxies named by url entries (not in the configured list).
const MAX_ADHOC_PROXIES: usize = 64;

/// Fetches the urls of crawl tasks. One fetcher is shared by every task of a worker,
/// so its limits hold across tasks.
pub struct Fetcher {
    config: FetcherConfig,
    limits: Limits,
    direct: Client,
    pool: Vec<(String, Client)>,
    next_proxy: AtomicUsize,
    adhoc: Mutex<HashMap<String, Client>>,
    robots: RobotsCache,
}

/// What one task's fetches share: its cookie jar and `content` settings.
struct Session<'a> {
    content: &'a Content,
    guid: &'a str,
    jar: Jar,
    cookie: Option<String>,
}

/// One response, read to the end.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    url: Url,
    body: Vec<u8>,
}

enum AttemptError {
    Transport(reqwest::Error),
    Other(String),
}

impl Fetcher {
    /// A fetcher with `config`'s limits and one HTTP client per configured proxy.
    pub fn new(config: &FetcherConfig) -> Result<Self, CrawlError> {
        let pool = config
            .proxies
            .iter()
            .map(|proxy| Ok((proxy.clone(), build_client(config, Some(proxy))?)))
            .collect::<Result<Vec<_>, CrawlError>>()?;
        Ok(Fetcher {
            limits: Limits::new(
                config.global_concurrency,
                config.per_domain_concurrency,
                Duration::from_millis(config.per_domain_delay_ms),
                config.max_domains,
            ),
            direct: build_client(config, None)?,
            pool,
            next_proxy: AtomicUsize::new(0),
            adhoc: Mutex::new(HashMap::new()),
            robots: RobotsCache::new(&config.user_agent, config.max_domains),
            config: config.clone(),
        })
    }

    /// Fetches every url of `task` (one cookie jar for the task) and returns the parse
    /// tasks: one holding all results when `content.bulk`, else one per url. Each
    /// parse task keeps the task's other fields; `result[i]` answers `urls[i]`.
    pub async fn fetch_task(&self, mut task: LocalTask) -> Vec<LocalTask> {
        let urls = std::mem::take(&mut task.body.urls);
        if urls.is_empty() {
            log::warn!(target: "scripts", "guid={} topic={} has no urls to fetch", task.guid, task.topic);
            return Vec::new();
        }
        if task.body.content.usephantomjs {
            log::warn!(
                "guid={} usephantomjs is not supported, fetching pages as served",
                task.guid
            );
        }
        let session = Session {
            content: &task.body.content,
            guid: &task.guid,
            jar: Jar::default(),
            cookie: task_cookie(&task.body.content.cookie),
        };
        let results = join_all(urls.iter().map(|item| self.fetch_with(&item.url, &session))).await;
        drop(session);
        let failed = results.iter().filter(|r| !r.sucess).count();
        if failed == 0 {
            log::info!(target: "scripts", "guid={} topic={} fetched urls={} ok", task.guid, task.topic, results.len());
        } else {
            log::error!(target: "scripts", "guid={} topic={} fetched urls={} failed={}", task.guid, task.topic, results.len(), failed);
        }
        task.body.parsing_data.clear();
        if task.body.content.bulk {
            task.body.urls = urls;
            task.body.result = results;
            return vec![task];
        }
        urls.into_iter()
            .zip(results)
            .map(|(url, result)| {
                let mut single = task.clone();
                single.body.urls = vec![url];
                single.body.result = vec![result];
                single
            })
            .collect()
    }

    /// Fetches one url entry with `content`'s settings and a fresh cookie jar.
    pub async fn fetch_url(&self, entry: &UrlEntry, content: &Content) -> ResultEntry {
        let session = Session {
            content,
            guid: &entry.guid,
            jar: Jar::default(),
            cookie: task_cookie(&content.cookie),
        };
        self.fetch_with(entry, &session).await
    }

    /// Hosts whose limits the fetcher remembers (bounded by `max_domains` plus the
    /// requests in flight).
    pub fn tracked_domains(&self) -> usize {
        self.limits.hosts_len()
    }

    async fn fetch_with(&self, entry: &UrlEntry, session: &Session<'_>) -> ResultEntry {
        let started = Instant::now();
        let mut result = ResultEntry {
            url: entry.url.clone(),
            platform: Some(entry.platform.clone()),
            proxy: Some(String::new()),
            status: Some(0),
            ..ResultEntry::default()
        };
        let (spec, proxy, client) = match self.prepare(entry, session.content) {
            Ok(prepared) => prepared,
            Err(error) => return self.fail(result, error, started, session),
        };
        result.proxy = Some(proxy.unwrap_or_default());
        let host = spec.url.host_str().unwrap_or_default().to_string();
        let mut crawl_delay = None;
        if self.config.obey_robots {
            let permit = self.limits.acquire(&host, None);
            let rules = self.robots.rules(&client, &spec.url, permit).await;
            if !rules.allowed(&spec.url) {
                return skipped(result, SKIPPED_ROBOTS, "robots.txt disallows this url");
            }
            crawl_delay = rules.delay();
        }
        let max_retry = match session.content.max_retry {
            0 => self.config.retry_times,
            n => n,
        }
        .min(self.config.max_retry_cap);
        loop {
            let outcome = {
                let _permit = self.limits.acquire(&host, crawl_delay).await;
                self.attempt(&client, &spec, session).await
            };
            let wait = match self.retry_wait(&outcome, result.retry) {
                Some(wait) if result.retry < max_retry => wait,
                _ => return self.finish(result, outcome, started, session),
            };
            log::debug!(
                "guid={} url={} retry={} in {:?}: {}",
                session.guid,
                entry.url,
                result.retry + 1,
                wait,
                describe(&outcome)
            );
            result.retry += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// The request, the proxy it goes through, and the client for that proxy.
    fn prepare(
        &self,
        entry: &UrlEntry,
        content: &Content,
    ) -> Result<(RequestSpec, Option<String>, Client), String> {
        let spec = RequestSpec::from_entry(entry)?;
        let proxy = self.choose_proxy(content, &entry.useproxy)?;
        let client = self.client_for(proxy.as_deref())?;
        Ok((spec, proxy, client))
    }

    /// How long to wait before retry number `retry + 1`, or None when the outcome is
    /// final (success, a status not in `retry_http_codes`, a non-transport error).
    /// Retried: connection errors, timeouts, broken bodies, `retry_http_codes`.
    fn retry_wait(&self, outcome: &Result<Page, AttemptError>, retry: u32) -> Option<Duration> {
        let retryable = match outcome {
            Ok(page) => self.config.retry_http_codes.contains(&page.status.as_u16()),
            Err(AttemptError::Transport(e)) => {
                e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
            }
            Err(AttemptError::Other(_)) => false,
        };
        if !retryable {
            return None;
        }
        let retry_after = outcome
            .as_ref()
            .ok()
            .and_then(|page| self.retry_after(&page.headers));
        Some(retry_after.unwrap_or_else(|| self.backoff(retry)))
    }

    /// One attempt: the request and its redirect chain, cookies read and written at
    /// every hop, the final body read up to `max_body_bytes`.
    async fn attempt(
        &self,
        client: &Client,
        spec: &RequestSpec,
        session: &Session<'_>,
    ) -> Result<Page, AttemptError> {
        let mut hop: Hop = spec.first_hop();
        let mut redirects = 0;
        loop {
            let jar_cookie = session.jar.cookies(&hop.url);
            let jar_cookie = jar_cookie.as_ref().and_then(|v| v.to_str().ok());
            let cookie =
                join_cookies([spec.header_cookie(), session.cookie.as_deref(), jar_cookie]);
            if session.content.debug {
                log::info!(
                    "guid={} {} {} hop={}",
                    session.guid,
                    hop.method,
                    hop.url,
                    redirects
                );
            }
            let response = spec
                .build(client, &hop, cookie)
                .send()
                .await
                .map_err(AttemptError::Transport)?;
            session
                .jar
                .set_cookies(&mut response.headers().get_all(SET_COOKIE).iter(), &hop.url);
            match hop.follow(response.status(), response.headers().get(LOCATION)) {
                Some(next) if redirects < self.config.max_redirects => {
                    hop = next;
                    redirects += 1;
                }
                _ => return read_page(response, hop.url, self.config.max_body_bytes).await,
            }
        }
    }

    fn finish(
        &self,
        mut result: ResultEntry,
        outcome: Result<Page, AttemptError>,
        started: Instant,
        session: &Session<'_>,
    ) -> ResultEntry {
        let page = match outcome {
            Ok(page) => page,
            Err(error) => {
                let message = describe(&Err::<Page, _>(error));
                return self.fail(result, message, started, session);
            }
        };
        let content_type = page.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let decoded = decode_body(&page.body, &session.content.encode, content_type);
        result.time = now_string();
        result.status = Some(page.status.as_u16());
        result.sucess = page.status.is_success();
        if !result.sucess {
            result.error = Some(format!("http status {}", page.status.as_u16()));
        }
        result.headers = Some(headers_json(&page.headers));
        result.other = Some(json!({
            "final_url": page.url.as_str(),
            "encoding": decoded.encoding.name(),
            "encoding_source": decoded.source,
            "bytes": page.body.len(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
        result.html = decoded.text;
        result
    }

    fn fail(
        &self,
        mut result: ResultEntry,
        error: String,
        started: Instant,
        session: &Session<'_>,
    ) -> ResultEntry {
        log::warn!(
            "guid={} url={} fetch failed: {}",
            session.guid,
            result.url,
            error
        );
        result.time = now_string();
        result.error = Some(error);
        result.sucess = false;
        result.other = Some(json!({ "elapsed_ms": started.elapsed().as_millis() as u64 }));
        result
    }

    /// Exponential backoff with equal jitter: half the step, plus up to half again.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << retry.min(32))
            .min(self.config.backoff_max_ms);
        let half = step / 2;
        Duration::from_millis(half + rand::thread_rng().gen_range(0..=step - half))
    }

    /// `Retry-After` in seconds or as an HTTP date, capped by `retry_after_max_ms`.
    fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        let wait = match value.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => httpdate::parse_http_date(value)
                .ok()?
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        };
        Some(wait.min(Duration::from_millis(self.config.retry_after_max_ms)))
    }

    /// The proxy for one url: `useproxy` decides (a URL, yes, no), else `proxymode`
    /// (`auto`: the list when it has entries; `none`; `always`: the list, required).
    fn choose_proxy(&self, content: &Content, useproxy: &Value) -> Result<Option<String>, String> {
        let wish = match useproxy {
            Value::Bool(true) => "yes".to_string(),
            Value::Bool(false) => "no".to_string(),
            Value::String(text) => text.trim().to_ascii_lowercase(),
            _ => String::new(),
        };
        if wish.contains("://") {
            return Ok(Some(
                useproxy.as_str().unwrap_or_default().trim().to_string(),
            ));
        }
        match wish.as_str() {
            "no" | "false" | "0" | "none" | "off" => return Ok(None),
            "yes" | "true" | "1" => return self.pick_proxy(true),
            _ => {}
        }
        match content.proxymode.trim().to_ascii_lowercase().as_str() {
            "none" | "off" | "no" | "direct" => Ok(None),
            "always" | "force" => self.pick_proxy(true),
            _ => self.pick_proxy(false),
        }
    }

    fn pick_proxy(&self, required: bool) -> Result<Option<String>, String> {
        if self.pool.is_empty() {
            return if required {
                Err("a proxy was required but [crawl.fetcher] proxies is empty".to_string())
            } else {
                Ok(None)
            };
        }
        let index = self.next_proxy.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        Ok(Some(self.pool[index].0.clone()))
    }

    fn client_for(&self, proxy: Option<&str>) -> Result<Client, String> {
        let Some(proxy) = proxy else {
            return Ok(self.direct.clone());
        };
        if let Some((_, client)) = self.pool.iter().find(|(url, _)| url == proxy) {
            return Ok(client.clone());
        }
        let mut adhoc = self.adhoc.lock().expect("proxy clients lock");
        if let Some(client) = adhoc.get(proxy) {
            return Ok(client.clone());
        }
        let client =
            build_client(&self.config, Some(proxy)).map_err(|e| format!("proxy {proxy}: {e}"))?;
        if adhoc.len() >= MAX_ADHOC_PROXIES {
            adhoc.clear();
        }
        adhoc.insert(proxy.to_string(), client.clone());
        Ok(client)
    }
}

fn build_client(config: &FetcherConfig, proxy: Option<&str>) -> Result<Client, CrawlError> {
    let mut builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .user_agent(config.user_agent.clone())
        .pool_max_idle_per_host(config.per_domain_concurrency.max(1))
        .no_proxy();
    if let Some(proxy) = proxy {
        builder = builder.proxy(Proxy::all(proxy)?);
    }
    Ok(builder.build()?)
}

async fn read_page(mut response: Response, url: Url, limit: usize) -> Result<Page, AttemptError> {
    let too_large = || AttemptError::Other(format!("body larger than {limit} bytes"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(AttemptError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Page {
        status,
        headers,
        url,
        body,
    })
}

/// A result for a url the fetcher did not request, marked `other.skipped = why`.
fn skipped(mut result: ResultEntry, why: &str, error: &str) -> ResultEntry {
    log::debug!("url {} skipped: {error}", result.url);
    result.time = now_string();
    result.error = Some(error.to_string());
    result.sucess = false;
    result.other = Some(json!({ "skipped": why }));
    result
}

/// Why the fetcher did not request a result's url, if it did not.
pub fn skip_reason(result: &ResultEntry) -> Option<&str> {
    result.other.as_ref()?.get("skipped")?.as_str()
}

fn describe(outcome: &Result<Page, AttemptError>) -> String {
    match outcome {
        Ok(page) => format!("http status {}", page.status.as_u16()),
        Err(AttemptError::Transport(e)) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
        Err(AttemptError::Other(text)) => text.clone(),
    }
}

/// Response headers as a JSON object; repeated headers are joined with `, `.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        map.insert(name.as_str().to_string(), Value::String(joined));
    }
    Value::Object(map)
}

fn now_string() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}
