//! The executor: template executors from bus.toml-style config fill `urls` from the
//! task body; custom executors register beside them.

use std::sync::Arc;

use serde_json::{json, Value};
use taskbus::crawl::{
    execute, CrawlConfig, CrawlError, Executor, ExecutorRegistry, LocalTask, ResultEntry, UrlEntry,
};

use super::support::crawl_config;

fn registry() -> ExecutorRegistry {
    let config = crawl_config(|_| {});
    ExecutorRegistry::from_config(&config.executors).expect("templates are valid")
}

fn server_task(name: &str, version: &str, body_extra: Value) -> LocalTask {
    let mut task: LocalTask = serde_json::from_value(json!({
        "topic": "jm_crawl",
        "guid": "srv-42",
        "body": {"crawl": {"name": name, "version": version}}
    }))
    .unwrap();
    for (key, value) in body_extra.as_object().unwrap() {
        task.body.extra.insert(key.clone(), value.clone());
    }
    task
}

fn search_body() -> Value {
    json!({"base": "http://shop.test", "params": {"categoryId": "9987", "c1": "830", "c2": "866"}, "sort": ""})
}

#[test]
fn template_fills_one_url_per_page_with_typed_values() {
    let task = execute(&registry(), server_task("jd_search", "1", search_body())).unwrap();
    let urls = &task.body.urls;
    assert_eq!(urls.len(), 3);
    for (index, item) in urls.iter().enumerate() {
        let page = index as i64 + 1;
        let entry = &item.url;
        assert_eq!(entry.url, "http://shop.test/ware/searchList.action");
        assert_eq!(
            (entry.method.as_str(), entry.platform.as_str()),
            ("POST", "jd_app")
        );
        assert_eq!(entry.page, json!(page));
        assert_eq!(
            entry.data,
            json!({"categoryId": "9987", "c1": "830", "c2": "866", "page": page, "sort": "", "stock": 0, "_format_": "json"})
        );
        assert_eq!(
            entry.header["referer"],
            json!("http://shop.test/products/9987-830-866.html")
        );
        assert_eq!(
            entry.header["accept"],
            json!("application/json"),
            "header names are lowercased"
        );
        assert_eq!(
            (entry.guid.as_str(), entry.task_count, entry.topic.as_str()),
            ("srv-42", 3, "parsing")
        );
        assert_eq!(
            entry.callback,
            Default::default(),
            "per-url callback is the seed's {{}}"
        );
        assert_eq!(item.result, vec![ResultEntry::placeholder()]);
    }
    assert_eq!(task.callback_topic(), Some("parsing"));
    assert!(task.body.result.is_empty() && task.body.parsing_data.is_empty());
    assert_eq!(
        task.body.extra["params"],
        search_body()["params"],
        "the body's own keys are kept"
    );
}

#[test]
fn body_pages_override_and_json_templates_set_content_type() {
    let mut body = search_body();
    body["pages"] = json!([5, 6]);
    let task = execute(&registry(), server_task("jd_search", "1", body)).unwrap();
    let pages: Vec<Value> = task
        .body
        .urls
        .iter()
        .map(|u| u.url.data["page"].clone())
        .collect();
    assert_eq!(pages, [json!(5), json!(6)]);

    let json_task = execute(
        &registry(),
        server_task("jd_search", "2-json", search_body()),
    )
    .unwrap();
    let entry = &json_task.body.urls[0].url;
    assert_eq!(entry.header["content-type"], json!("application/json"));
    assert_eq!(
        entry.data["categoryId"],
        json!("9987"),
        "dotted path into the body"
    );
    assert_eq!(entry.page, Value::Null, "no page range, no page");
    assert_eq!(json_task.callback_topic(), Some("parsing_json"));
}

#[test]
fn page_guid_and_topic_are_template_fields() {
    let task = execute(
        &registry(),
        server_task("list", "1", json!({"base": "http://s.test"})),
    )
    .unwrap();
    let urls: Vec<&str> = task.body.urls.iter().map(|u| u.url.url.as_str()).collect();
    assert_eq!(
        urls,
        [2, 3, 4]
            .map(|p| format!("http://s.test/list/{p}?guid=srv-42&topic=jm_crawl"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
}

#[test]
fn missing_fields_and_unknown_executors_are_errors() {
    let error = execute(
        &registry(),
        server_task(
            "jd_search",
            "1",
            json!({"base": "x", "params": search_body()["params"]}),
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&error, CrawlError::Template { executor, .. } if executor == "jd_search@1"),
        "{error}"
    );
    assert!(error.to_string().contains("sort"), "{error}");
    let error = execute(&registry(), server_task("jd_search", "9", search_body())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "executor not found: name=jd_search version=9"
    );
    let mut body = search_body();
    body["pages"] = json!([3, 1]);
    assert!(execute(&registry(), server_task("jd_search", "1", body)).is_err());
}

#[test]
fn bad_templates_are_refused_at_startup() {
    for (bad, needle) in [
        ("[[executors]]\nname = \"a\"\nversion = \"1\"\nurl = \"http://x\"\nmethod = \"BAD METHOD\"", "method"),
        ("[[executors]]\nname = \"a\"\nversion = \"1\"\nurl = \"http://x\"\nbody = \"xml\"", "body"),
        ("[[executors]]\nname = \"a\"\nversion = \"1\"\nurl = \"http://x\"\npages = [1]", "pages"),
        ("[[executors]]\nname = \"a\"\nversion = \"1\"\nurl = \"http://x\"\npages = [1, 100]\nmax_urls = 10", "max_urls"),
    ] {
        let config: CrawlConfig = toml::from_str(bad).unwrap();
        let result = ExecutorRegistry::from_config(&config.executors)
            .and_then(|registry| execute(&registry, server_task("a", "1", json!({}))).map(|_| ()));
        let error = result.expect_err(bad).to_string();
        assert!(error.contains(needle), "{error}");
    }
}

struct Sitemap;

impl Executor for Sitemap {
    fn name(&self) -> &str {
        "sitemap"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn build(&self, task: &LocalTask) -> Result<Vec<UrlEntry>, CrawlError> {
        let pages = task
            .body
            .extra
            .get("pages_to_visit")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(pages
            .iter()
            .filter_map(Value::as_str)
            .map(|u| UrlEntry::get(u, "example_item"))
            .collect())
    }
}

#[test]
fn custom_executors_register_beside_templates() {
    let mut registry = registry();
    registry.register(Arc::new(Sitemap)).unwrap();
    assert!(
        registry.register(Arc::new(Sitemap)).is_err(),
        "same name and version twice"
    );
    let task = server_task(
        "sitemap",
        "1",
        json!({"pages_to_visit": ["http://a.test/1", "http://a.test/2"]}),
    );
    let task = execute(&registry, task).unwrap();
    let counts: Vec<(u64, &str)> = task
        .body
        .urls
        .iter()
        .map(|u| (u.url.task_count, u.url.guid.as_str()))
        .collect();
    assert_eq!(counts, [(2, "srv-42"), (2, "srv-42")]);
}
