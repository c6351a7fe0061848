//! The seed's `local_task` envelope round-trips exactly, through JSON and through
//! MessagePack maps (what Python's msgpack reads).

use serde_json::{json, Value};
use taskbus::crawl::{LocalTask, ResultEntry, UrlEntry};

/// The seed's executor url entry (002, "url = {...}"), with `sort` and `page` filled
/// the way its `data` shows them.
fn seed_url_item() -> Value {
    json!({
        "url": {
            "callback": {},
            "topic": "parsing",
            "guid": "3f2c9a",
            "task_count": 1,
            "url": "https://so.m.jd.com/ware/searchList.action",
            "useproxy": "",
            "platform": "jd_app",
            "sort": "",
            "page": 15,
            "header": {
                "content-length": "59",
                "accept-encoding": "gzip, deflate, sdch",
                "x-requested-with": "XMLHttpRequest",
                "user-agent": "Mozilla/4.0 (MobilePhone SCP-PRO700/US/1.0) NetFront/3.4 MMP/2.0",
                "connection": "keep-alive",
                "accept": "application/json",
                "accept-language": "zh-CN,zh;q=0.8",
                "origin": "https://so.m.jd.com",
                "content-type": "application/x-www-form-urlencoded",
                "referer": "https://so.m.jd.com/products/9987-830-866.html"
            },
            "data": {
                "categoryId": "9987",
                "c2": "866",
                "c1": "830",
                "_format_": "json",
                "page": 15,
                "sort": "",
                "stock": 0
            },
            "method": "POST"
        },
        "result": [{"url": "", "time": "", "html": "", "retry": 0, "sucess": false}]
    })
}

/// The seed's `local_task`, with one url and the full result shape of its comment.
fn seed_task() -> Value {
    json!({
        "topic": "jm_crawl",
        "guid": "3f2c9a",
        "body": {
            "crawl": {"name": "", "version": ""},
            "urls": [seed_url_item()],
            "abstime": "",
            "content": {
                "proxymode": "auto", "encode": "utf-8", "lib": "aiohttp", "max_retry": 0,
                "bulk": false, "cookie": "", "debug": false, "usephantomjs": false
            },
            "result": [{
                "url": "", "time": "", "html": "", "error": "", "proxy": "", "retry": 0,
                "headers": "", "other": "", "sucess": false, "platform": ""
            }],
            "parsing_data": [],
            "callback": {"topic": "parsing"}
        }
    })
}

fn through_json(value: &Value) -> Value {
    let task: LocalTask = serde_json::from_value(value.clone()).expect("seed task deserializes");
    serde_json::to_value(&task).expect("serializes")
}

fn through_msgpack(value: &Value) -> (Value, Value) {
    let task: LocalTask = serde_json::from_value(value.clone()).expect("seed task deserializes");
    let bytes = rmp_serde::to_vec_named(&task).expect("msgpack encodes");
    let as_python_sees_it: Value = rmp_serde::from_slice(&bytes).expect("msgpack is a plain map");
    let back: LocalTask = rmp_serde::from_slice(&bytes).expect("msgpack decodes into LocalTask");
    (serde_json::to_value(&back).unwrap(), as_python_sees_it)
}

#[test]
fn seed_example_round_trips_through_json() {
    let seed = seed_task();
    assert_eq!(through_json(&seed), seed);
}

#[test]
fn seed_example_round_trips_through_msgpack_named() {
    let seed = seed_task();
    let (back, plain) = through_msgpack(&seed);
    assert_eq!(back, seed);
    assert_eq!(plain, seed, "msgpack map keys are the seed's names");
}

#[test]
fn bare_seed_task_round_trips() {
    let bare = json!({
        "topic": "jm_crawl", "guid": "",
        "body": {
            "crawl": {"name": "", "version": ""}, "urls": [], "abstime": "",
            "content": {"proxymode": "auto", "encode": "utf-8", "lib": "aiohttp", "max_retry": 0,
                        "bulk": false, "cookie": "", "debug": false, "usephantomjs": false},
            "result": [], "parsing_data": [], "callback": {"topic": "parsing"}
        }
    });
    assert_eq!(through_json(&bare), bare);
    assert_eq!(through_msgpack(&bare).0, bare);
}

#[test]
fn unknown_keys_survive_at_every_level() {
    let mut task = seed_task();
    task["priority"] = json!(3);
    task["body"]["params"] = json!({"categoryId": "9987"});
    task["body"]["crawl"]["owner"] = json!("ops");
    task["body"]["content"]["timeout"] = json!(30);
    task["body"]["callback"]["reply_to"] = json!("x");
    task["body"]["urls"][0]["note"] = json!("kept");
    task["body"]["urls"][0]["url"]["depth"] = json!(2);
    task["body"]["result"][0]["cached"] = json!(true);
    assert_eq!(through_json(&task), task);
    assert_eq!(through_msgpack(&task).0, task);
    let typed: LocalTask = serde_json::from_value(task).unwrap();
    assert_eq!(typed.extra["priority"], json!(3));
    assert_eq!(typed.body.urls[0].url.extra["depth"], json!(2));
}

#[test]
fn typed_fields_read_the_seed_names() {
    let task: LocalTask = serde_json::from_value(seed_task()).unwrap();
    let entry = &task.body.urls[0].url;
    assert_eq!(entry.method, "POST");
    assert_eq!(entry.data["page"], json!(15));
    assert_eq!(
        entry.header["content-type"],
        json!("application/x-www-form-urlencoded")
    );
    assert_eq!(task.body.content.encode, "utf-8");
    assert_eq!(task.callback_topic(), Some("parsing"));
    assert!(!task.body.result[0].sucess);
    let placeholder = serde_json::to_value(ResultEntry::placeholder()).unwrap();
    assert_eq!(placeholder, seed_url_item()["result"][0]);
}

#[test]
fn rows_reads_nested_and_flat_parsing_data() {
    let mut task = LocalTask::with_urls("t", "g", vec![UrlEntry::get("http://a/", "p")]);
    task.body.parsing_data = vec![json!([{"a": 1}, {"a": 2}]), json!({"a": 3}), json!([])];
    let values: Vec<&Value> = task.rows().map(|row| &row["a"]).collect();
    assert_eq!(values, [&json!(1), &json!(2), &json!(3)]);
}
