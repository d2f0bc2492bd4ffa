//! YAML memory near the file's size (#13 item 5): the peak of the bytes
//! allocated while a large file is read, measured by a counting global
//! allocator in this test binary (bytes, not time, so a busy machine does
//! not change the figure). One test at a time: the counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use stagegate::core::yaml;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests share the counter: one measures at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What `f` allocated: the peak beyond what was live before it, and what
/// was still live after it (what its result keeps).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    let kept = LIVE.load(Ordering::SeqCst).saturating_sub(base);
    (out, PEAK.load(Ordering::SeqCst) - base, kept)
}

/// A manifest file as large repositories hold them: many documents of
/// Deployments and ConfigMaps, about `target` bytes.
fn many_documents(target: usize) -> String {
    let mut text = String::with_capacity(target + 4096);
    let mut i = 0;
    while text.len() < target {
        text.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  labels: {{app: web-{i}, tier: frontend}}\n  annotations:\n    description: \"the web front end, replica set {i}\"\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      containers:\n        - name: web\n          image: registry.example.com/shop/web:1.{i}.0\n          ports: [{{containerPort: 8080, name: http}}]\n          env:\n            - {{name: MODE, value: production}}\n            - {{name: INDEX, value: \"{i}\"}}\n          resources:\n            requests: {{cpu: 100m, memory: 128Mi}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\ndata:\n  greeting: hello from {i}\n  config.yaml: |\n    server:\n      port: 8080\n      workers: 4\n"
        ));
        i += 1;
    }
    text
}

/// One document holding a large ConfigMap (a bundled dashboard, a CA list):
/// few nodes, long strings.
fn one_large_document(target: usize) -> String {
    let mut text =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dashboards}\ndata:\n");
    let mut i = 0;
    while text.len() < target {
        text.push_str(&format!("  dashboard-{i}.json: |\n"));
        for line in 0..40 {
            text.push_str(&format!(
                "    {{\"panel\": {line}, \"title\": \"requests per second by route\", \"expr\": \"sum(rate(http_requests_total[5m]))\"}}\n"
            ));
        }
        i += 1;
    }
    text
}

const FIFTEEN_MB: usize = 15 * 1024 * 1024;

fn ratio(bytes: usize, of: usize) -> f64 {
    bytes as f64 / of as f64
}

/// Stage discovery reads every YAML file of a repository, manifest or not:
/// the whole file's text, then one document at a time for its `apiVersion`
/// and `kind`. Bound: the peak within `bound` times the file (text included).
fn discovery_within(name: &str, text: &str, bound: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    std::fs::write(root.join("big.yaml"), text).expect("write");
    std::fs::write(
        root.join("stages.yaml"),
        "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: app}\nspec: {path: app}\n",
    )
    .expect("write");
    let ((stages, problems), peak, _) =
        peak_of(|| stagegate::core::stage::discover_stages(&root, &root));
    assert!(problems.is_empty(), "{name}: {problems:?}");
    assert_eq!(stages.len(), 1, "{name}");
    println!(
        "{name}: discovery of a {} byte file: peak {peak} bytes ({:.2}x the file, its text included)",
        text.len(),
        ratio(peak, text.len())
    );
    assert!(
        peak <= bound * text.len(),
        "{name}: discovery of {} bytes peaked at {peak} bytes ({:.2}x), over {bound}x",
        text.len(),
        ratio(peak, text.len())
    );
}

/// Rendering keeps every object of a manifest as a value: that is the
/// caller's to keep. What parsing adds on top of it (events of one
/// document, no copies of the text) stays within `bound` times the file.
fn parse_overhead_within(name: &str, text: &str, bound: usize) {
    let (docs, peak, kept) = peak_of(|| yaml::parse_documents(text));
    let docs = docs.unwrap_or_else(|e| panic!("{name}: {e}")).len();
    let overhead = peak - kept;
    println!(
        "{name}: parse of {} bytes, {docs} documents: peak {peak} bytes ({:.2}x), values kept {kept} bytes ({:.2}x), parser's own {overhead} bytes ({:.2}x)",
        text.len(),
        ratio(peak, text.len()),
        ratio(kept, text.len()),
        ratio(overhead, text.len())
    );
    assert!(
        overhead <= bound * text.len(),
        "{name}: parsing {} bytes needed {overhead} bytes beyond the values it returned ({:.2}x), over {bound}x",
        text.len(),
        ratio(overhead, text.len())
    );
}

#[test]
fn discovering_stages_beside_a_15_mb_manifest_file_stays_near_its_size() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    discovery_within("many documents", &many_documents(FIFTEEN_MB), 2);
    discovery_within("one large document", &one_large_document(FIFTEEN_MB), 4);
}

#[test]
fn parsing_a_15_mb_file_adds_at_most_twice_its_size_to_the_values_it_returns() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    parse_overhead_within("many documents", &many_documents(FIFTEEN_MB), 2);
    parse_overhead_within("one large document", &one_large_document(FIFTEEN_MB), 2);
}

#[test]
fn a_file_over_the_limit_is_refused_naming_the_limit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let text = one_large_document(yaml::MAX_FILE_BYTES + 1024);
    let (result, peak, _) = peak_of(|| yaml::parse_documents(&text));
    let err = result.expect_err("over the limit");
    assert!(
        err.to_string().contains(&yaml::MAX_FILE_BYTES.to_string()),
        "{err}"
    );
    // Refused before anything is parsed.
    assert!(peak < 1024 * 1024, "{peak} bytes allocated to refuse");
}
