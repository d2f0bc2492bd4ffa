//! Fuzzing every parser stagegate has, on the stable toolchain: a seeded
//! mutation loop (no nightly, so no cargo-fuzz) over YAML loading, stage
//! documents, kustomizations, `postBuild` substitution, a whole repository
//! through the planner, webhook payloads, Git URLs and `known_hosts` files. Each target starts from its seeds plus every file kept under
//! `tests/fuzz-corpus/<target>/`; an input that panics is written there
//! (so it stays a regression case) and fails the test.
//!
//! The suite runs a fixed number of executions per target; set
//! `STAGEGATE_FUZZ_EXECS` for a longer run (figures in docs/reliability.md).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use stagegate::agent::server::Webhook;
use stagegate::agent::source::RemoteUrl;
use stagegate::core::redact::{RedactedUrl, scrub_urls};

const DEFAULT_EXECS: usize = 400;

/// A small deterministic generator (xorshift64*): the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that matter to the parsers under test.
const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "  ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "<<: *a",
    "${",
    "${VAR}",
    "${VAR:=x}",
    "$${",
    "'",
    "\"",
    "---\n",
    "!!binary ",
    "~",
    "null",
    "@",
    "://",
    "?",
    "#",
    "%00",
    "\u{feff}",
    "\t",
    "../",
    "/",
    "apiVersion: ",
    "kind: ",
    "metadata:",
    "spec:",
    "path: ",
    "0x",
    "9999999999999999999999",
    "-1",
    "resources:",
    "patches:",
    "dependsOn:",
    "substitute:",
];

fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            2 if !out.is_empty() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + rng.below(32)).min(out.len());
                let piece: Vec<u8> = out[start..end].to_vec();
                out.splice(at..at, piece);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + rng.below(64)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out.truncate(64 * 1024);
    out
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

/// Runs `check` on the corpus, then on `execs` mutations; returns executions.
fn fuzz(target: &str, seeds: &[&str], check: impl Fn(&[u8])) -> usize {
    let execs = std::env::var("STAGEGATE_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXECS);
    let mut pool: Vec<Vec<u8>> = seeds.iter().map(|s| s.as_bytes().to_vec()).collect();
    if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                pool.push(bytes);
            }
        }
    }
    let mut rng = Rng(0x5EED_0000 ^ target.len() as u64 ^ 0x9E37_79B9_7F4A_7C15);
    let mut ran = 0;
    let corpus_len = pool.len();
    for i in 0..corpus_len + execs {
        let input = if i < corpus_len {
            pool[i].clone()
        } else {
            let base = pool[rng.below(pool.len())].clone();
            mutate(&mut rng, &base, &pool)
        };
        ran += 1;
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let dir = corpus_dir(target);
            let _ = std::fs::create_dir_all(&dir);
            let name = format!("crash-{:016x}", fxhash(&input));
            let _ = std::fs::write(dir.join(&name), &input);
            panic!("{target}: input {name} panics; kept in {}", dir.display());
        }
    }
    eprintln!("fuzz {target}: {ran} executions");
    ran
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn fuzz_git_urls() {
    fuzz(
        "git_url",
        &[
            "https://ghp_SECRETTOKEN@github.com/org/repo.git",
            "https://u:SECRETTOKEN@h:8443/r.git?x=SECRETTOKEN#f",
            "ssh://git@[::1]:2222/r.git",
            "git@github.com:org/r.git",
            "file:///srv/r.git",
        ],
        |bytes| {
            let text = String::from_utf8_lossy(bytes);
            let _ = RemoteUrl::parse(&text).map(|u| (u.port(), u.redacted()));
            let shown = RedactedUrl::new(&text).to_string();
            // Whatever was written where credentials go is never shown there.
            if let Some((scheme, rest)) = text.split_once("://")
                && !scheme.to_ascii_lowercase().contains("ssh")
            {
                let authority = |s: &str| {
                    let rest = s.split_once("://").map_or("", |(_, r)| r);
                    rest.split(['/', '?', '#'])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                };
                if let Some((userinfo, _)) = authority(&shown).rsplit_once('@') {
                    assert_eq!(userinfo, "***", "{text} shown as {shown}");
                }
                let _ = rest;
            }
            let _ = scrub_urls(&text);
        },
    );
}

#[test]
fn fuzz_webhook_payloads() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let hook = Webhook::new(
        b"s3cret".to_vec(),
        Arc::new(tokio::sync::Notify::new()),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    fuzz(
        "webhook",
        &[
            "x-hub-signature-256\nsha256=0000\n{\"ref\":\"refs/heads/main\"}",
            "x-gitlab-token\ns3cret\n{}",
            "x-github-delivery\n72d3162e-cc78-11e3-81ab-4c9367dc0958\n{}",
        ],
        |bytes| {
            // First line a header name, second its value, the rest the body.
            let mut parts = bytes.splitn(3, |b| *b == b'\n');
            let (name, value, body) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let mut headers = HeaderMap::new();
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name),
                HeaderValue::from_bytes(value),
            ) {
                headers.insert(name, value);
            }
            let accepted = hook.receive(&headers, body);
            let token_ok = headers.get("x-gitlab-token").is_some_and(|v| v == "s3cret");
            if accepted.is_ok() {
                assert!(token_ok || headers.contains_key("x-hub-signature-256"));
            }
        },
    );
}

#[test]
fn fuzz_yaml_loading() {
    fuzz(
        "yaml",
        &[
            common::DEPLOYMENT,
            "a: &a [1, 2]\nb: *a\nc: {<<: {x: 1}}\n---\n- x\n",
            "key: !!binary aGVsbG8=\nn: .inf\n",
        ],
        |bytes| {
            let _ = stagegate::core::yaml::parse_documents(&String::from_utf8_lossy(bytes));
        },
    );
}

/// A repository written from one input: stage documents, a kustomization
/// with substitution, and a manifest, separated by NUL bytes.
fn plan_from(bytes: &[u8]) {
    let mut parts = bytes.split(|b| *b == 0);
    let dir = tempfile::tempdir().unwrap();
    for path in ["stages.yaml", "app/kustomization.yaml", "app/job.yaml"] {
        let content = parts.next().unwrap_or_default();
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    if let Err(problems) = stagegate::core::plan::build_plan(dir.path(), None) {
        // Bad input is an error with a message, never a panic or silence.
        assert!(problems.has_errors(), "{problems}");
    }
}

#[test]
fn fuzz_stage_documents_kustomizations_and_substitution() {
    let seed = format!(
        "{}\0{}\0{}",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: app}\n\
         spec:\n  path: ./app\n  prune: true\n  postBuild:\n    substitute: {DIGITS: \"20\", NS: shop}\n\
         ---\napiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: app2}\n",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ${NS}\n\
         resources: [job.yaml]\ncommonLabels: {team: a}\nimages: [{name: perl, newTag: \"5.36\"}]\n",
        common::pi_job("migrate-${DIGITS:=10}", 10, ""),
    );
    fuzz("plan", &[&seed], plan_from);
}

/// Where the in-memory repositories of the targets below live.
const ROOT: &str = "/repo";

/// Stages discovered in, and rendered from, an in-memory repository:
/// `(path, content)` pairs. No disk: the mutation loop runs the parsers,
/// not the file system.
/// Returns how many objects rendered, and the errors met.
fn render_all(files: &[(&str, &str)]) -> (usize, Vec<String>) {
    let root = std::path::Path::new(ROOT);
    let tree = stagegate::core::tree::MemoryTree::new(root, files);
    let (stages, problems) = stagegate::core::stage::discover_stages_in(&tree, root, root);
    // A problem is a message; an empty one would tell nobody anything.
    assert!(
        problems.to_string().lines().all(|l| !l.trim().is_empty()),
        "{problems}"
    );
    let mut errors: Vec<String> = problems.to_string().lines().map(str::to_string).collect();
    let mut rendered = 0;
    for stage in &stages {
        match stagegate::core::render::render_stage_in(&tree, root, stage) {
            Ok(out) => rendered += out.objects.len(),
            Err(e) => {
                assert!(!e.to_string().trim().is_empty(), "an empty render error");
                errors.push(e.to_string());
            }
        }
    }
    (rendered, errors)
}

/// The seeds must render, or the loop would only ever fuzz error paths.
fn assert_renders(files: &[(&str, &str)]) {
    let (rendered, errors) = render_all(files);
    assert!(
        rendered > 0 && errors.is_empty(),
        "the seed does not render: {errors:#?}"
    );
}

const STAGE_DOCS: &str = "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\n\
     spec: {path: app, targetNamespace: shop, timeout: 5m, prune: true}\n---\n\
     apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: web}\n\
     spec: {path: app, dependsOn: [pre], jobRetries: 2, retryInterval: 10s, wait: true}\n---\n\
     apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: flux, namespace: flux-system}\n\
     spec: {path: ./app, prune: true, interval: 5m, dependsOn: [{name: pre}], namePrefix: a-, sourceRef: {kind: GitRepository, name: repo}}\n";

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {tag: v1}\n";

#[test]
fn fuzz_stage_documents() {
    // Property beyond "no panic": a file that names a stage API and is not
    // YAML is an error naming the file (nothing is skipped silently, rule
    // 1). A file naming none cannot hold a stage, and discovery leaves its
    // syntax to whatever reads it (the crash kept in the corpus is one).
    assert_renders(&[("stages.yaml", STAGE_DOCS), ("app/cm.yaml", CONFIGMAP)]);
    fuzz("stage_documents", &[STAGE_DOCS], |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let root = std::path::Path::new(ROOT);
        let tree = stagegate::core::tree::MemoryTree::new(
            root,
            &[("stages.yaml", &text), ("app/cm.yaml", CONFIGMAP)],
        );
        let (_, problems) = stagegate::core::stage::discover_stages_in(&tree, root, root);
        let names_a_stage_api =
            text.contains("stagegate.dev") || text.contains("kustomize.toolkit.fluxcd.io");
        if names_a_stage_api && stagegate::core::yaml::parse_documents(&text).is_err() {
            assert!(problems.has_errors(), "unreadable YAML accepted: {text:?}");
            assert!(problems.to_string().contains("stages.yaml"), "{problems}");
        }
    });
}

#[test]
fn fuzz_kustomizations() {
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
        namespace: shop\nnamePrefix: p-\nresources: [cm.yaml, job.yaml]\n\
        labels: [{pairs: {team: a}, includeSelectors: false}]\n\
        images: [{name: perl, newTag: \"5.36\"}]\n\
        configMapGenerator: [{name: gen, literals: [a=b]}]\n\
        patches: [{target: {kind: Job}, patch: \"- op: add\\n  path: /metadata/annotations/x\\n  value: y\"}]\n\
        replacements: [{source: {kind: ConfigMap, name: settings, fieldPath: data.tag}, targets: [{select: {kind: Job}, fieldPaths: [metadata.labels.tag], options: {create: true}}]}]\n\
        vars: [{name: TAG, objref: {kind: ConfigMap, name: settings, apiVersion: v1}, fieldref: {fieldpath: data.tag}}]\n";
    let job = common::pi_job("migrate", 10, "");
    assert_renders(&[
        ("stages.yaml", STAGE_DOCS),
        ("app/kustomization.yaml", kustomization),
        ("app/cm.yaml", CONFIGMAP),
        ("app/job.yaml", &job),
    ]);
    fuzz("kustomization", &[kustomization], |bytes| {
        let text = String::from_utf8_lossy(bytes);
        render_all(&[
            ("stages.yaml", STAGE_DOCS),
            ("app/kustomization.yaml", &text),
            ("app/cm.yaml", CONFIGMAP),
            ("app/job.yaml", &job),
        ]);
    });
}

#[test]
fn fuzz_post_build_substitution() {
    let stages = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
        metadata: {name: app, namespace: flux-system}\n\
        spec:\n  path: ./app\n  prune: true\n  interval: 5m\n  sourceRef: {kind: GitRepository, name: repo}\n  \
        postBuild:\n    substitute: {DIGITS: \"20\", NS: shop, EMPTY: \"\", TAG: v1.2}\n";
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${NS}\n  namespace: ${NS:=default}\n\
        data:\n  digits: ${DIGITS}\n  tag: \"${TAG}\"\n  empty: \"${EMPTY:-fallback}\"\n  \
        unset: \"${UNSET:=x}\"\n  escaped: \"$${NS}\"\n";
    assert_renders(&[("stages.yaml", stages), ("app/cm.yaml", manifest)]);
    fuzz("substitution", &[manifest], |bytes| {
        let text = String::from_utf8_lossy(bytes);
        render_all(&[("stages.yaml", stages), ("app/cm.yaml", &text)]);
    });
}

#[test]
fn fuzz_known_hosts() {
    const KNOWN_HOSTS: &str = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\
             [gitea.example.com]:2222,10.0.0.5 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=\n\
             |1|c2FsdA==|aGFzaA== ssh-rsa AAAAB3NzaC1yc2E=\n@revoked * ssh-rsa AAAAB3NzaC1yc2E=\n# comment\n";
    assert!(
        stagegate::agent::source::KnownHosts::parse(KNOWN_HOSTS).is_ok(),
        "the seed parses"
    );
    fuzz("known_hosts", &[KNOWN_HOSTS], |bytes| {
        if let Ok(hosts) =
            stagegate::agent::source::KnownHosts::parse(&String::from_utf8_lossy(bytes))
        {
            let key = stagegate::agent::source::HostKey::from_blob(bytes);
            let _ = hosts.verify("github.com", 22, &key);
            let _ = hosts.verify("gitea.example.com", 2222, &key);
        }
    });
}
