//! An example site for the crawl stages' tests and bench: list and detail pages, a
//! search API shaped like the seed's `searchList.action`, GBK/GB18030 pages, slow,
//! flaky and rate-limited pages, a link-bench tree (`/follow/<n>`), cookie and echo
//! endpoints, and counters of requests in flight per host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::site_data::{self, GB18030_TEXT, GBK_TEXT, LIST_PAGES};

/// Paths whose hit counts are kept; later new paths are counted only in the total.
const MAX_TRACKED_PATHS: usize = 100_000;
/// Arrival times kept per path.
const MAX_ARRIVALS: usize = 64;

/// Counters the tests read: requests in flight (now and at most) per host and in
/// total, and hits and arrival times per path.
pub struct SiteStats {
    started: Instant,
    total: InFlight,
    hosts: Mutex<HashMap<String, Arc<InFlight>>>,
    paths: Mutex<HashMap<String, PathStats>>,
    requests: AtomicU64,
}

#[derive(Default)]
struct InFlight {
    current: AtomicUsize,
    max: AtomicUsize,
}

#[derive(Default, Clone)]
struct PathStats {
    hits: u64,
    arrivals: Vec<Duration>,
}

/// Decrements the in-flight counters when a request ends, also when the client
/// goes away mid-request.
struct InFlightGuard {
    host: Arc<InFlight>,
    stats: Arc<SiteStats>,
}

impl SiteStats {
    /// Fresh counters.
    pub fn new() -> Self {
        SiteStats {
            started: Instant::now(),
            total: InFlight::default(),
            hosts: Mutex::new(HashMap::new()),
            paths: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// Requests served in total.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Most requests in flight at once, all hosts together.
    pub fn max_in_flight(&self) -> usize {
        self.total.max.load(Ordering::SeqCst)
    }

    /// Most requests in flight at once with this `Host` header (e.g. `127.0.0.1:8080`).
    pub fn max_in_flight_for_host(&self, host: &str) -> usize {
        let hosts = self.hosts.lock().expect("hosts lock");
        hosts.get(host).map_or(0, |h| h.max.load(Ordering::SeqCst))
    }

    /// Requests in flight now, all hosts together.
    pub fn in_flight(&self) -> usize {
        self.total.current.load(Ordering::SeqCst)
    }

    /// Requests for `path` (without the query).
    pub fn hits(&self, path: &str) -> u64 {
        self.paths
            .lock()
            .expect("paths lock")
            .get(path)
            .map_or(0, |p| p.hits)
    }

    /// When the first requests for `path` arrived, since the site started.
    pub fn arrivals(&self, path: &str) -> Vec<Duration> {
        let paths = self.paths.lock().expect("paths lock");
        paths
            .get(path)
            .map(|p| p.arrivals.clone())
            .unwrap_or_default()
    }

    fn enter(self: &Arc<Self>, host: &str, path: &str) -> (InFlightGuard, u64) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let host_counter = {
            let mut hosts = self.hosts.lock().expect("hosts lock");
            Arc::clone(hosts.entry(host.to_string()).or_default())
        };
        host_counter.enter();
        self.total.enter();
        let mut paths = self.paths.lock().expect("paths lock");
        let hits = if paths.len() < MAX_TRACKED_PATHS || paths.contains_key(path) {
            let stats = paths.entry(path.to_string()).or_default();
            stats.hits += 1;
            if stats.arrivals.len() < MAX_ARRIVALS {
                stats.arrivals.push(self.started.elapsed());
            }
            stats.hits
        } else {
            0
        };
        let guard = InFlightGuard {
            host: host_counter,
            stats: Arc::clone(self),
        };
        (guard, hits)
    }
}

impl Default for SiteStats {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlight {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.host.current.fetch_sub(1, Ordering::SeqCst);
        self.stats.total.current.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Hit number of this request for its path (1 for the first), for handlers whose
/// answer depends on it.
#[derive(Clone, Copy)]
struct HitNumber(u64);

/// A running site on 127.0.0.1; dropping it stops the server.
pub struct LocalSite {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<SiteStats>,
    shutdown: CancellationToken,
}

impl LocalSite {
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://localhost:<port><path>`: the same server under a second host name.
    pub fn url_localhost(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }
}

impl Drop for LocalSite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Binds 127.0.0.1 on a free port and serves the site until the returned handle is
/// dropped.
pub async fn bind_local() -> (SocketAddr, LocalSite) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let stats = Arc::new(SiteStats::new());
    let shutdown = CancellationToken::new();
    let server = serve_with(listener, shutdown.clone(), Arc::clone(&stats));
    tokio::spawn(async move {
        if let Err(error) = server.await {
            log::error!("example site on {addr} stopped: {error}");
        }
    });
    (
        addr,
        LocalSite {
            addr,
            stats,
            shutdown,
        },
    )
}

/// Serves the site on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_with(listener, shutdown, Arc::new(SiteStats::new())).await
}

/// [`serve`] with counters the caller keeps.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: CancellationToken,
    stats: Arc<SiteStats>,
) -> std::io::Result<()> {
    axum::serve(listener, app(stats))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The site's routes.
pub fn app(stats: Arc<SiteStats>) -> Router {
    Router::new()
        .route("/", get(|| async { Html("<html><body><a href=\"/list/1\">list</a> <a href=\"/follow/0\">bench</a></body></html>") }))
        .route("/list/{page}", get(list))
        .route("/item/{id}", get(item))
        .route("/ware/searchList.action", post(search_form))
        .route("/api/search", post(search_json))
        .route("/gbk/{variant}", get(gbk))
        .route("/gb18030/header", get(gb18030))
        .route("/slow/{id}", get(slow))
        .route("/flaky/{id}", get(flaky))
        .route("/fail/{id}", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "always failing") }))
        .route("/limited/{id}", get(limited))
        .route("/follow/{n}", get(follow))
        .route("/dupes", get(dupes))
        .route("/cookies", get(cookies))
        .route("/login", get(login))
        .route("/echo", any(echo))
        .route("/notjson", get(|| async { "this is not json" }))
        .layer(middleware::from_fn_with_state(stats, track))
}

async fn track(State(stats): State<Arc<SiteStats>>, mut request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (guard, hits) = stats.enter(&host, request.uri().path());
    request.extensions_mut().insert(HitNumber(hits));
    let response = next.run(request).await;
    drop(guard);
    response
}

async fn list(Path(page): Path<u32>) -> Response {
    if page == 0 || page > LIST_PAGES {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    }
    Html(site_data::list_page(page)).into_response()
}

async fn item(Path(id): Path<u32>) -> Html<String> {
    Html(site_data::item_page(id))
}

const SEARCH_FIELDS: [&str; 7] = [
    "categoryId",
    "c1",
    "c2",
    "page",
    "sort",
    "stock",
    "_format_",
];

/// The seed's search API: form fields in, JSON out.
async fn search_form(Form(form): Form<HashMap<String, String>>) -> Response {
    let fields: Map<String, Value> = form
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    search(fields, "form")
}

async fn search_json(Json(body): Json<Map<String, Value>>) -> Response {
    search(body, "json")
}

fn search(fields: Map<String, Value>, encoding: &str) -> Response {
    if let Some(missing) = SEARCH_FIELDS.iter().find(|f| !fields.contains_key(**f)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("missing field {missing}")})),
        )
            .into_response();
    }
    let text = |key: &str| match &fields[key] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text("_format_") != "json" {
        return (StatusCode::BAD_REQUEST, "only _format_=json is served").into_response();
    }
    let page = text("page").parse::<u32>().unwrap_or(1);
    let category = format!("{}-{}-{}", text("categoryId"), text("c1"), text("c2"));
    let items = site_data::search_items(&category, page, &text("sort"));
    Json(json!({"code": 0, "page": page, "encoding": encoding, "received": fields, "data": {"items": items}}))
        .into_response()
}

/// `/gbk/header` (charset in Content-Type), `/gbk/meta` (`<meta charset=gbk>`),
/// `/gbk/plain` (neither).
async fn gbk(Path(variant): Path<String>) -> Response {
    let (content_type, meta) = match variant.as_str() {
        "header" => ("text/html; charset=GBK", ""),
        "meta" => ("text/html", "<meta charset=\"gbk\">"),
        "plain" => ("text/html", ""),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let page = site_data::text_page(GBK_TEXT, meta);
    let bytes = encoding_rs::GBK.encode(&page).0.into_owned();
    ([(CONTENT_TYPE, content_type)], bytes).into_response()
}

async fn gb18030() -> Response {
    let page = site_data::text_page(GB18030_TEXT, "");
    let bytes = encoding_rs::GB18030.encode(&page).0.into_owned();
    ([(CONTENT_TYPE, "text/html; charset=gb18030")], bytes).into_response()
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: Option<u64>,
}

async fn slow(Path(id): Path<String>, Query(query): Query<SlowQuery>) -> Html<String> {
    tokio::time::sleep(Duration::from_millis(query.ms.unwrap_or(200))).await;
    Html(format!(
        "<html><body><p class=\"slow\">slow {id}</p></body></html>"
    ))
}

/// Fails with 500 on the first two requests for its path, then succeeds.
async fn flaky(
    Path(id): Path<String>,
    axum::Extension(HitNumber(hit)): axum::Extension<HitNumber>,
) -> Response {
    if hit <= 2 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("flaky {id} failing, try {hit}"),
        )
            .into_response();
    }
    Html(format!(
        "<html><body><p class=\"flaky\">flaky {id} ok on try {hit}</p></body></html>"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct LimitedQuery {
    after: Option<String>,
}

/// 429 with `Retry-After: <after>` on the first request for its path, then 200.
async fn limited(
    Path(id): Path<String>,
    Query(query): Query<LimitedQuery>,
    axum::Extension(HitNumber(hit)): axum::Extension<HitNumber>,
) -> Response {
    if hit <= 1 {
        let after = query.after.unwrap_or_else(|| "1".to_string());
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(RETRY_AFTER, after)],
            "slow down",
        )
            .into_response();
    }
    Html(format!("<html><body>limited {id} ok</body></html>")).into_response()
}

#[derive(Deserialize)]
struct FollowQuery {
    show: Option<u64>,
}

async fn follow(Path(n): Path<u64>, Query(query): Query<FollowQuery>) -> Html<String> {
    Html(site_data::follow_page(
        n,
        query.show.unwrap_or(20).min(1000),
    ))
}

/// A page linking the same item twice and one list page three times.
async fn dupes() -> Html<&'static str> {
    Html(
        "<html><body><a class=\"x\" href=\"/item/1\">a</a><a class=\"x\" href=\"/item/1#again\">b</a>\
         <a class=\"x\" href=\"/list/2\">c</a><a class=\"x\" href=\"/list/2\">d</a>\
         <a class=\"x\" href=\"http://127.0.0.1:1/elsewhere\">off-site</a></body></html>",
    )
}

async fn cookies(headers: HeaderMap) -> Json<Value> {
    let cookie = headers
        .get(COOKIE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default();
    Json(json!({ "cookie": cookie }))
}

#[derive(Deserialize)]
struct LoginQuery {
    name: String,
    value: String,
}

/// Sets a cookie and redirects to `/cookies`.
async fn login(Query(query): Query<LoginQuery>) -> Response {
    let cookie = format!("{}={}; Path=/", query.name, query.value);
    (
        StatusCode::FOUND,
        [(SET_COOKIE, cookie), (LOCATION, "/cookies".to_string())],
    )
        .into_response()
}

/// Echoes the request; `absolute_form` is true when it came through a proxy.
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    Json(json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "absolute_form": uri.scheme().is_some(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}
