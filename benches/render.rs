//! Rendering speed against `kubectl kustomize`, on the same generated input:
//! a base of N manifests (Deployments, Services, ConfigMaps, Jobs, one file
//! each) and an overlay with images, namespace, labels and an RFC 6902 patch
//! on every Deployment. Run with `cargo bench --bench render`; set
//! `RENDER_BENCH_SIZES=250,500` to choose sizes and `RENDER_BENCH_SKIP_KUBECTL=1`
//! to time stagegate alone.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stagegate::core::labels::{MANAGED_BY_KEY, SPEC_HASH_ANNOTATION, STAGE_LABEL};
use stagegate::core::render::render_stage;
use stagegate::core::stage::Stage;

#[path = "../tests/render_random/tree.rs"]
mod tree;

fn manifest(i: usize) -> (String, String) {
    let name = format!("svc-{i:05}");
    let text = match i % 10 {
        0..=3 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n\
             spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n\
             \x20     labels:\n        app: {name}\n    spec:\n      containers:\n        - name: app\n\
             \x20         image: registry.example.com/shop/app:1.0.0\n          ports:\n            - containerPort: 8080\n\
             \x20         envFrom:\n            - configMapRef:\n                name: {name}-config\n"
        ),
        4..=6 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n\
             \x20 ports:\n    - port: 80\n      targetPort: 8080\n"
        ),
        7 | 8 => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\ndata:\n  LOG_LEVEL: info\n  REGION: eu-west-1\n"
        ),
        _ => format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n\
             \x20     restartPolicy: Never\n      containers:\n        - name: migrate\n\
             \x20         image: registry.example.com/shop/migrate:1.0.0\n          command: [\"/bin/migrate\", \"up\"]\n"
        ),
    };
    (format!("{name}.yaml"), text)
}

const OVERLAY: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
namespace: shop
labels:
  - pairs:
      app.kubernetes.io/part-of: shop
    includeTemplates: true
images:
  - name: registry.example.com/shop/app
    newTag: 2.0.0
  - name: registry.example.com/shop/migrate
    newName: mirror.example.com/shop/migrate
patches:
  - target:
      group: apps
      kind: Deployment
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
      - op: add
        path: /spec/template/spec/containers/0/resources
        value:
          limits:
            memory: 256Mi
";

fn generate(root: &Path, n: usize) -> std::io::Result<()> {
    let base = root.join("base");
    fs::create_dir_all(&base)?;
    fs::create_dir_all(root.join("overlay"))?;
    let mut kustomization = String::from("resources:\n");
    for i in 0..n {
        let (file, text) = manifest(i);
        let _ = writeln!(kustomization, "  - {file}");
        fs::write(base.join(file), text)?;
    }
    fs::write(base.join("kustomization.yaml"), kustomization)?;
    fs::write(root.join("overlay/kustomization.yaml"), OVERLAY)?;
    fs::create_dir_all(root.join("stages"))?;
    fs::write(
        root.join("stages/stage.yaml"),
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: bench\nspec:\n  path: ./overlay\n",
    )
}

/// Median wall time of `stagegate render ROOT --path stages`, output read
/// to the end as a pipe would.
fn time_stagegate_process(root: &Path) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .arg("render")
            .arg(root)
            .args(["--path", "stages"])
            .stderr(Stdio::null())
            .output();
        runs.push(start.elapsed());
        match output {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "stagegate render failed on the benchmark input: {}",
                o.status
            ),
            Err(e) => panic!("cannot run stagegate: {e}"),
        }
    }
    runs.sort();
    runs[runs.len() / 2]
}

/// Seeds `0..n` of the random tree generator against kubectl kustomize.
fn random_parity(n: u64) {
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let (mut same, mut refused, mut differs) = (0u64, 0u64, Vec::new());
    let start = Instant::now();
    for seed in 0..n {
        match tree::compare(seed, scratch.path()) {
            tree::Outcome::Same => same += 1,
            tree::Outcome::BothRefused => refused += 1,
            tree::Outcome::Differs(text) => {
                println!("seed {seed} differs:\n{text}");
                differs.push(seed);
            }
        }
    }
    println!(
        "random parity: {n} trees in {:.0} s: {same} the same, {refused} refused by both, {} different {:?}",
        start.elapsed().as_secs_f64(),
        differs.len(),
        differs
    );
    assert!(
        differs.is_empty(),
        "stagegate differs from kubectl kustomize"
    );
}

/// Median of several runs, so one scheduling hiccup on a shared machine
/// does not decide the figure; returns the last rendering too.
fn time_stagegate(root: &Path, n: usize) -> (Duration, Vec<Value>) {
    let stage = Stage::new("bench", "overlay");
    let mut runs = Vec::new();
    let mut last = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let objects = match render_stage(root, &stage) {
            Ok(objects) => objects,
            Err(e) => panic!("stagegate failed to render the benchmark input: {e}"),
        };
        runs.push(start.elapsed());
        assert_eq!(objects.len(), n, "every generated manifest is rendered");
        last = objects.into_iter().map(|m| m.value).collect();
    }
    runs.sort();
    (runs[runs.len() / 2], last)
}

fn time_kubectl(root: &Path) -> (Duration, Vec<Value>) {
    let start = Instant::now();
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("overlay"))
        .stderr(Stdio::null())
        .output();
    let elapsed = start.elapsed();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "kubectl kustomize failed on the benchmark input: {}",
            o.status
        ),
        Err(e) => panic!(
            "kubectl is needed for the comparison ({e}); set RENDER_BENCH_SKIP_KUBECTL=1 to skip it"
        ),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let objects = match stagegate::core::yaml::parse_documents(&text) {
        Ok(docs) => docs.into_iter().map(|d| d.value).collect(),
        Err(e) => panic!("kubectl kustomize printed invalid YAML: {e}"),
    };
    (elapsed, objects)
}

/// Objects as canonical strings (keys sorted, stagegate's own labels and
/// annotation removed), sorted: two renderings are the same set of objects
/// when these are equal.
fn canonical_set(objects: Vec<Value>) -> Vec<String> {
    fn sorted(v: Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let mut out: Vec<String> = objects
        .into_iter()
        .map(|mut v| {
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                for (field, keys) in [
                    ("labels", &[MANAGED_BY_KEY, STAGE_LABEL][..]),
                    ("annotations", &[SPEC_HASH_ANNOTATION][..]),
                ] {
                    if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                        for k in keys {
                            map.remove(*k);
                        }
                        if map.is_empty() {
                            meta.remove(field);
                        }
                    }
                }
            }
            sorted(v).to_string()
        })
        .collect();
    out.sort();
    out
}

fn main() {
    // `cargo bench` passes `--bench`, which this harness-less main ignores.
    if let Some(n) = std::env::var("RENDER_BENCH_RANDOM")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        random_parity(n);
        return;
    }
    let sizes: Vec<usize> = std::env::var("RENDER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![250, 500, 1000, 2000]);
    let skip_kubectl = std::env::var_os("RENDER_BENCH_SKIP_KUBECTL").is_some();

    println!(
        "render: base + overlay (images, namespace, labels, RFC 6902 patch on all Deployments)"
    );
    println!(
        "{:>9} | {:>14} | {:>12} | {:>17} | {:>22} | {:>8} | {:>8} | same objects",
        "manifests",
        "stagegate (ms)",
        "µs/manifest",
        "process (ms)",
        "kubectl kustomize (ms)",
        "in-proc",
        "process"
    );
    for n in sizes {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        if let Err(e) = generate(dir.path(), n) {
            panic!("cannot write the benchmark input: {e}");
        }
        let (ours, rendered) = time_stagegate(dir.path(), n);
        let process = time_stagegate_process(dir.path());
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let per = ours.as_secs_f64() * 1e6 / n as f64;
        if skip_kubectl {
            println!(
                "{n:>9} | {:>14.1} | {per:>12.1} | {:>17.1} | {:>22} | {:>8} | {:>8} |",
                ms(ours),
                ms(process),
                "-",
                "-",
                "-"
            );
            continue;
        }
        let (theirs, reference) = time_kubectl(dir.path());
        let same = canonical_set(rendered) == canonical_set(reference);
        println!(
            "{n:>9} | {:>14.1} | {per:>12.1} | {:>17.1} | {:>22.0} | {:>7.0}x | {:>7.0}x | {}",
            ms(ours),
            ms(process),
            ms(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64(),
            theirs.as_secs_f64() / process.as_secs_f64(),
            if same { "yes" } else { "NO" }
        );
        assert!(
            same,
            "stagegate and kubectl kustomize rendered different objects at {n} manifests"
        );
    }
}
