//! Failed logins, counted per account and address, to slow password guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per account and address: past `limit` in a row, further tries
/// are refused until `lockout` has passed.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Caller, (u32, Instant)>>,
}

/// Who tried to log in: the account name and the peer's address.
type Caller = (String, Option<IpAddr>);

impl Throttle {
    /// How long the caller must still wait, if it is locked out.
    pub fn locked_for(
        &self,
        user: &str,
        address: Option<IpAddr>,
        limit: u32,
        lockout: Duration,
    ) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = failures.get(&(user.to_owned(), address))?;
        let waited = last.elapsed();
        (*count >= limit && waited < lockout).then(|| lockout - waited)
    }

    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.clear();
        }
        let entry = failures
            .entry((user.to_owned(), address))
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    pub fn succeeded(&self, user: &str, address: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&(user.to_owned(), address));
    }
}
