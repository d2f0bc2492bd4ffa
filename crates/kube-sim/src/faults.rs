//! Fault injection: failing requests, latency, closed watches, expired watch
//! history, and a server that is unreachable for a while.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::stats::Verb;
use crate::store::Store;

/// Fail the next `count` requests matching `verb` (any when `None`) and whose
/// path starts with `path` (any when `None`), answering `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRule {
    #[serde(default)]
    pub verb: Option<Verb>,
    #[serde(default)]
    pub path: Option<String>,
    pub code: u16,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl FailRule {
    pub fn new(verb: Option<Verb>, path: Option<&str>, code: u16, count: u32) -> Self {
        FailRule {
            verb,
            path: path.map(str::to_string),
            code,
            count,
        }
    }

    fn matches(&self, verb: Verb, path: &str) -> bool {
        self.verb.is_none_or(|v| v == verb)
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<FailRule>,
    latency: Duration,
    unreachable_until: Option<Instant>,
}

/// The fault controls of one server; also reachable under `/sim/faults/…`.
pub struct Faults {
    state: Mutex<State>,
    close_watches: watch::Sender<u64>,
    store: Arc<Mutex<Store>>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Mutex<Store>>) -> Self {
        Faults {
            state: Mutex::new(State::default()),
            close_watches: watch::channel(0).0,
            store,
        }
    }

    /// Fail the next `rule.count` matching requests with `rule.code`.
    pub fn fail_next(&self, rule: FailRule) {
        if let Ok(mut s) = self.state.lock() {
            s.rules.push(rule);
        }
    }

    /// Delay every API request by `latency` (zero removes it).
    pub fn set_latency(&self, latency: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.latency = latency;
        }
    }

    /// Ends every open watch now; clients re-watch from their last resourceVersion.
    pub fn close_watches(&self) {
        self.close_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history (an etcd compaction) and closes every watch,
    /// so a client re-watching from an older resourceVersion gets the
    /// in-stream 410 Expired and must relist.
    pub fn expire_watches(&self) {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .compact();
        self.close_watches();
    }

    /// For `duration`, new connections are closed at once and requests on
    /// open ones fail with 503; open watches are closed.
    pub fn unreachable_for(&self, duration: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.unreachable_until = Some(Instant::now() + duration);
        }
        self.close_watches();
    }

    /// The API server restarts with its data kept: for `down` it answers
    /// no one (as [`Faults::unreachable_for`]), every watch ends, and its
    /// watch cache starts anew, so a client re-watching from before gets
    /// 410 Expired and relists. Objects, uids and resourceVersions stay.
    pub fn restart_for(&self, down: Duration) {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .compact();
        self.unreachable_for(down);
    }

    /// The API server comes back after `down` without its data: every
    /// object is gone (custom resource definitions and what they served
    /// too), and the cluster holds what a new one holds (namespaces
    /// `default`, `kube-system`…, the node, the bootstrap RBAC). Returns the
    /// last resourceVersion before the reset: in [`crate::KubeSim::history`],
    /// the changes after it are the new cluster's.
    pub fn reset_for(&self, down: Duration) -> u64 {
        let last = {
            let mut store = self
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = store.current_rv();
            store.wipe();
            crate::bootstrap(&mut store);
            last
        };
        self.unreachable_for(down);
        last
    }

    /// Removes every fault.
    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::default();
        }
    }

    pub fn is_unreachable(&self) -> bool {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.unreachable_until)
            .is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn latency(&self) -> Duration {
        self.state.lock().map(|s| s.latency).unwrap_or_default()
    }

    /// The code to fail this request with, consuming one use of the first matching rule.
    pub(crate) fn take_failure(&self, verb: Verb, path: &str) -> Option<u16> {
        let mut s = self.state.lock().ok()?;
        let i = s
            .rules
            .iter()
            .position(|r| r.count > 0 && r.matches(verb, path))?;
        let code = s.rules[i].code;
        s.rules[i].count -= 1;
        if s.rules[i].count == 0 {
            s.rules.remove(i);
        }
        Some(code)
    }

    pub(crate) fn watch_closes(&self) -> watch::Receiver<u64> {
        self.close_watches.subscribe()
    }
}
