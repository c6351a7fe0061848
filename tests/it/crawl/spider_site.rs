//! A small site for spider tests, on 127.0.0.1:0: robots.txt with a Disallow and a
//! Crawl-delay, a `<base href>`, a redirect, a page failing with 503 twice, a 404,
//! a plain-text file, an image link, URLs that differ only in form, and a chain of
//! pages for depth limits. It counts the requests to every path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// The site's request log.
#[derive(Clone, Default)]
pub struct Hits {
    log: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Hits {
    /// Requests whose path and query (as sent) equal `target`.
    pub fn count(&self, target: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == target)
            .count()
    }

    /// Requests whose path starts with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.starts_with(prefix))
            .count()
    }

    /// When the pages were requested, in order: not robots.txt, nor the hop of a
    /// redirect (part of its request).
    pub fn page_times(&self) -> Vec<Instant> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(t, _)| t != "/robots.txt" && t != "/landed")
            .map(|(_, at)| *at)
            .collect()
    }
}

/// The site running; stops when dropped.
pub struct SpiderSite {
    pub addr: SocketAddr,
    pub hits: Hits,
    stop: CancellationToken,
}

impl Drop for SpiderSite {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SpiderSite {
    /// Serves the site; `robots` is the robots.txt body (empty: 404).
    pub async fn start(robots: &'static str) -> SpiderSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Hits::default();
        let stop = CancellationToken::new();
        let app = Router::new()
            .fallback(page)
            .with_state((hits.clone(), robots));
        let shutdown = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
        });
        SpiderSite { addr, hits, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn html(title: &str, body: &str) -> Response {
    let text = format!("<html><head><title>{title}</title></head><body>{body}</body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response()
}

const HOME: &str = r#"
<a href="/a?b=2&amp;a=1">a1</a> <a href="/a?a=1&amp;b=2#top">a2</a>
<a href="/%7euser">u1</a> <a href="/~user">u2</a>
<a href="/private/secret">private</a> <a href="/pic.png">png</a> <a href="/notes.txt">txt</a>
<a href="/redirect">redirect</a> <a href="/flaky">flaky</a> <a href="/gone">gone</a>
<a href="/based">based</a> <a href="/deep/1">deep</a> <a href="/deny/me">deny</a>
<a href="http://elsewhere.invalid/x">offsite</a>"#;

async fn page(State((hits, robots)): State<(Hits, &'static str)>, request: Request) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let seen = {
        let mut log = hits.log.lock().unwrap();
        log.push((target.clone(), Instant::now()));
        log.iter().filter(|(t, _)| *t == target).count()
    };
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/robots.txt" if !robots.is_empty() => robots.into_response(),
        "/" => html("Home", HOME),
        "/a" => html("A", ""),
        "/~user" | "/%7euser" | "/%7Euser" => html("User", ""),
        "/private/secret" => html("Secret", ""),
        "/notes.txt" => (
            [(header::CONTENT_TYPE, "text/plain")],
            "<title>not a page</title>",
        )
            .into_response(),
        "/redirect" => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, "/landed")],
        )
            .into_response(),
        "/landed" => html("Landed", ""),
        "/flaky" if seen <= 2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "/flaky" => html("Flaky", ""),
        "/based" => html("Based", r#"<base href="/other/"><a href="rel">rel</a>"#),
        "/other/rel" => html("Rel", ""),
        _ => match path
            .strip_prefix("/deep/")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) => html(
                &format!("Deep {n}"),
                &format!(r#"<a href="/deep/{}">next</a>"#, n + 1),
            ),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// Pages of the site that a spider following everything (but `/deny/`) stores,
/// with max_depth 2: home, a, user, redirect (landed), flaky, based, other/rel,
/// deep/1, deep/2.
pub const STORED_PAGES: usize = 9;
