//! core/v1 Events and events.k8s.io/v1 Events are one resource on a real
//! server, seen through two APIs. kube-sim keeps a twin of each Event in the
//! other API, so an Event written through either is read through both
//! (`kube::runtime::events::Recorder` writes events.k8s.io/v1;
//! `kubectl get events` and `kubectl describe` read core/v1).

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

pub fn is_core(rt: &ResourceType) -> bool {
    rt.is("", "events")
}

pub fn is_events_api(rt: &ResourceType) -> bool {
    rt.is("events.k8s.io", "events")
}

fn copy(from: &Value, to: &mut Map<String, Value>, src: &str, dst: &str) {
    if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
        to.insert(dst.to_string(), v.clone());
    }
}

/// events.k8s.io/v1 form of a core/v1 Event.
pub fn core_to_events_api(core: &Value) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    m.insert("kind".into(), json!("Event"));
    copy(core, &mut m, "metadata", "metadata");
    copy(core, &mut m, "involvedObject", "regarding");
    copy(core, &mut m, "related", "related");
    copy(core, &mut m, "message", "note");
    copy(core, &mut m, "reason", "reason");
    copy(core, &mut m, "type", "type");
    copy(core, &mut m, "action", "action");
    copy(core, &mut m, "eventTime", "eventTime");
    copy(core, &mut m, "series", "series");
    copy(core, &mut m, "reportingInstance", "reportingInstance");
    copy(core, &mut m, "source", "deprecatedSource");
    copy(core, &mut m, "firstTimestamp", "deprecatedFirstTimestamp");
    copy(core, &mut m, "lastTimestamp", "deprecatedLastTimestamp");
    copy(core, &mut m, "count", "deprecatedCount");
    let controller = core
        .get("reportingComponent")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        .or_else(|| core.pointer("/source/component"))
        .cloned();
    if let Some(c) = controller {
        m.insert("reportingController".into(), c);
    }
    Value::Object(m)
}

/// core/v1 form of an events.k8s.io/v1 Event.
pub fn events_api_to_core(ev: &Value) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("kind".into(), json!("Event"));
    copy(ev, &mut m, "metadata", "metadata");
    copy(ev, &mut m, "regarding", "involvedObject");
    copy(ev, &mut m, "related", "related");
    copy(ev, &mut m, "note", "message");
    copy(ev, &mut m, "reason", "reason");
    copy(ev, &mut m, "type", "type");
    copy(ev, &mut m, "action", "action");
    copy(ev, &mut m, "eventTime", "eventTime");
    copy(ev, &mut m, "series", "series");
    copy(ev, &mut m, "reportingController", "reportingComponent");
    copy(ev, &mut m, "reportingInstance", "reportingInstance");
    copy(ev, &mut m, "deprecatedSource", "source");
    copy(ev, &mut m, "deprecatedFirstTimestamp", "firstTimestamp");
    copy(ev, &mut m, "deprecatedLastTimestamp", "lastTimestamp");
    copy(ev, &mut m, "deprecatedCount", "count");
    if !m.contains_key("involvedObject") {
        m.insert("involvedObject".into(), json!({}));
    }
    Value::Object(m)
}

/// Where an Event's LAST SEEN comes from, as the real printers (`kubectl
/// get events`, `kubectl events`) read it: the series' last observation,
/// else `lastTimestamp`, else `firstTimestamp`, else `eventTime` (Events
/// written through events.k8s.io/v1 have only `eventTime` and `series`).
pub fn last_seen_pointer(core: &Value) -> &'static str {
    let set = |p: &str| core.pointer(p).is_some_and(|v| !v.is_null() && v != "");
    if set("/series/lastObservedTime") {
        "/series/lastObservedTime"
    } else if set("/lastTimestamp") {
        "/lastTimestamp"
    } else if set("/firstTimestamp") {
        "/firstTimestamp"
    } else {
        "/eventTime"
    }
}

/// The twin of an Event written through one API, for the other.
pub fn twin(rt: &ResourceType, obj: &Value) -> Option<((String, String), Value)> {
    if is_core(rt) {
        Some((
            ("events.k8s.io".into(), "events".into()),
            core_to_events_api(obj),
        ))
    } else if is_events_api(rt) {
        Some((("".into(), "events".into()), events_api_to_core(obj)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_the_shared_fields() {
        let core = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Job", "name": "pi"},
            "message": "hello", "reason": "Created", "type": "Normal",
            "source": {"component": "job-controller"}, "count": 2
        });
        let ev = core_to_events_api(&core);
        assert_eq!(ev["regarding"]["name"], "pi");
        assert_eq!(ev["note"], "hello");
        assert_eq!(ev["reportingController"], "job-controller");
        let back = events_api_to_core(&ev);
        assert_eq!(back["message"], "hello");
        assert_eq!(back["count"], 2);
        assert_eq!(back["involvedObject"], core["involvedObject"]);
    }
}
