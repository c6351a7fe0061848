//! The parser stage: a parse task's results become rows in `parsing_data` (one array
//! of rows per result, each row carrying the result's url), plus new fetch tasks for
//! the links that follow rules find and the dedup filter has not seen (pages already
//! parsed count as seen).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use url::Url;

use super::canon::{canonical, canonical_str};
use super::config::{FollowConfig, ParserConfig};
use super::dedup::DedupFilter;
use super::envelope::{Extra, LocalTask, ResultEntry, TaskBody, UrlEntry, UrlItem};
use super::error::CrawlError;
use super::extract::CompiledRule;
use super::fetcher::skip_reason;

/// Key of a url entry's `extra` map holding its distance from the first page.
pub const DEPTH_KEY: &str = "depth";

/// Applies the `[[crawl.parsers]]` rules. One parser is shared by every task of a
/// worker, so its dedup filter covers them all.
pub struct Parser {
    rules: Vec<CompiledRule>,
    by_platform: HashMap<String, usize>,
    dedup: Mutex<DedupFilter>,
    follow: FollowConfig,
    /// `max_depth` of the rules that set one, by platform.
    max_depth: HashMap<String, u64>,
}

/// What parsing one task gives.
#[derive(Debug, Clone, Default)]
pub struct ParseOutput {
    /// The task with `parsing_data` filled: `parsing_data[i]` is the array of rows
    /// read from `result[i]` (empty when the page failed or gave none).
    pub parsed: LocalTask,
    /// New fetch tasks for the links to follow (each with `urls` filled).
    pub follow: Vec<LocalTask>,
    /// Pages that could not be parsed, each naming the rule (or the missing rule).
    /// The first `fetch_failed` of them are pages whose fetch failed.
    pub errors: Vec<String>,
    /// Pages whose fetch failed (counted by the fetcher; not the parser's errors).
    pub fetch_failed: usize,
    /// Pages not parsed because their content type is not one the rule reads.
    pub skipped_content_type: usize,
    /// Links not followed because their host is not in `allowed_domains`.
    pub offsite: usize,
}

/// What parsing one page adds to the task's counts.
#[derive(Default)]
struct Tally {
    links: Vec<Link>,
    errors: Vec<String>,
    fetch_errors: Vec<String>,
    skipped_content_type: usize,
    offsite: usize,
}

/// One followed link, before packing into tasks.
struct Link {
    url: Url,
    platform: String,
    depth: u64,
    parent: usize,
}

impl Parser {
    /// Compiles the rules; a bad selector, path, regex or transform is an error that
    /// names the rule.
    pub fn new(config: &ParserConfig) -> Result<Self, CrawlError> {
        let mut rules = Vec::new();
        let mut by_platform = HashMap::new();
        let mut max_depth = HashMap::new();
        for rule in &config.rules {
            if rule.max_depth > 0 {
                max_depth.insert(rule.platform.clone(), u64::from(rule.max_depth));
            }
            let compiled = CompiledRule::new(rule).map_err(CrawlError::Config)?;
            if by_platform
                .insert(compiled.platform.clone(), rules.len())
                .is_some()
            {
                return Err(CrawlError::Config(format!(
                    "parser rule {:?}: platform {:?} already has a rule",
                    rule.name, rule.platform
                )));
            }
            rules.push(compiled);
        }
        Ok(Parser {
            rules,
            by_platform,
            dedup: Mutex::new(DedupFilter::new(&config.dedup)),
            follow: config.follow.clone(),
            max_depth,
        })
    }

    /// Parses every result of `task`. Never panics on a page: a page the rules cannot
    /// read gives an empty row list and an entry in `errors`.
    pub fn parse_task(&self, mut task: LocalTask) -> ParseOutput {
        let mut tally = Tally::default();
        let mut parsing_data = Vec::with_capacity(task.body.result.len());
        for (index, result) in task.body.result.iter().enumerate() {
            let entry = task.body.urls.get(index).map(|item| &item.url);
            let rows = self.parse_result(result, entry, index, &mut tally);
            parsing_data.push(Value::Array(rows.into_iter().map(Value::Object).collect()));
        }
        task.body.parsing_data = parsing_data;
        let follow = self.follow_tasks(&task, std::mem::take(&mut tally.links));
        let fetch_failed = tally.fetch_errors.len();
        let mut errors = tally.fetch_errors;
        errors.append(&mut tally.errors);
        let rows = task.rows().count();
        if errors.is_empty() {
            log::info!(target: "scripts", "guid={} topic={} parsed rows={} follow={} ok", task.guid, task.topic, rows, follow.len());
        } else {
            log::error!(target: "scripts", "guid={} topic={} parsed rows={} errors={}: {}", task.guid, task.topic, rows, errors.len(), errors[0]);
        }
        ParseOutput {
            parsed: task,
            follow,
            errors,
            fetch_failed,
            skipped_content_type: tally.skipped_content_type,
            offsite: tally.offsite,
        }
    }

    /// Fingerprints held by the link filter.
    pub fn dedup_len(&self) -> usize {
        self.dedup.lock().expect("dedup lock").len()
    }

    fn parse_result(
        &self,
        result: &ResultEntry,
        entry: Option<&UrlEntry>,
        index: usize,
        tally: &mut Tally,
    ) -> Vec<Map<String, Value>> {
        if skip_reason(result).is_some() {
            return Vec::new();
        }
        if !result.sucess {
            let why = result.error.as_deref().unwrap_or("no response");
            tally.fetch_errors.push(format!(
                "url {} not parsed: fetch failed: {why}",
                result.url
            ));
            return Vec::new();
        }
        let errors = &mut tally.errors;
        let platform = match (&result.platform, entry) {
            (Some(platform), _) if !platform.is_empty() => platform.as_str(),
            (_, Some(entry)) => entry.platform.as_str(),
            _ => "",
        };
        let Some(rule) = self.by_platform.get(platform).map(|&i| &self.rules[i]) else {
            errors.push(format!(
                "url {} not parsed: no parser rule for platform {platform:?}",
                result.url
            ));
            return Vec::new();
        };
        let Some(page_url) = page_url(result) else {
            errors.push(format!(
                "rule {:?}: url {:?} is not absolute",
                rule.name, result.url
            ));
            return Vec::new();
        };
        self.mark_seen(&result.url, &page_url);
        if !rule.reads_content_type(content_type(result)) {
            log::debug!(
                "url {} skipped: content type {:?}",
                result.url,
                content_type(result)
            );
            tally.skipped_content_type += 1;
            return Vec::new();
        }
        let extracted = rule.apply(&result.html, &page_url);
        tally.offsite += extracted.offsite;
        errors.extend(
            extracted
                .errors
                .into_iter()
                .map(|e| format!("{e} (url {})", result.url)),
        );
        let depth = entry.map_or(0, depth_of) + 1;
        tally
            .links
            .extend(extracted.links.into_iter().map(|(url, platform)| Link {
                url,
                platform,
                depth,
                parent: index,
            }));
        let mut rows = extracted.rows;
        let url = Value::String(canonical_str(&result.url));
        let final_url = Value::String(canonical(&page_url).to_string());
        for row in &mut rows {
            row.insert("url".to_string(), url.clone());
            row.insert("final_url".to_string(), final_url.clone());
        }
        rows
    }

    /// A page that was fetched and parsed is not followed again: its URL (and the
    /// URL it was finally served from) go into the filter.
    fn mark_seen(&self, requested: &str, served: &Url) {
        let mut dedup = self.dedup.lock().expect("dedup lock");
        dedup.insert(&canonical_str(requested));
        dedup.insert(canonical(served).as_str());
    }

    /// Packs the new links (deduplicated, within `max_depth`) into fetch tasks of at
    /// most `batch` urls that keep the parent task's topic, guid, content, crawl and
    /// callback; url entries copy their parent entry's headers and topic.
    fn follow_tasks(&self, task: &LocalTask, links: Vec<Link>) -> Vec<LocalTask> {
        let global = u64::from(self.follow.max_depth);
        let fresh: Vec<Link> = {
            let mut dedup = self.dedup.lock().expect("dedup lock");
            links
                .into_iter()
                .filter(|link| {
                    let max = self
                        .max_depth
                        .get(&link.platform)
                        .copied()
                        .unwrap_or(global);
                    max == 0 || link.depth <= max
                })
                .filter(|link| dedup.insert(link.url.as_str()))
                .collect()
        };
        fresh
            .chunks(self.follow.batch.max(1))
            .map(|chunk| {
                let urls = chunk
                    .iter()
                    .map(|link| UrlItem::new(self.follow_entry(task, link, chunk.len())))
                    .collect();
                LocalTask {
                    topic: task.topic.clone(),
                    guid: task.guid.clone(),
                    body: TaskBody {
                        crawl: task.body.crawl.clone(),
                        urls,
                        abstime: task.body.abstime.clone(),
                        content: task.body.content.clone(),
                        callback: task.body.callback.clone(),
                        ..TaskBody::default()
                    },
                    extra: task.extra.clone(),
                }
            })
            .collect()
    }

    fn follow_entry(&self, task: &LocalTask, link: &Link, count: usize) -> UrlEntry {
        let parent = task.body.urls.get(link.parent).map(|item| &item.url);
        let mut header = parent.map(|p| p.header.clone()).unwrap_or_default();
        header.retain(|name, _| !name.eq_ignore_ascii_case("content-type"));
        let mut extra = Extra::new();
        extra.insert(DEPTH_KEY.to_string(), Value::from(link.depth));
        UrlEntry {
            url: link.url.to_string(),
            method: "GET".to_string(),
            header,
            platform: link.platform.clone(),
            task_count: count as u64,
            useproxy: parent.map_or(Value::Null, |p| p.useproxy.clone()),
            guid: task.guid.clone(),
            topic: parent.map_or_else(|| "parsing".to_string(), |p| p.topic.clone()),
            extra,
            ..UrlEntry::default()
        }
    }
}

/// Relative links resolve against the URL the page was finally served from.
fn page_url(result: &ResultEntry) -> Option<Url> {
    let final_url = result
        .other
        .as_ref()
        .and_then(|other| other.get("final_url"))
        .and_then(Value::as_str);
    final_url
        .and_then(|u| Url::parse(u).ok())
        .or_else(|| Url::parse(&result.url).ok())
}

/// The response's `Content-Type`, from the headers the fetcher kept.
fn content_type(result: &ResultEntry) -> Option<&str> {
    let headers = result.headers.as_ref()?.as_object()?;
    headers.get("content-type")?.as_str()
}

fn depth_of(entry: &UrlEntry) -> u64 {
    entry
        .extra
        .get(DEPTH_KEY)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
