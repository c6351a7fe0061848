//! robots.txt, fetched once per origin (scheme, host, port) and kept in a bounded
//! cache: which URLs the fetcher may request, and the origin's Crawl-delay. A
//! robots.txt that is missing (4xx) or cannot be read (5xx, network) allows every URL,
//! as in Scrapy.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Url};
use texting_robots::Robot;
use tokio::sync::OnceCell;

/// What one origin's robots.txt says.
pub(crate) enum Rules {
    AllowAll,
    Parsed(Box<Robot>),
}

impl Rules {
    /// True when `url` may be fetched.
    pub(crate) fn allowed(&self, url: &Url) -> bool {
        match self {
            Rules::AllowAll => true,
            Rules::Parsed(robot) => robot.allowed(url.as_str()),
        }
    }

    /// The Crawl-delay for our agent, if any.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self {
            Rules::AllowAll => None,
            Rules::Parsed(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(3600.0))),
        }
    }
}

/// The robots.txt of every origin the fetcher has asked about.
pub(crate) struct RobotsCache {
    agent: String,
    origins: Mutex<HashMap<String, Arc<OnceCell<Arc<Rules>>>>>,
    max_origins: usize,
}

impl RobotsCache {
    /// A cache matching rules for `agent` (the product token of the User-Agent),
    /// holding at most `max_origins` origins.
    pub(crate) fn new(agent: &str, max_origins: usize) -> Self {
        let token = agent.split('/').next().unwrap_or(agent).trim().to_string();
        RobotsCache {
            agent: token,
            origins: Mutex::new(HashMap::new()),
            max_origins: max_origins.max(1),
        }
    }

    /// The rules of `url`'s origin, fetching its robots.txt with `client` the first
    /// time, while holding what `permit` gives (the fetcher's limits); concurrent
    /// callers wait for the one fetch.
    pub(crate) async fn rules<P>(
        &self,
        client: &Client,
        url: &Url,
        permit: impl Future<Output = P>,
    ) -> Arc<Rules> {
        let origin = url.origin().ascii_serialization();
        let cell = {
            let mut origins = self.origins.lock().expect("robots cache lock");
            if origins.len() >= self.max_origins && !origins.contains_key(&origin) {
                origins.clear();
            }
            Arc::clone(origins.entry(origin.clone()).or_default())
        };
        cell.get_or_init(|| async {
            let _permit = permit.await;
            Arc::new(self.fetch(client, &origin).await)
        })
        .await
        .clone()
    }

    async fn fetch(&self, client: &Client, origin: &str) -> Rules {
        let address = format!("{origin}/robots.txt");
        let response = match client.get(&address).send().await {
            Ok(response) => response,
            Err(error) => {
                log::debug!("robots.txt {address}: {error}; every url allowed");
                return Rules::AllowAll;
            }
        };
        if !response.status().is_success() {
            log::debug!(
                "robots.txt {address}: status {}; every url allowed",
                response.status()
            );
            return Rules::AllowAll;
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(_) => return Rules::AllowAll,
        };
        match Robot::new(&self.agent, &body) {
            Ok(robot) => Rules::Parsed(Box::new(robot)),
            Err(error) => {
                log::warn!("robots.txt {address} does not parse ({error}); every url allowed");
                Rules::AllowAll
            }
        }
    }
}
