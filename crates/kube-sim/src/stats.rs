//! Request counters by verb, counted since start (admin paths not counted).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The verbs requests are counted (and faults matched) by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    /// DELETE of one object and deletecollection alike.
    Delete,
}

impl Verb {
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s.to_ascii_lowercase().as_str() {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" | "post" => Verb::Create,
            "update" | "put" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" | "deletecollection" => Verb::Delete,
            _ => return None,
        })
    }
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    pub get: u64,
    pub list: u64,
    pub watch: u64,
    pub create: u64,
    pub update: u64,
    pub patch: u64,
    pub delete: u64,
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.get + self.list + self.watch + self.create + self.update + self.patch + self.delete
    }

    pub fn of(&self, verb: Verb) -> u64 {
        match verb {
            Verb::Get => self.get,
            Verb::List => self.list,
            Verb::Watch => self.watch,
            Verb::Create => self.create,
            Verb::Update => self.update,
            Verb::Patch => self.patch,
            Verb::Delete => self.delete,
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    counts: [AtomicU64; 7],
}

impl Counters {
    pub fn count(&self, verb: Verb) {
        self.counts[verb as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestStats {
        let c = |v: Verb| self.counts[v as usize].load(Ordering::Relaxed);
        RequestStats {
            get: c(Verb::Get),
            list: c(Verb::List),
            watch: c(Verb::Watch),
            create: c(Verb::Create),
            update: c(Verb::Update),
            patch: c(Verb::Patch),
            delete: c(Verb::Delete),
        }
    }
}
