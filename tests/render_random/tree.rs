//! Seeded random kustomization trees for parity runs against
//! `kubectl kustomize`: bases with ConfigMaps, Secrets, ServiceAccounts,
//! claims, Services and workloads that refer to them; overlays that reuse a
//! base under other prefixes, suffixes and namespaces; sibling bases with
//! same-named objects; patches, labels, annotations, replicas,
//! generators with their options and behaviours, and a component with a
//! generator, labels and a replacement. Shared by the test suite
//! (a few dozen seeds) and `cargo bench --bench render` (thousands).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// splitmix64: small, seedable, the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &["config", "settings", "app"];
const PREFIXES: &[&str] = &["", "", "blue-", "green-", "team-"];
const SUFFIXES: &[&str] = &["", "", "", "-v2"];
const NAMESPACES: &[&str] = &["", "", "apps", "staging"];

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create the tree's directories");
    }
    fs::write(path, text).expect("write a file of the tree");
}

/// One base: objects that refer to each other by name. Returns the name
/// of the ConfigMap it generates, if any.
fn base(rng: &mut Rng, dir: &Path, tag: &str) -> Option<String> {
    let cm = rng.pick(NAMES);
    let mut objects = String::new();
    let _ = write!(
        objects,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {cm}\ndata:\n  owner: {tag}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  value: {tag}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 1Gi}}}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n---\n"
    );
    let generated = rng.chance(50).then(|| format!("gen-{}", rng.pick(NAMES)));
    let gen_ref = generated
        .as_ref()
        .map(|g| format!("\n        - configMapRef: {{name: {g}}}"))
        .unwrap_or_default();
    let _ = write!(
        objects,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    revision: {}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n\
         \x20   spec:\n      serviceAccountName: runner\n      containers:\n      - name: web\n        image: example.com/web:1\n\
         \x20       envFrom:\n        - configMapRef: {{name: {cm}}}\n        - secretRef: {{name: token}}{gen_ref}\n\
         \x20     volumes:\n      - name: data\n        persistentVolumeClaim: {{claimName: data}}\n      - name: mode\n        secret: {{secretName: token, defaultMode: 0{}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: runner\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\n\
         subjects:\n- {{kind: ServiceAccount, name: runner{}}}\n",
        rng.below(3),
        rng.pick(&["400", "644", "755"]),
        if rng.chance(30) {
            ", namespace: default"
        } else {
            ""
        },
    );
    if rng.chance(30) {
        objects.push_str(
            "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n\
             \x20     restartPolicy: Never\n      containers: [{name: m, image: example.com/m:1, envFrom: [{secretRef: {name: token}}]}]\n",
        );
    }
    write(&dir.join("objects.yaml"), &objects);
    let mut k = String::from("resources:\n- objects.yaml\n");
    if let Some(g) = &generated {
        let _ = write!(
            k,
            "configMapGenerator:\n- name: {g}\n  literals: [MODE={tag}, N={}]\n",
            rng.below(9)
        );
        if rng.chance(30) {
            k.push_str("  options: {disableNameSuffixHash: true}\n");
        }
    }
    if rng.chance(30) {
        let _ = write!(
            k,
            "secretGenerator:\n- name: extra\n  literals: [key={tag}]\n"
        );
    }
    k.push_str(&transformers(rng));
    write(&dir.join("kustomization.yaml"), &k);
    generated
}

/// The fields every level may carry.
fn transformers(rng: &mut Rng) -> String {
    let mut k = String::new();
    let prefix = rng.pick(PREFIXES);
    if !prefix.is_empty() {
        let _ = writeln!(k, "namePrefix: {prefix}");
    }
    let suffix = rng.pick(SUFFIXES);
    if !suffix.is_empty() {
        let _ = writeln!(k, "nameSuffix: {suffix}");
    }
    let ns = rng.pick(NAMESPACES);
    if !ns.is_empty() {
        let _ = writeln!(k, "namespace: {ns}");
    }
    if rng.chance(30) {
        let _ = writeln!(k, "commonLabels:\n  tier: t{}", rng.below(3));
    }
    if rng.chance(30) {
        let _ = writeln!(k, "commonAnnotations:\n  note: n{}", rng.below(3));
    }
    if rng.chance(30) {
        let _ = writeln!(k, "replicas:\n- name: web\n  count: {}", 2 + rng.below(3));
    }
    if rng.chance(30) {
        let _ = writeln!(
            k,
            "patches:\n- target: {{kind: Deployment}}\n  patch: |\n    - op: add\n      path: /metadata/labels\n      value: {{patched: \"{}\"}}",
            rng.below(5)
        );
    }
    k
}

/// A random tree under `root`; returns the directory to build.
pub fn generate(seed: u64, root: &Path) -> PathBuf {
    let mut rng = Rng::new(seed);
    let bases = 1 + rng.below(2) as usize;
    let generated: Vec<Option<String>> = (0..bases)
        .map(|b| base(&mut rng, &root.join(format!("base{b}")), &format!("b{b}")))
        .collect();
    // Overlays: each names one base; a base may be named by several, each
    // under its own prefix so that the top level has no duplicate.
    let overlays = 1 + rng.below(3) as usize;
    let mut top = String::from("resources:\n");
    for o in 0..overlays {
        let b = rng.below(bases as u64);
        let dir = root.join(format!("overlay{o}"));
        let mut k = format!("namePrefix: o{o}-\nresources:\n- ../base{b}\n");
        let rest = transformers(&mut rng);
        // The overlay's own prefix keeps reused bases apart.
        k.push_str(
            &rest
                .lines()
                .filter(|l| !l.starts_with("namePrefix:"))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        match &generated[b as usize] {
            // Merge into the base's generated ConfigMap, or replace it.
            Some(g) if rng.chance(40) => {
                let behavior = rng.pick(&["merge", "replace"]);
                let _ = write!(
                    k,
                    "configMapGenerator:\n- name: {g}\n  behavior: {behavior}\n  literals: [EXTRA=o{o}]\n"
                );
            }
            _ if rng.chance(20) => {
                let _ = write!(
                    k,
                    "configMapGenerator:\n- name: overlay-extra\n  literals: [EXTRA=o{o}]\n"
                );
            }
            _ => {}
        }
        if rng.chance(15) {
            // Two ServiceAccounts of one name may leave a binding ambiguous,
            // which kustomize refuses.
            // transformers() writes `patches:` last, so an item can follow it.
            if !k.contains("patches:\n") {
                k.push_str("patches:\n");
            }
            let _ = write!(
                k,
                "- target: {{kind: RoleBinding}}\n  patch: |\n    - op: add\n      path: /subjects/-\n      value: {{kind: ServiceAccount, name: runner, namespace: {}}}\n",
                rng.pick(&["default", "apps", "staging"])
            );
        }
        if rng.chance(30) {
            // A var naming the overlay's Service by its base name, read into
            // an annotation of its Deployment once every prefix is applied.
            let _ = write!(
                k,
                "vars:\n- name: SVC_O{o}\n  objref: {{apiVersion: v1, kind: Service, name: web}}\n\
                 patchesJson6902:\n- target: {{group: apps, version: v1, kind: Deployment, name: web}}\n  patch: |\n    - op: add\n      path: /metadata/annotations/peer-o{o}\n      value: \"svc=$(SVC_O{o}) port=$$80\"\n"
            );
        }
        write(&dir.join("kustomization.yaml"), &k);
        let _ = writeln!(top, "- overlay{o}");
    }
    if rng.chance(40) {
        let component = format!(
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n\
             configMapGenerator:\n- name: component-settings\n  literals: [LEVEL=l{}]\n\
             labels:\n- pairs: {{component: c{}}}\n  includeSelectors: {}\n\
             replacements:\n- source: {{kind: ConfigMap, name: component-settings, fieldPath: data.LEVEL}}\n\
             \x20 targets:\n  - select: {{kind: Deployment}}\n    fieldPaths: [metadata.annotations.level]\n    options: {{create: true}}\n",
            rng.below(3),
            rng.below(3),
            rng.chance(50),
        );
        write(&root.join("component/kustomization.yaml"), &component);
        top.push_str("components:\n- component\n");
    }
    if rng.chance(40) {
        top.push_str(&transformers(&mut rng));
    }
    write(&root.join("kustomization.yaml"), &top);
    root.to_path_buf()
}

/// What `kubectl kustomize` renders, or its error.
pub fn kubectl_kustomize(dir: &Path) -> Result<Vec<Value>, String> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`kubectl` is the reference renderer and could not be run ({e}); install kubectl"
            )
        });
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    stagegate::core::yaml::parse_documents(&text)
        .map(|docs| docs.into_iter().map(|d| d.value).collect())
        .map_err(|e| format!("kubectl's output is not YAML: {e}"))
}

/// Objects without what stagegate adds, keyed and sorted for comparison.
pub fn canonical(objects: Vec<Value>) -> Vec<(String, Value)> {
    use stagegate::core::labels::{MANAGED_BY_KEY, SPEC_HASH_ANNOTATION, STAGE_LABEL};
    let mut out: Vec<(String, Value)> = objects
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
            let id = format!(
                "{} {} {}/{}",
                v["apiVersion"].as_str().unwrap_or(""),
                v["kind"].as_str().unwrap_or(""),
                v["metadata"]["namespace"].as_str().unwrap_or(""),
                v["metadata"]["name"].as_str().unwrap_or("")
            );
            (id, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The outcome of one seed.
pub enum Outcome {
    Same,
    BothRefused,
    Differs(String),
}

/// Render the tree for `seed` with both and compare.
pub fn compare(seed: u64, scratch: &Path) -> Outcome {
    let root = scratch.join(format!("seed-{seed}"));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("scratch directory");
    let root = root.canonicalize().expect("canonical scratch directory");
    generate(seed, &root);
    let reference = kubectl_kustomize(&root);
    let stage = stagegate::core::stage::Stage::new("random", ".");
    let ours = stagegate::core::render::render_stage(&root, &stage);
    let outcome = match (reference, ours) {
        (Err(_), Err(_)) => Outcome::BothRefused,
        (Err(e), Ok(_)) => Outcome::Differs(format!("kubectl refused, stagegate rendered: {e}")),
        (Ok(_), Err(e)) => Outcome::Differs(format!("stagegate refused, kubectl rendered: {e}")),
        (Ok(want), Ok(got)) => {
            let want = canonical(want);
            let got = canonical(got.into_iter().map(|m| m.value).collect());
            if want == got {
                Outcome::Same
            } else {
                Outcome::Differs(describe_difference(&want, &got))
            }
        }
    };
    if matches!(outcome, Outcome::Same | Outcome::BothRefused) {
        let _ = fs::remove_dir_all(&root);
    }
    outcome
}

fn describe_difference(want: &[(String, Value)], got: &[(String, Value)]) -> String {
    let mut out = String::new();
    for (id, v) in want {
        match got.iter().find(|(g, _)| g == id) {
            None => {
                let _ = writeln!(out, "missing from stagegate: {id}");
            }
            Some((_, g)) if g != v => {
                let _ = writeln!(
                    out,
                    "{id} differs\n--- kubectl\n{}--- stagegate\n{}",
                    stagegate::core::yaml::to_yaml(v),
                    stagegate::core::yaml::to_yaml(g)
                );
            }
            _ => {}
        }
    }
    for (id, _) in got {
        if !want.iter().any(|(w, _)| w == id) {
            let _ = writeln!(out, "only in stagegate: {id}");
        }
    }
    out
}
