//! The stored objects, the resourceVersion clock and the bounded event
//! history that watches replay from.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::resources::{Registry, ResKey, ResourceType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as every watcher of its resource sees it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: ResKey,
    pub namespace: String,
    pub etype: EventType,
    pub object: Arc<Value>,
    pub previous: Option<Arc<Value>>,
    json: OnceLock<Bytes>,
}

impl Event {
    /// The object serialized once, however many watchers send it.
    pub fn object_json(&self) -> Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default()))
            .clone()
    }
}

pub type ObjKey = (String, String);

/// Everything behind the server's one lock.
pub struct Store {
    pub registry: Registry,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    history_cap: usize,
    /// A watch from a resourceVersion below this one is too old (410 Expired).
    floor: u64,
    tx: broadcast::Sender<Arc<Event>>,
    /// Objects with a deletionTimestamp (and since when), checked by the garbage collector.
    pub terminating: HashMap<(ResKey, ObjKey), Instant>,
    /// How long a deleted pod stays Terminating before it goes away.
    pub pod_termination: Duration,
    ip_counter: u32,
    /// Dependents by the uid their ownerReferences name, for garbage collection.
    owned_by: HashMap<String, HashSet<(ResKey, ObjKey)>>,
    /// Every change since recording started (`None`: not recording).
    recorded: Option<Vec<Arc<Event>>>,
}

impl Store {
    pub fn new(history_cap: usize, channel_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(channel_cap.max(16));
        Store {
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            floor: 0,
            tx,
            terminating: HashMap::new(),
            pod_termination: Duration::ZERO,
            ip_counter: 0,
            owned_by: HashMap::new(),
            recorded: None,
        }
    }

    /// The next free address in 10.96.0.0/16, for Service clusterIPs.
    pub fn allocate_ip(&mut self) -> String {
        self.ip_counter += 1;
        let n = self.ip_counter + 9;
        format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events after `rv` still in the history, or `None` if `rv` is too old.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.floor {
            return None;
        }
        let start = self.history.partition_point(|e| e.rv <= rv);
        Some(self.history.range(start..).cloned().collect())
    }

    /// From now on, keep every change (see [`crate::history`]); a second
    /// call keeps what was recorded.
    pub fn start_recording(&mut self) {
        self.recorded.get_or_insert_with(Vec::new);
    }

    /// The changes kept since [`Store::start_recording`], oldest first.
    pub fn recorded(&self) -> Vec<crate::history::Change> {
        self.recorded
            .iter()
            .flatten()
            .map(|e| crate::history::Change::of(e))
            .collect()
    }

    /// Loses every object, as an API server restored empty does (the data
    /// store gone), and starts again from the built-in types. Kept across
    /// it: the recording of changes, so a test can judge what came after,
    /// and the resourceVersion counter, so that one history orders both
    /// sides (a real reset restarts it; no client may compare versions
    /// anyway). Every watch from before gets 410 Expired and must relist.
    pub fn wipe(&mut self) {
        self.registry = Registry::with_builtins();
        self.objects.clear();
        self.terminating.clear();
        self.owned_by.clear();
        self.ip_counter = 0;
        self.compact();
    }

    /// Forgets the whole history, as an etcd compaction would; watches from
    /// any earlier resourceVersion then get 410 Expired.
    pub fn compact(&mut self) {
        let rv = self.next_rv();
        self.history.clear();
        self.floor = rv;
    }

    pub fn get(&self, key: &ResKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of one resource, in one namespace or all, in (namespace, name) order.
    pub fn list(&self, key: &ResKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(key) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => m.values().cloned().collect(),
        }
    }

    /// Stores an object under a fresh resourceVersion and tells the watchers.
    pub fn put(&mut self, rt: &ResourceType, obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        let stored = self.put_one(rt, obj, rv);
        // One Event, two APIs: the twin has the same resourceVersion.
        if let Some((key, twin)) = crate::events::twin(rt, &stored)
            && let Some(other) = self.registry.get(&key.0, &key.1).cloned()
        {
            self.put_one(&other, twin, rv);
        }
        stored
    }

    fn put_one(&mut self, rt: &ResourceType, mut obj: Value, rv: u64) -> Arc<Value> {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let ns = crate::util::namespace_of(&obj).to_string();
        let name = crate::util::name_of(&obj).to_string();
        let obj = Arc::new(obj);
        let previous = self
            .objects
            .entry(rt.key())
            .or_default()
            .insert((ns.clone(), name.clone()), obj.clone());
        self.index_owners(
            &rt.key(),
            &(ns.clone(), name.clone()),
            previous.as_deref(),
            Some(&obj),
        );
        let k = (rt.key(), (ns.clone(), name));
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            self.terminating.entry(k).or_insert_with(Instant::now);
        } else {
            self.terminating.remove(&k);
        }
        let etype = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(rv, rt.key(), ns, etype, obj.clone(), previous);
        obj
    }

    /// Removes an object; watchers get DELETED with the last state.
    pub fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Value>> {
        let rv = self.next_rv();
        let gone = self.remove_one(rt, ns, name, rv)?;
        if let Some((key, _)) = crate::events::twin(rt, &gone)
            && let Some(other) = self.registry.get(&key.0, &key.1).cloned()
        {
            self.remove_one(&other, ns, name, rv);
        }
        Some(gone)
    }

    fn remove_one(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        rv: u64,
    ) -> Option<Arc<Value>> {
        let key = rt.key();
        let old = self
            .objects
            .get_mut(&key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.index_owners(&key, &(ns.to_string(), name.to_string()), Some(&old), None);
        self.terminating
            .remove(&(key.clone(), (ns.to_string(), name.to_string())));
        let mut last = (*old).clone();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let last = Arc::new(last);
        self.emit(
            rv,
            key,
            ns.to_string(),
            EventType::Deleted,
            last.clone(),
            Some(old),
        );
        Some(last)
    }

    fn emit(
        &mut self,
        rv: u64,
        key: ResKey,
        namespace: String,
        etype: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(Event {
            rv,
            key,
            namespace,
            etype,
            object,
            previous,
            json: OnceLock::new(),
        });
        if let Some(recorded) = &mut self.recorded {
            recorded.push(ev.clone());
        }
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Drops a whole resource (its CRD went away); watchers get DELETED for each.
    pub fn drop_resource(&mut self, rt: &ResourceType) {
        let keys: Vec<ObjKey> = self
            .objects
            .get(&rt.key())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in keys {
            self.remove(rt, &ns, &name);
        }
        self.objects.remove(&rt.key());
    }

    /// Every stored object whose ownerReferences name `uid`, as (type, ns, name).
    pub fn dependents(&self, owner_uid: &str, _owner_ns: &str) -> Vec<(ResKey, String, String)> {
        let mut out: Vec<(ResKey, String, String)> = self
            .owned_by
            .get(owner_uid)
            .map(|deps| {
                deps.iter()
                    .map(|(key, (ns, name))| (key.clone(), ns.clone(), name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn index_owners(
        &mut self,
        key: &ResKey,
        obj_key: &ObjKey,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        for uid in old.map(owner_uids).unwrap_or_default() {
            if let Some(deps) = self.owned_by.get_mut(&uid) {
                deps.remove(&(key.clone(), obj_key.clone()));
                if deps.is_empty() {
                    self.owned_by.remove(&uid);
                }
            }
        }
        for uid in new.map(owner_uids).unwrap_or_default() {
            self.owned_by
                .entry(uid)
                .or_default()
                .insert((key.clone(), obj_key.clone()));
        }
    }

    /// Every namespaced object in a namespace, as (type, name).
    pub fn in_namespace(&self, ns: &str) -> Vec<(ResKey, String)> {
        let mut out = Vec::new();
        for (key, m) in &self.objects {
            for ((_, name), _) in m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
            {
                out.push((key.clone(), name.clone()));
            }
        }
        out
    }
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
