//! Events as `kubectl get events`, `--sort-by`, `--watch`, `kubectl events
//! --for` and `kubectl describe` show them: written by kube's Recorder
//! (events.k8s.io/v1, `eventTime` and `series`) and by the simulated
//! controllers (core/v1, `firstTimestamp`/`lastTimestamp`/`count`).

mod common;

use std::time::Duration;

use common::{DEPLOYMENT, Kubectl, WAIT, client, eventually, items, json, sim};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::io::AsyncBufReadExt;

fn reference(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

fn applied() -> Event {
    Event {
        type_: EventType::Normal,
        reason: "Applied".into(),
        note: Some("stage shop applied".into()),
        action: "Apply".into(),
        secondary: None,
    }
}

/// The LAST SEEN cell of the `kubectl get events` row whose line contains `needle`.
fn last_seen<'a>(table: &'a str, needle: &str) -> &'a str {
    let row = table
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle}:\n{table}"));
    row.split_whitespace().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_show_when_they_were_last_seen() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    k.ok(&["create", "configmap", "settings", "--from-literal=a=1"])
        .await;
    let recorder = Recorder::new(
        client(&sim),
        Reporter {
            controller: "stagegate".into(),
            instance: Some("stagegate-0".into()),
        },
    );
    recorder
        .publish(&applied(), &reference("settings"))
        .await
        .unwrap();

    let table = k.ok(&["get", "events"]).await;
    assert!(table.starts_with("LAST SEEN"), "{table}");
    let seen = last_seen(&table, "stage shop applied");
    assert!(
        seen.ends_with('s') && seen[..seen.len() - 1].parse::<u64>().is_ok(),
        "LAST SEEN is {seen:?}:\n{table}"
    );

    // The same event again is a series on the one object.
    recorder
        .publish(&applied(), &reference("settings"))
        .await
        .unwrap();
    let events = items(&json(&k, &["events"]).await);
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["series"]["count"], 2);
    assert!(ev["series"]["lastObservedTime"].is_string(), "{ev}");
    assert!(ev["eventTime"].is_string(), "{ev}");
    assert_eq!(ev["reportingComponent"], "stagegate");
    assert_eq!(ev["involvedObject"]["name"], "settings");
    // One object, two APIs, one resourceVersion.
    let name = ev["metadata"]["name"].as_str().unwrap();
    let new_api = json(&k, &["events.v1.events.k8s.io", name]).await;
    assert_eq!(
        new_api["metadata"]["resourceVersion"],
        ev["metadata"]["resourceVersion"]
    );
    assert_eq!(new_api["series"]["count"], 2);

    // `kubectl events --for` prints the series as a cluster does.
    let out = k.ok(&["events", "--for", "configmap/settings"]).await;
    assert!(out.contains("(x2 over"), "{out}");
    assert!(
        out.contains("Applied") && out.contains("stage shop applied"),
        "{out}"
    );
    assert!(!out.contains("<unknown>"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_events_sort_by_last_timestamp_and_count_repeats() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let f = k.file("web.yaml", DEPLOYMENT);
    k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    eventually("the ReplicaSet created its pods", || async {
        items(
            &json(
                &k,
                &["events", "--field-selector", "reason=SuccessfulCreate"],
            )
            .await,
        )
        .len()
            == 2
    })
    .await;
    let sets = items(&json(&k, &["replicasets"]).await);
    let rs = sets[0]["metadata"]["name"].as_str().unwrap().to_string();

    let out = k.ok(&["events", "--for", "deployment/web"]).await;
    assert!(
        out.contains("ScalingReplicaSet")
            && out.contains(&format!("Scaled up replica set {rs} to 2 from 0")),
        "{out}"
    );
    let described = k.ok(&["describe", "replicaset", &rs]).await;
    assert!(
        described.contains("SuccessfulCreate")
            && described.contains(&format!("Created pod: {rs}-")),
        "{described}"
    );

    // Scaling 2 → 3 twice is one Event seen twice.
    for replicas in ["3", "2", "3"] {
        k.ok(&["scale", "deployment/web", &format!("--replicas={replicas}")])
            .await;
        let message = format!("to {replicas} from");
        eventually("the scaling event", || async {
            items(&json(&k, &["events"]).await)
                .iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains(&message)))
        })
        .await;
        // Let the ReplicaSet follow before the next scale.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = format!("Scaled up replica set {rs} to 3 from 2");
    eventually("the repeated event counted twice", || async {
        items(&json(&k, &["events"]).await)
            .iter()
            .any(|e| e["message"] == message.as_str() && e["count"] == 2)
    })
    .await;
    let ev = items(&json(&k, &["events"]).await)
        .into_iter()
        .find(|e| e["message"] == message.as_str())
        .unwrap();
    assert!(
        ev["firstTimestamp"].as_str() <= ev["lastTimestamp"].as_str(),
        "{ev}"
    );
    assert_eq!(ev["source"]["component"], "deployment-controller");

    let sorted = k.ok(&["get", "events", "--sort-by=.lastTimestamp"]).await;
    let rows: Vec<&str> = sorted.lines().skip(1).collect();
    assert!(rows.len() >= 4, "{sorted}");
    assert!(!sorted.contains("<unknown>"), "{sorted}");
    // The first ScalingReplicaSet (0 → 2) comes before the last scale down.
    let first = rows.iter().position(|r| r.contains("to 2 from 0")).unwrap();
    let down = rows.iter().position(|r| r.contains("to 2 from 3")).unwrap();
    assert!(first < down, "{sorted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_events_watch_prints_new_events_with_their_age() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let dir = tempfile::tempdir().unwrap();
    sim.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["get", "events", "--watch"])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // Once the watch is open, the Recorder's event arrives as a row.
    k.ok(&["create", "configmap", "settings"]).await;
    let recorder = Recorder::new(
        client(&sim),
        Reporter {
            controller: "stagegate".into(),
            instance: None,
        },
    );
    let row = tokio::time::timeout(WAIT, async {
        let mut published = false;
        loop {
            if !published {
                tokio::time::sleep(Duration::from_millis(300)).await;
                recorder
                    .publish(&applied(), &reference("settings"))
                    .await
                    .unwrap();
                published = true;
            }
            match lines.next_line().await.unwrap() {
                Some(l) if l.contains("stage shop applied") => return l,
                Some(_) => {}
                None => panic!("kubectl get events --watch ended"),
            }
        }
    })
    .await
    .expect("the event arrives on the watch");
    let _ = child.kill().await;
    let seen = row.split_whitespace().next().unwrap_or("");
    assert!(seen.ends_with('s') && seen != "<unknown>", "{row}");
    assert!(row.contains("configmap/settings"), "{row}");
}
