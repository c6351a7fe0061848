//! Follow rules compiled once: which links of a page become fetch work (allow and
//! deny regexes, ignored extensions, allowed domains or the page's own host), each
//! as its canonical URL.

use regex::Regex;
use url::Url;

use super::canon::canonical;
use super::config::FollowRule;
use super::extract::{locator_kind, Kind, Locator};

/// Scrapy's `IGNORED_EXTENSIONS`: links to these are not pages.
pub const IGNORED_EXTENSIONS: &[&str] = &[
    "7z", "7zip", "bz2", "rar", "tar", "tar.gz", "xz", "zip", "gz", "mng", "pct", "bmp", "gif",
    "jpg", "jpeg", "png", "pst", "psp", "tif", "tiff", "ai", "drw", "dxf", "eps", "ps", "svg",
    "cdr", "ico", "webp", "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "3gp",
    "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4a", "m4v", "flv",
    "webm", "xls", "xlsm", "xlsx", "xltm", "xltx", "potm", "potx", "ppt", "pptm", "pptx", "pps",
    "doc", "docb", "docm", "docx", "dotm", "dotx", "odt", "ods", "odg", "odp", "css", "pdf", "exe",
    "bin", "rss", "dmg", "iso", "apk", "jar", "sh", "rb", "js",
];

/// A `[[crawl.parsers.follow]]` entry, ready to run.
pub(crate) struct CompiledFollow {
    pub(super) locator: Locator,
    pub(super) attr: String,
    pub(super) platform: String,
    allow: Option<Regex>,
    deny: Option<Regex>,
    extensions: Vec<String>,
    domains: Vec<String>,
    same_host: bool,
}

/// Why a link was not followed.
pub(crate) enum Refused {
    Offsite,
    Filtered,
}

impl CompiledFollow {
    pub(crate) fn new(rule: &FollowRule, platform: &str, kind: Kind) -> Result<Self, String> {
        let kind = locator_kind(kind, &rule.selector, &rule.path);
        let allow = optional_regex("allow", &rule.allow)?;
        let deny = optional_regex("deny", &rule.deny)?;
        let extensions = match &rule.deny_extensions {
            Some(list) => list
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            None => IGNORED_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        };
        let domains = rule
            .allowed_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        Ok(CompiledFollow {
            locator: Locator::new(&rule.selector, &rule.path, kind)?,
            attr: rule.attr.clone(),
            platform: if rule.platform.is_empty() {
                platform.to_string()
            } else {
                rule.platform.clone()
            },
            allow,
            deny,
            extensions,
            domains,
            same_host: rule.same_host,
        })
    }

    /// The canonical absolute http(s) URL of `href`, if the rule follows it.
    pub(crate) fn accept(&self, href: &str, page_url: &Url) -> Result<Url, Refused> {
        let url = page_url.join(href.trim()).map_err(|_| Refused::Filtered)?;
        let url = canonical(&url);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Filtered);
        }
        if !self.host_ok(&url, page_url) {
            return Err(Refused::Offsite);
        }
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|re| re.is_match(url.as_str()));
        let denied = self
            .deny
            .as_ref()
            .is_some_and(|re| re.is_match(url.as_str()));
        let path = url.path().to_ascii_lowercase();
        let ignored = self.extensions.iter().any(|ext| {
            path.len() > ext.len()
                && path.ends_with(ext.as_str())
                && path[..path.len() - ext.len()].ends_with('.')
        });
        if allowed && !denied && !ignored {
            Ok(url)
        } else {
            Err(Refused::Filtered)
        }
    }

    /// `allowed_domains` (subdomains included, any port), else `same_host`.
    fn host_ok(&self, url: &Url, page_url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.domains.is_empty() {
            return self.domains.iter().any(|domain| {
                host == *domain
                    || (host.len() > domain.len()
                        && host.ends_with(domain.as_str())
                        && host[..host.len() - domain.len()].ends_with('.'))
            });
        }
        !self.same_host
            || (url.host_str() == page_url.host_str()
                && url.port_or_known_default() == page_url.port_or_known_default())
    }
}

fn optional_regex(what: &str, pattern: &str) -> Result<Option<Regex>, String> {
    match pattern {
        "" => Ok(None),
        pattern => Regex::new(pattern)
            .map(Some)
            .map_err(|e| format!("bad {what} regex {pattern:?}: {e}")),
    }
}
