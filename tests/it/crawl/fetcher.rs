//! The fetcher against the example site on 127.0.0.1:0: charsets, POST bodies,
//! retries and backoff, Retry-After, politeness limits, bulk, cookies, proxies,
//! timeouts. Expected values come from the site's own data.

use serde_json::{json, Value};
use taskbus::crawl::site::bind_local;
use taskbus::crawl::site_data::{self, GB18030_TEXT, GBK_TEXT};
use taskbus::crawl::{Fetcher, FetcherConfig, ResultEntry, UrlEntry};

use super::support::{content, fast_config, fetch, fetch_all};

fn json_body(result: &ResultEntry) -> Value {
    serde_json::from_str(&result.html).unwrap_or_else(|e| panic!("not json ({e}): {}", result.html))
}

#[tokio::test]
async fn gbk_pages_decode_by_header_meta_and_content_encode() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let cases = [
        ("/gbk/header", "", "header"),
        ("/gbk/meta", "", "meta"),
        ("/gbk/plain", "gbk", "content.encode"),
        ("/gbk/header", "auto", "header"),
    ];
    for (path, encode, source) in cases {
        let result = fetch(
            &fetcher,
            UrlEntry::get(site.url(path), "t"),
            &content(encode, 0),
        )
        .await;
        assert!(result.sucess, "{path}: {:?}", result.error);
        assert!(
            result.html.contains(GBK_TEXT),
            "{path} decoded as {}",
            result.html
        );
        let other = result.other.unwrap();
        assert_eq!(other["encoding"], json!("GBK"), "{path}");
        assert_eq!(other["encoding_source"], json!(source), "{path}");
    }
    let gb18030 = fetch(
        &fetcher,
        UrlEntry::get(site.url("/gb18030/header"), "t"),
        &content("", 0),
    )
    .await;
    assert!(gb18030.html.contains(GB18030_TEXT), "{}", gb18030.html);
}

#[tokio::test]
async fn seed_default_utf8_does_not_garble_an_undeclared_gbk_page() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let result = fetch(
        &fetcher,
        UrlEntry::get(site.url("/gbk/plain"), "t"),
        &content("utf-8", 0),
    )
    .await;
    assert!(result.html.contains(GBK_TEXT), "{}", result.html);
}

/// The seed's own url entry shape, pointed at the example site.
fn seed_search_entry(url: String, page: i64) -> UrlEntry {
    serde_json::from_value(json!({
        "callback": {}, "topic": "parsing", "guid": "g", "task_count": 1, "url": url,
        "useproxy": "", "platform": "jd_app", "sort": "", "page": page,
        "header": {
            "content-length": "59",
            "accept-encoding": "gzip, deflate, sdch",
            "x-requested-with": "XMLHttpRequest",
            "user-agent": "Mozilla/4.0 (MobilePhone SCP-PRO700/US/1.0) NetFront/3.4 MMP/2.0",
            "connection": "keep-alive",
            "accept": "application/json",
            "content-type": "application/x-www-form-urlencoded"
        },
        "data": {"categoryId": "9987", "c2": "866", "c1": "830", "_format_": "json",
                 "page": page, "sort": "", "stock": 0},
        "method": "POST"
    }))
    .unwrap()
}

#[tokio::test]
async fn post_form_reaches_the_search_api() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let entry = seed_search_entry(site.url("/ware/searchList.action"), 2);
    let result = fetch(&fetcher, entry.clone(), &content("", 0)).await;
    assert_eq!(result.status, Some(200), "{}", result.html);
    let body = json_body(&result);
    assert_eq!(body["encoding"], json!("form"));
    let sent: serde_json::Map<String, Value> = entry
        .data
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
            )
        })
        .collect();
    assert_eq!(body["received"], Value::Object(sent));
    assert_eq!(
        body["data"]["items"],
        json!(site_data::search_items("9987-830-866", 2, ""))
    );
}

#[tokio::test]
async fn post_json_body_and_headers_are_sent() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let mut entry = seed_search_entry(site.url("/api/search"), 3);
    entry
        .header
        .insert("content-type".into(), json!("application/json"));
    let result = fetch(&fetcher, entry.clone(), &content("", 0)).await;
    assert_eq!(result.status, Some(200), "{}", result.html);
    let body = json_body(&result);
    assert_eq!(body["encoding"], json!("json"));
    assert_eq!(body["received"], entry.data, "JSON keeps the value types");

    entry.url = site.url("/echo");
    let echo = json_body(&fetch(&fetcher, entry, &content("", 0)).await);
    assert_eq!(echo["method"], json!("POST"));
    assert_eq!(
        echo["headers"]["user-agent"],
        json!("Mozilla/4.0 (MobilePhone SCP-PRO700/US/1.0) NetFront/3.4 MMP/2.0")
    );
    assert_eq!(echo["headers"]["x-requested-with"], json!("XMLHttpRequest"));
    assert!(!echo["headers"]["accept-encoding"]
        .as_str()
        .unwrap_or("")
        .contains("sdch"));
    let sent: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["page"], json!(3));
}

#[tokio::test]
async fn get_data_becomes_the_query_string() {
    let (_, site) = bind_local().await;
    let fetcher = Fetcher::new(&fast_config()).unwrap();
    let mut entry = UrlEntry::get(site.url("/echo"), "t");
    entry.data = json!({"q": "a b", "n": 2});
    let echo = json_body(&fetch(&fetcher, entry, &content("", 0)).await);
    let uri = echo["uri"].as_str().unwrap();
    let (path, query) = uri.split_once('?').unwrap();
    let mut pairs: Vec<&str> = query.split('&').collect();
    pairs.sort();
    assert_eq!((path, pairs), ("/echo", vec!["n=2", "q=a+b"]));
}

#[tokio::test]
async fn cookies_from_content_and_from_the_task_jar() {
    let (_, site) = bind_local().await;
    let config = FetcherConfig {
        per_domain_concurrency: 1,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    for cookie in [json!("a=1; b=2"), json!({"a": "1", "b": 2})] {
        let mut with_cookie = content("", 0);
        with_cookie.cookie = cookie;
        let result = fetch(
            &fetcher,
            UrlEntry::get(site.url("/cookies"), "t"),
            &with_cookie,
        )
        .await;
        assert_eq!(json_body(&result)["cookie"], json!("a=1; b=2"));
    }
    let login = site.url("/login?name=sid&value=s3cret");
    let tasks = fetch_all(&fetcher, vec![login, site.url("/cookies")], content("", 0)).await;
    let redirected = json_body(&tasks[0].body.result[0]);
    assert_eq!(
        redirected["cookie"],
        json!("sid=s3cret"),
        "cookie set on the redirect hop"
    );
    assert_eq!(
        tasks[0].body.result[0].other.as_ref().unwrap()["final_url"],
        json!(site.url("/cookies"))
    );
    assert_eq!(
        json_body(&tasks[1].body.result[0])["cookie"],
        json!("sid=s3cret"),
        "same task, same jar"
    );
    let other_task = fetch_all(&fetcher, vec![site.url("/cookies")], content("", 0)).await;
    assert_eq!(
        json_body(&other_task[0].body.result[0])["cookie"],
        json!(""),
        "jars are per task"
    );
}

#[tokio::test]
async fn proxies_from_useproxy_and_from_the_config_list() {
    let (addr, site) = bind_local().await;
    let proxy = format!("http://{addr}");
    let target = "http://crawl-target.invalid/echo";
    let direct_fetcher = Fetcher::new(&fast_config()).unwrap();
    let mut entry = UrlEntry::get(target, "t");
    entry.useproxy = json!(proxy);
    let via_entry = fetch(&direct_fetcher, entry, &content("", 0)).await;
    assert!(via_entry.sucess, "{:?}", via_entry.error);
    assert_eq!(json_body(&via_entry)["absolute_form"], json!(true));
    assert_eq!(via_entry.proxy.as_deref(), Some(proxy.as_str()));

    let mut always = content("", 0);
    always.proxymode = "always".into();
    let refused = fetch(&direct_fetcher, UrlEntry::get(target, "t"), &always).await;
    assert!(!refused.sucess && refused.error.unwrap().contains("proxies"));

    let pooled = Fetcher::new(&FetcherConfig {
        proxies: vec![proxy.clone()],
        ..fast_config()
    })
    .unwrap();
    let via_pool = fetch(&pooled, UrlEntry::get(target, "t"), &always).await;
    assert_eq!(json_body(&via_pool)["uri"], json!(target));
    let mut no = UrlEntry::get(site.url("/echo"), "t");
    no.useproxy = json!("no");
    let direct = fetch(&pooled, no, &always).await;
    assert_eq!(
        (json_body(&direct)["absolute_form"].clone(), direct.proxy),
        (json!(false), Some(String::new()))
    );
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_failed_results() {
    let (_, site) = bind_local().await;
    let config = FetcherConfig {
        request_timeout_ms: 150,
        ..fast_config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let slow = fetch(
        &fetcher,
        UrlEntry::get(site.url("/slow/t?ms=3000"), "t"),
        &content("", 0),
    )
    .await;
    assert!(!slow.sucess);
    assert!(
        slow.error
            .as_deref()
            .unwrap()
            .to_lowercase()
            .contains("timed out"),
        "{:?}",
        slow.error
    );

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = fetch(
        &fetcher,
        UrlEntry::get(format!("http://127.0.0.1:{port}/"), "t"),
        &content("", 1),
    )
    .await;
    assert!(
        !refused.sucess && refused.retry == 1 && refused.status == Some(0),
        "{refused:?}"
    );
    let bad = fetch(&fetcher, UrlEntry::get("not a url", "t"), &content("", 3)).await;
    assert!(!bad.sucess && bad.retry == 0 && bad.error.unwrap().contains("bad url"));
}
