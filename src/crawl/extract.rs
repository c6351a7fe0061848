//! Parser rules compiled once (CSS selectors, JSONPaths, transforms) and applied to
//! one page: rows of fields, and the links to follow.

use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};
use serde_json_path::JsonPath;
use url::Url;

use super::config::{FieldRule, ParserRule};
use super::follow::{CompiledFollow, Refused};
use super::transform::Transform;

/// What a rule found on one page.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub(crate) rows: Vec<Map<String, Value>>,
    pub(crate) links: Vec<(Url, String)>,
    pub(crate) errors: Vec<String>,
    /// Links dropped because their host is not in `allowed_domains`.
    pub(crate) offsite: usize,
}

/// A `[[crawl.parsers]]` entry, ready to run.
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) platform: String,
    kind: Kind,
    item: Option<Locator>,
    item_text: String,
    allow_empty: bool,
    fields: Vec<CompiledField>,
    follow: Vec<CompiledFollow>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Html,
    Json,
    Auto,
}

/// A CSS selector (HTML pages) and/or a JSONPath (JSON bodies).
pub(super) struct Locator {
    pub(super) css: Option<Selector>,
    pub(super) json: Option<JsonPath>,
}

enum Extract {
    Text,
    OuterHtml,
    InnerHtml,
    Attr(String),
}

struct CompiledField {
    name: String,
    locator: Option<Locator>,
    extract: Extract,
    all: bool,
    required: bool,
    transforms: Vec<Transform>,
}

/// A page, parsed once for every rule that reads it.
enum Document {
    Html(Html),
    Json(Value),
}

impl CompiledRule {
    /// Compiles `rule`; the error names the rule and the bad part.
    pub(crate) fn new(rule: &ParserRule) -> Result<Self, String> {
        let fail = |what: String| format!("parser rule {:?}: {what}", rule.name);
        if rule.name.is_empty() {
            return Err(fail("name is empty".into()));
        }
        let kind = match rule.kind.as_str() {
            "html" => Kind::Html,
            "json" => Kind::Json,
            "auto" | "" => Kind::Auto,
            other => {
                return Err(fail(format!(
                    "kind must be html, json or auto, not {other:?}"
                )))
            }
        };
        let item = match rule.item.as_str() {
            "" => None,
            text => Some(Locator::new(text, text, kind).map_err(|e| fail(format!("item: {e}")))?),
        };
        let mut fields = Vec::new();
        for field in &rule.fields {
            fields.push(
                CompiledField::new(field, kind)
                    .map_err(|e| fail(format!("field {:?}: {e}", field.name)))?,
            );
        }
        let mut follow = Vec::new();
        for link in &rule.follow {
            follow.push(
                CompiledFollow::new(link, &rule.platform, kind)
                    .map_err(|e| fail(format!("follow: {e}")))?,
            );
        }
        Ok(CompiledRule {
            name: rule.name.clone(),
            platform: rule.platform.clone(),
            kind,
            item,
            item_text: rule.item.clone(),
            allow_empty: rule.allow_empty,
            fields,
            follow,
        })
    }

    /// Applies the rule to `body`, fetched from `page_url`. Errors name the rule.
    pub(crate) fn apply(&self, body: &str, page_url: &Url) -> Extracted {
        let document = match self.document(body) {
            Ok(document) => document,
            Err(error) => return self.failed(error),
        };
        let items = match &document {
            Document::Html(html) => self
                .html_items(html)
                .map(|items| items.into_iter().map(Node::Html).collect()),
            Document::Json(value) => self
                .json_items(value)
                .map(|items| items.into_iter().map(Node::Json).collect()),
        };
        let items: Vec<Node<'_>> = match items {
            Ok(items) => items,
            Err(error) => return self.failed(error),
        };
        let base = base_url(&document, page_url);
        let page_url = &base;
        let mut out = Extracted::default();
        for (index, item) in items.iter().enumerate() {
            match self.row(item, page_url) {
                Ok(row) => out.rows.push(row),
                Err(error) => out
                    .errors
                    .push(format!("rule {:?} item {index}: {error}", self.name)),
            }
        }
        let whole_page_empty =
            self.item.is_none() && out.rows.first().is_some_and(|row| row.is_empty());
        if whole_page_empty && !self.fields.is_empty() {
            out.errors
                .push(format!("rule {:?}: no field matched the page", self.name));
        }
        out.rows
            .retain(|row| !row.is_empty() || self.fields.is_empty());
        (out.links, out.offsite) = self.links(&document, page_url);
        out
    }

    /// False when the rule cannot read a response of this content type: an `html`
    /// rule reads HTML and XML, an `auto` rule also JSON and text, a `json` rule all.
    pub(crate) fn reads_content_type(&self, content_type: Option<&str>) -> bool {
        let Some(value) = content_type.map(str::to_ascii_lowercase) else {
            return true;
        };
        let has = |parts: &[&str]| parts.iter().any(|p| value.contains(p));
        match self.kind {
            Kind::Json => true,
            Kind::Html => has(&["html", "xml"]),
            Kind::Auto => has(&["html", "xml", "json", "javascript", "text/"]),
        }
    }

    fn failed(&self, error: String) -> Extracted {
        Extracted {
            errors: vec![format!("rule {:?}: {error}", self.name)],
            ..Extracted::default()
        }
    }

    fn document(&self, body: &str) -> Result<Document, String> {
        let trimmed = body.trim_start();
        let looks_json = trimmed.starts_with('{') || trimmed.starts_with('[');
        match self.kind {
            Kind::Html => Ok(Document::Html(Html::parse_document(body))),
            Kind::Json => serde_json::from_str(body)
                .map(Document::Json)
                .map_err(|e| format!("body is not json: {e}")),
            Kind::Auto => match serde_json::from_str(body) {
                Ok(value) if looks_json => Ok(Document::Json(value)),
                _ => Ok(Document::Html(Html::parse_document(body))),
            },
        }
    }

    fn html_items<'a>(&self, html: &'a Html) -> Result<Vec<ElementRef<'a>>, String> {
        let Some(item) = &self.item else {
            return Ok(vec![html.root_element()]);
        };
        let css = item
            .css
            .as_ref()
            .ok_or("item is not a css selector (page is html)")?;
        let items: Vec<_> = html.select(css).collect();
        if items.is_empty() && !self.allow_empty {
            return Err(format!(
                "item selector {:?} matched nothing",
                self.item_text
            ));
        }
        Ok(items)
    }

    fn json_items<'a>(&self, value: &'a Value) -> Result<Vec<&'a Value>, String> {
        let Some(item) = &self.item else {
            return Ok(vec![value]);
        };
        let path = item
            .json
            .as_ref()
            .ok_or("item is not a field path (body is json)")?;
        let mut items = path.query(value).all();
        if let [Value::Array(list)] = items.as_slice() {
            items = list.iter().collect();
        }
        if items.is_empty() && !self.allow_empty {
            return Err(format!("item path {:?} matched nothing", self.item_text));
        }
        Ok(items)
    }

    fn row(&self, item: &Node<'_>, page_url: &Url) -> Result<Map<String, Value>, String> {
        let mut row = Map::new();
        for field in &self.fields {
            let values: Vec<Value> = item
                .values(field)
                .into_iter()
                .filter_map(|raw| field.transform(raw, page_url))
                .collect();
            let value = if field.all {
                Some(Value::Array(values))
            } else {
                values.into_iter().next()
            };
            match value {
                Some(value) => {
                    row.insert(field.name.clone(), value);
                }
                None if field.required => {
                    return Err(format!("required field {:?} matched nothing", field.name))
                }
                None => {}
            }
        }
        Ok(row)
    }

    fn links(&self, document: &Document, page_url: &Url) -> (Vec<(Url, String)>, usize) {
        let mut links = Vec::new();
        let mut offsite = 0;
        for follow in &self.follow {
            let raw: Vec<String> = match document {
                Document::Html(html) => follow.locator.css.as_ref().map_or_else(Vec::new, |css| {
                    html.select(css)
                        .filter_map(|el| el.value().attr(&follow.attr).map(str::to_string))
                        .collect()
                }),
                Document::Json(value) => {
                    follow.locator.json.as_ref().map_or_else(Vec::new, |path| {
                        path.query(value)
                            .all()
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                }
            };
            for href in raw {
                match follow.accept(&href, page_url) {
                    Ok(url) => links.push((url, follow.platform.clone())),
                    Err(Refused::Offsite) => offsite += 1,
                    Err(Refused::Filtered) => {}
                }
            }
        }
        (links, offsite)
    }
}

/// One item of a page: an element or a JSON value.
enum Node<'a> {
    Html(ElementRef<'a>),
    Json(&'a Value),
}

impl Node<'_> {
    /// The raw values a field reads from this item, before transforms.
    fn values(&self, field: &CompiledField) -> Vec<Value> {
        match self {
            Node::Html(element) => match field.locator.as_ref().and_then(|l| l.css.as_ref()) {
                Some(css) => element
                    .select(css)
                    .filter_map(|el| field.read(el))
                    .collect(),
                None if field.locator.is_some() => Vec::new(),
                None => field.read(*element).into_iter().collect(),
            },
            Node::Json(value) => match field.locator.as_ref().and_then(|l| l.json.as_ref()) {
                Some(path) => path.query(value).all().into_iter().cloned().collect(),
                None if field.locator.is_some() => Vec::new(),
                None => vec![(*value).clone()],
            },
        }
    }
}

impl Locator {
    /// Compiles what the kind needs: `css` for html, `path` for json, whichever
    /// parses for auto.
    pub(super) fn new(css: &str, path: &str, kind: Kind) -> Result<Self, String> {
        let selector = match (css.is_empty() || kind == Kind::Json, Selector::parse(css)) {
            (true, _) => None,
            (false, Ok(selector)) => Some(selector),
            (false, Err(e)) if kind == Kind::Html => return Err(format!("bad css {css:?}: {e}")),
            (false, Err(_)) => None,
        };
        let json = match (path.is_empty() || kind == Kind::Html, json_path(path)) {
            (true, _) => None,
            (false, Ok(json)) => Some(json),
            (false, Err(e)) if kind == Kind::Json => return Err(e),
            (false, Err(_)) => None,
        };
        if selector.is_none() && json.is_none() {
            return Err(format!(
                "no usable css selector {css:?} or field path {path:?}"
            ));
        }
        Ok(Locator {
            css: selector,
            json,
        })
    }
}

/// The kind a field or link locator is compiled for: in an `auto` rule, a locator
/// with only a selector is CSS and one with only a path is JSON.
pub(super) fn locator_kind(rule_kind: Kind, selector: &str, path: &str) -> Kind {
    match (rule_kind, selector.is_empty(), path.is_empty()) {
        (Kind::Auto, false, true) => Kind::Html,
        (Kind::Auto, true, false) => Kind::Json,
        (kind, _, _) => kind,
    }
}

/// A JSONPath from the short form: `data.items[*].name` means `$.data.items[*].name`.
fn json_path(path: &str) -> Result<JsonPath, String> {
    let full = if path.starts_with('$') {
        path.to_string()
    } else if path.starts_with('[') {
        format!("${path}")
    } else {
        format!("$.{path}")
    };
    JsonPath::parse(&full).map_err(|e| format!("bad field path {path:?}: {e}"))
}

impl CompiledField {
    fn new(field: &FieldRule, kind: Kind) -> Result<Self, String> {
        if field.name.is_empty() || field.name == "url" || field.name == "final_url" {
            return Err(
                "name must be set and not `url` or `final_url` (the page's columns)".into(),
            );
        }
        let locator = if field.selector.is_empty() && field.path.is_empty() {
            None
        } else {
            let kind = locator_kind(kind, &field.selector, &field.path);
            Some(Locator::new(&field.selector, &field.path, kind)?)
        };
        let extract = match (field.attr.as_str(), field.content.as_str()) {
            ("", "text") | ("", "") => Extract::Text,
            ("", "html") => Extract::OuterHtml,
            ("", "inner_html") => Extract::InnerHtml,
            (attr, "text" | "attr" | "") if !attr.is_empty() => Extract::Attr(attr.to_string()),
            (_, other) => {
                return Err(format!(
                    "content {other:?} needs text, html, inner_html, or attr with attr set"
                ))
            }
        };
        let transforms = field
            .transforms
            .iter()
            .map(|t| Transform::parse(t))
            .collect::<Result<_, _>>()?;
        Ok(CompiledField {
            name: field.name.clone(),
            locator,
            extract,
            all: field.all,
            required: field.required,
            transforms,
        })
    }

    fn read(&self, element: ElementRef<'_>) -> Option<Value> {
        let text = match &self.extract {
            Extract::Text => element.text().collect::<String>(),
            Extract::OuterHtml => element.html(),
            Extract::InnerHtml => element.inner_html(),
            Extract::Attr(name) => element.value().attr(name)?.to_string(),
        };
        Some(Value::String(text))
    }

    /// Runs the transforms; None when one finds nothing (the field is then missing).
    fn transform(&self, value: Value, page_url: &Url) -> Option<Value> {
        self.transforms
            .iter()
            .try_fold(value, |value, t| t.apply(value, page_url))
    }
}

/// The page's `<base href>` resolved against its URL, else the URL itself.
fn base_url(document: &Document, page_url: &Url) -> Url {
    let Document::Html(html) = document else {
        return page_url.clone();
    };
    let selector = Selector::parse("base[href]").expect("a valid selector");
    html.select(&selector)
        .next()
        .and_then(|el| el.value().attr("href"))
        .and_then(|href| page_url.join(href.trim()).ok())
        .unwrap_or_else(|| page_url.clone())
}
