//! Events as the controllers of a real cluster record them (client-go's
//! legacy recorder, core/v1): `source.component` and `reportingComponent`
//! name the controller, `firstTimestamp`/`lastTimestamp` and `count` are
//! set, `eventTime` is null. The same event about the same object again
//! (same reason and message) is not a new object: its `count` goes up and
//! its `lastTimestamp` moves, as the recorder's aggregation does.

use serde_json::{Value, json};

use crate::ops::WriteOpts;
use crate::store::Store;
use crate::util::{name_of, namespace_of, now_rfc3339, str_at, uid_of};

/// The object an Event is about.
pub struct Regarding<'a> {
    pub obj: &'a Value,
    pub api_version: &'a str,
    pub kind: &'a str,
}

/// A stable name for one (object, reason, message, component): the
/// recorder's aggregation key, shaped as real event names (`<object>.<hex>`).
fn event_name(about: &Regarding<'_>, reason: &str, message: &str, component: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [uid_of(about.obj), reason, message, component]
        .join("\u{0}")
        .bytes()
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}.{h:016x}", name_of(about.obj))
}

pub fn record(
    store: &mut Store,
    about: Regarding<'_>,
    component: &str,
    etype: &str,
    reason: &str,
    message: &str,
) {
    let Some(rt) = store.registry.get("", "events").cloned() else {
        return;
    };
    let ns = match namespace_of(about.obj) {
        "" => "default",
        ns => ns,
    };
    let name = event_name(&about, reason, message, component);
    let now = now_rfc3339();
    if let Some(seen) = store.get(&rt.key(), ns, &name) {
        let mut next = (*seen).clone();
        next["count"] = json!(seen.get("count").and_then(Value::as_i64).unwrap_or(1) + 1);
        next["lastTimestamp"] = json!(now);
        store.put(&rt, next);
        return;
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": about.api_version,
            "kind": about.kind,
            "name": name_of(about.obj),
            "namespace": namespace_of(about.obj),
            "uid": uid_of(about.obj),
            "resourceVersion": str_at(about.obj, "/metadata/resourceVersion").unwrap_or(""),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": etype,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let opts = WriteOpts {
        manager: component.to_string(),
        api_version: "v1".into(),
        ..Default::default()
    };
    if let Err(e) = store.create(&rt, ns, event, &opts) {
        tracing::debug!(object = name_of(about.obj), reason, error = %e, "recording an event");
    }
}
