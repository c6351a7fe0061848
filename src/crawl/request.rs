//! Turning a url entry into HTTP requests: method, headers, form/JSON/raw body or
//! GET query, cookies, and the hops of a redirect chain.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, COOKIE};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::envelope::UrlEntry;

/// Headers the client computes itself; a copied browser header set often carries
/// stale values for them (the seed's example has `content-length: 59`).
const COMPUTED_HEADERS: [&str; 5] = [
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "accept-encoding",
];

/// What the url entry asks to send.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) url: Url,
    headers: HeaderMap,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Form(Vec<(String, String)>),
    Json(Value),
    Raw(String),
}

/// One request of a redirect chain.
pub(crate) struct Hop {
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// False after a 301/302/303 turned the request into a GET.
    pub(crate) with_body: bool,
}

impl RequestSpec {
    /// Reads the entry: `data` is a JSON body when the content-type says json, form
    /// fields when it is an object, a raw body when a string, and the query of a GET.
    pub(crate) fn from_entry(entry: &UrlEntry) -> Result<Self, String> {
        let url =
            Url::parse(entry.url.trim()).map_err(|e| format!("bad url {:?}: {e}", entry.url))?;
        let method_name = if entry.method.is_empty() {
            "GET"
        } else {
            entry.method.as_str()
        };
        let method = Method::from_bytes(method_name.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("bad method {:?}", entry.method))?;
        let headers = header_map(entry)?;
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let mut spec = RequestSpec {
            method,
            url,
            headers,
            body: Body::None,
        };
        spec.body = match &entry.data {
            Value::Null => Body::None,
            Value::Object(map) if map.is_empty() => Body::None,
            Value::String(text) if text.is_empty() => Body::None,
            Value::Object(_) if spec.method == Method::GET || spec.method == Method::HEAD => {
                spec.url
                    .query_pairs_mut()
                    .extend_pairs(form_pairs(&entry.data));
                Body::None
            }
            Value::String(text) => Body::Raw(text.clone()),
            data if json => Body::Json(data.clone()),
            Value::Object(_) => Body::Form(form_pairs(&entry.data)),
            data => Body::Json(data.clone()),
        };
        Ok(spec)
    }

    /// The first hop: the entry's own method, URL and body.
    pub(crate) fn first_hop(&self) -> Hop {
        Hop {
            method: self.method.clone(),
            url: self.url.clone(),
            with_body: true,
        }
    }

    /// The request for one hop, with the entry's headers and `cookie` (the task's
    /// cookies and the jar's, joined) when there is one.
    pub(crate) fn build(
        &self,
        client: &Client,
        hop: &Hop,
        cookie: Option<String>,
    ) -> RequestBuilder {
        let mut headers = self.headers.clone();
        if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(COOKIE, cookie);
        }
        let request = client.request(hop.method.clone(), hop.url.clone());
        if !hop.with_body {
            headers.remove(CONTENT_TYPE);
            return request.headers(headers);
        }
        let request = request.headers(headers);
        match &self.body {
            Body::None => request,
            Body::Form(pairs) => request.form(pairs),
            Body::Json(value) => request.json(value),
            Body::Raw(text) => request.body(text.clone()),
        }
    }

    /// The entry's own `cookie` header, if it set one.
    pub(crate) fn header_cookie(&self) -> Option<&str> {
        self.headers.get(COOKIE).and_then(|v| v.to_str().ok())
    }
}

impl Hop {
    /// The next hop after a redirect `status` to `location`, or None when the response
    /// is not a redirect to follow.
    pub(crate) fn follow(&self, status: StatusCode, location: Option<&HeaderValue>) -> Option<Hop> {
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            return None;
        }
        let url = self.url.join(location?.to_str().ok()?).ok()?;
        let keep = matches!(
            status,
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        );
        let keep = keep || self.method == Method::GET || self.method == Method::HEAD;
        Some(Hop {
            method: if keep {
                self.method.clone()
            } else {
                Method::GET
            },
            url,
            with_body: keep && self.with_body,
        })
    }
}

/// The task's `content.cookie` as a Cookie header value: a string is used as is, an
/// object becomes `k=v; k2=v2`.
pub(crate) fn task_cookie(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.trim().to_string(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    };
    (!text.is_empty()).then_some(text)
}

/// Joins cookie header values, skipping empty ones.
pub(crate) fn join_cookies<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let joined: Vec<&str> = parts
        .into_iter()
        .flatten()
        .filter(|p| !p.trim().is_empty())
        .collect();
    (!joined.is_empty()).then(|| joined.join("; "))
}

fn header_map(entry: &UrlEntry) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &entry.header {
        let lower = name.to_ascii_lowercase();
        if COMPUTED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let value = HeaderValue::from_str(&scalar(value))
            .map_err(|_| format!("bad value of header {name}"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

fn form_pairs(data: &Value) -> Vec<(String, String)> {
    data.as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default()
}

/// A JSON value as form or header text: strings bare, null empty, the rest as JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(method: &str, header: Value, data: Value) -> UrlEntry {
        UrlEntry {
            url: "http://example.com/a?x=1".into(),
            method: method.into(),
            header: header.as_object().cloned().unwrap_or_default(),
            data,
            ..UrlEntry::default()
        }
    }

    #[test]
    fn body_kind_follows_method_and_content_type() {
        let get =
            RequestSpec::from_entry(&entry("GET", json!({}), json!({"q": "a b", "n": 2}))).unwrap();
        let mut pairs: Vec<(String, String)> = get.url.query_pairs().into_owned().collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [("n", "2"), ("q", "a b"), ("x", "1")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let form = RequestSpec::from_entry(&entry(
            "post",
            json!({"content-length": "59"}),
            json!({"page": 15}),
        ))
        .unwrap();
        assert!(
            matches!(form.body, Body::Form(ref p) if p == &[("page".to_string(), "15".to_string())])
        );
        assert!(form.headers.is_empty(), "computed headers are dropped");
        let json_body = RequestSpec::from_entry(&entry(
            "POST",
            json!({"Content-Type": "application/json"}),
            json!({"a": 1}),
        ))
        .unwrap();
        assert!(matches!(json_body.body, Body::Json(_)));
    }

    #[test]
    fn redirects_turn_post_into_get_except_307_308() {
        let spec = RequestSpec::from_entry(&entry("POST", json!({}), json!({"a": 1}))).unwrap();
        let location = HeaderValue::from_static("/b");
        let hop = spec
            .first_hop()
            .follow(StatusCode::FOUND, Some(&location))
            .unwrap();
        assert_eq!(
            (hop.method, hop.with_body, hop.url.as_str()),
            (Method::GET, false, "http://example.com/b")
        );
        let hop = spec
            .first_hop()
            .follow(StatusCode::PERMANENT_REDIRECT, Some(&location))
            .unwrap();
        assert_eq!((hop.method, hop.with_body), (Method::POST, true));
        assert!(spec
            .first_hop()
            .follow(StatusCode::OK, Some(&location))
            .is_none());
    }

    #[test]
    fn task_cookie_accepts_string_and_object() {
        assert_eq!(task_cookie(&json!("a=1; b=2")).as_deref(), Some("a=1; b=2"));
        assert_eq!(
            task_cookie(&json!({"a": "1", "b": 2})).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(task_cookie(&json!("")), None);
    }
}
