//! `[[crawl.spiders]]`: a crawl in a few lines, the way a Scrapy `CrawlSpider` reads.
//! A spider becomes a parser rule (platform `spider:NAME`) and one seed task whose
//! urls are its start URLs, sent to the fetcher; the parser's follow rules and the
//! storer do the rest.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use super::config::{FieldRule, FollowRule, ParserRule};
use super::envelope::{LocalTask, TaskBody, UrlEntry, UrlItem};
use super::stage::{envelope, FETCH_TOPIC, PARSE_TOPIC};
use crate::task::NewTask;

/// `[[crawl.spiders]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpiderConfig {
    /// Names the spider (its parser rule and seed task).
    pub name: String,
    /// The pages the crawl starts from.
    pub start_urls: Vec<String>,
    /// Host names whose pages are followed, subdomains included, any port. Empty:
    /// the hosts of `start_urls`.
    pub allowed_domains: Vec<String>,
    /// Link rules; a link is followed when one rule takes it. Empty: no link is
    /// followed (only the start URLs are fetched).
    pub follow: Vec<SpiderRule>,
    /// Links further than this many hops from a start URL are not followed; 0: no
    /// limit.
    pub max_depth: u32,
    /// Column name -> `css:SELECTOR`, `css:SELECTOR::attr(NAME)`, `json:PATH`, each
    /// optionally followed by `| transform` (see `[[crawl.parsers.fields]]`), or a
    /// full field table.
    pub fields: BTreeMap<String, FieldSpec>,
    /// The table the rows go to; default: the spider's name.
    pub table: String,
    /// A JSON lines (`.jsonl`) or CSV (`.csv`) file the rows go to instead of the
    /// table; relative to bus.toml.
    pub feed: String,
}

/// One follow rule of a spider.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpiderRule {
    /// Regexes; a link matching one of them is followed. Empty: every link.
    pub allow: Patterns,
    /// Regexes; a link matching one of them is not followed.
    pub deny: Patterns,
    /// Extensions not followed; default Scrapy's `IGNORED_EXTENSIONS`.
    pub deny_extensions: Option<Vec<String>>,
    /// The link elements; default every `a[href]` and `area[href]`.
    pub selector: String,
}

impl Default for SpiderRule {
    fn default() -> Self {
        SpiderRule {
            allow: Patterns::default(),
            deny: Patterns::default(),
            deny_extensions: None,
            selector: "a[href], area[href]".to_string(),
        }
    }
}

/// One regex or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns::Many(Vec::new())
    }
}

impl Patterns {
    /// One regex matching any of them; empty when there are none.
    fn joined(&self) -> String {
        let list = match self {
            Patterns::One(one) => vec![one.clone()],
            Patterns::Many(many) => many.clone(),
        };
        let list: Vec<String> = list
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| format!("(?:{p})"))
            .collect();
        list.join("|")
    }
}

/// A field: the short text form or a full `[[crawl.parsers.fields]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Short(String),
    Full(FieldRule),
}

impl SpiderConfig {
    /// The platform of the spider's pages.
    pub fn platform(&self) -> String {
        format!("spider:{}", self.name)
    }

    /// The task type (table) of the spider's rows.
    pub fn table(&self) -> &str {
        if self.table.is_empty() {
            &self.name
        } else {
            &self.table
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |what: String| format!("spider {:?}: {what}", self.name);
        if self.name.is_empty() {
            return Err(fail("name is empty".into()));
        }
        if self.start_urls.is_empty() {
            return Err(fail("start_urls is empty".into()));
        }
        for url in &self.start_urls {
            Url::parse(url).map_err(|e| fail(format!("start url {url:?}: {e}")))?;
        }
        let feed = self.feed.to_ascii_lowercase();
        if !(feed.is_empty() || feed.ends_with(".jsonl") || feed.ends_with(".csv")) {
            return Err(fail(format!(
                "feed {:?} must end in .jsonl or .csv",
                self.feed
            )));
        }
        self.parser_rule().map(|_| ()).map_err(fail)
    }

    /// The parser rule that reads the spider's pages.
    pub fn parser_rule(&self) -> Result<ParserRule, String> {
        let mut fields = Vec::new();
        for (name, spec) in &self.fields {
            fields.push(field_rule(name, spec)?);
        }
        let json = fields.iter().any(|f| !f.path.is_empty());
        let domains = if self.allowed_domains.is_empty() {
            self.start_urls
                .iter()
                .filter_map(|u| Url::parse(u).ok()?.host_str().map(str::to_string))
                .collect()
        } else {
            self.allowed_domains.clone()
        };
        let follow = self
            .follow
            .iter()
            .map(|rule| FollowRule {
                selector: rule.selector.clone(),
                allow: rule.allow.joined(),
                deny: rule.deny.joined(),
                deny_extensions: rule.deny_extensions.clone(),
                allowed_domains: domains.clone(),
                same_host: false,
                ..FollowRule::default()
            })
            .collect();
        Ok(ParserRule {
            name: self.name.clone(),
            platform: self.platform(),
            kind: if json { "json" } else { "html" }.to_string(),
            item: if json { "" } else { "html" }.to_string(),
            allow_empty: true,
            fields,
            follow,
            max_depth: self.max_depth,
        })
    }

    /// The seed task: the start URLs as one crawl task for the fetcher.
    pub fn seed_task(&self) -> NewTask {
        let platform = self.platform();
        let urls = self
            .start_urls
            .iter()
            .map(|url| {
                UrlItem::new(UrlEntry {
                    url: url.clone(),
                    method: "GET".to_string(),
                    platform: platform.clone(),
                    task_count: self.start_urls.len() as u64,
                    topic: PARSE_TOPIC.to_string(),
                    guid: self.seed_guid(),
                    ..UrlEntry::default()
                })
            })
            .collect();
        let local = LocalTask {
            topic: self.table().to_string(),
            guid: self.seed_guid(),
            body: TaskBody {
                urls,
                ..TaskBody::default()
            },
            extra: Default::default(),
        };
        let mut task = envelope(local, FETCH_TOPIC, FETCH_TOPIC);
        task.guid = Some(self.seed_guid());
        task
    }

    fn seed_guid(&self) -> String {
        format!("spider-{}", self.name)
    }
}

/// A field from its spider form.
fn field_rule(name: &str, spec: &FieldSpec) -> Result<FieldRule, String> {
    let text = match spec {
        FieldSpec::Full(rule) => {
            return Ok(FieldRule {
                name: name.to_string(),
                ..rule.clone()
            })
        }
        FieldSpec::Short(text) => text,
    };
    let mut parts = text.split(" | ");
    let locator = parts.next().unwrap_or_default().trim();
    let mut rule = FieldRule {
        name: name.to_string(),
        ..FieldRule::default()
    };
    rule.transforms.extend(parts.map(|t| t.trim().to_string()));
    if let Some(path) = locator.strip_prefix("json:") {
        rule.path = path.to_string();
    } else if let Some(css) = locator.strip_prefix("css:") {
        let (css, attr) = match css.rsplit_once("::attr(") {
            Some((css, rest)) => (css, rest.trim_end_matches(')')),
            None => (css.trim_end_matches("::text"), ""),
        };
        rule.selector = css.to_string();
        rule.attr = attr.to_string();
    } else {
        return Err(format!(
            "field {name:?}: {text:?} must start with css: or json:"
        ));
    }
    Ok(rule)
}

/// A field spec from the command line's `NAME=css:SELECTOR` form.
pub fn parse_field_arg(arg: &str) -> Result<(String, FieldSpec), String> {
    let (name, spec) = arg
        .split_once('=')
        .ok_or_else(|| format!("field {arg:?} must be NAME=css:SELECTOR or NAME=json:PATH"))?;
    let spec = FieldSpec::Short(spec.to_string());
    field_rule(name, &spec)?;
    Ok((name.to_string(), spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_fields_read_css_attr_json_and_transforms() {
        let rule = field_rule(
            "link",
            &FieldSpec::Short("css:a.next::attr(href) | absolute_url".into()),
        )
        .unwrap();
        assert_eq!(
            (rule.selector.as_str(), rule.attr.as_str()),
            ("a.next", "href")
        );
        assert_eq!(rule.transforms, ["trim", "absolute_url"]);
        let rule = field_rule("t", &FieldSpec::Short("css:title::text".into())).unwrap();
        assert_eq!(rule.selector, "title");
        let rule = field_rule("n", &FieldSpec::Short("json:data.name".into())).unwrap();
        assert_eq!(rule.path, "data.name");
        assert!(field_rule("x", &FieldSpec::Short("title".into())).is_err());
    }

    #[test]
    fn allowed_domains_default_to_the_start_hosts() {
        let spider = SpiderConfig {
            name: "s".into(),
            start_urls: vec!["http://docs.example.org:8080/".into()],
            follow: vec![SpiderRule::default()],
            ..SpiderConfig::default()
        };
        let rule = spider.parser_rule().unwrap();
        assert_eq!(rule.follow[0].allowed_domains, ["docs.example.org"]);
        assert_eq!(rule.platform, "spider:s");
    }
}
