//! The fault campaigns of #13 as tests: the real `stagegate run` binary
//! against kube-sim and a local Git repository, attacked at random moments,
//! then judged from the API server's own history (kube-sim's record of every
//! change), not from what the agent says about itself:
//!
//! - every Job spec (name and `stagegate.dev/spec-hash`) was created once;
//! - no dependent stage's objects for a revision were written before the Job
//!   it waits for had succeeded for that revision;
//! - the agent converges on the last commit.
//!
//! `kill_campaign`: SIGKILL at random moments, commits arriving at random
//! moments, Jobs short enough and `ttlSecondsAfterFinished` small enough that
//! they finish and would vanish while the agent is down; no Job's outcome
//! may be lost. `fault_campaign`: one agent through API faults
//! (500/503/429/409/504, latency, closed and expired watches, an outage, an
//! API server restarted with its data). `reset_campaign`: API servers
//! restarted with their data and reset (restored empty) between commits;
//! after a reset each Job runs again before its dependents are applied,
//! after a restart none runs twice. All are seeded: the seed is printed, and
//! `STAGEGATE_CAMPAIGN_SEED=S` replays a run; `STAGEGATE_CAMPAIGN_ROUNDS=N`
//! makes a longer one (docs/reliability.md has the figures).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::git::GitRepo;
use common::{Env, env};
use kube_sim::{Change, ChangeType, FailRule, Verb};
use stagegate::cluster::state::{Phase, StateStore};

const NS: &str = "stagegate-system";
const SPEC_HASH: &str = "stagegate.dev/spec-hash";
const STAGE_LABEL: &str = "stagegate.dev/stage";
/// The namespace the repository's objects go to.
const APP_NS: &str = "shop";

/// splitmix64: small, seedable, the same run for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn seed() -> u64 {
    match std::env::var("STAGEGATE_CAMPAIGN_SEED") {
        Ok(s) => s.parse().expect("STAGEGATE_CAMPAIGN_SEED is a number"),
        // The suite replays one fixed campaign so that CI judges the code,
        // not the draw; new seeds are explored with the variable.
        Err(_) => 7,
    }
}

fn rounds(default: usize) -> usize {
    std::env::var("STAGEGATE_CAMPAIGN_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One revision of the repository: `pre` runs the migration Job, `app`
/// (after `pre`) holds a ConfigMap and a Deployment, `smoke` (after `app`)
/// runs a check Job. Every object carries the revision's tag, so the
/// history tells which revision a write belongs to.
#[derive(Debug, Clone)]
struct Revision {
    tag: String,
    /// The migration's simulated run time and TTL: some revisions keep the
    /// tag (and so the Job specs) and change only the replicas.
    migrate_ms: u64,
    ttl: u64,
    replicas: u64,
}

impl Revision {
    fn files(&self) -> Vec<(String, String)> {
        let Revision {
            tag,
            migrate_ms,
            ttl,
            replicas,
        } = self;
        let stages = "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: pre, targetNamespace: shop, timeout: 5m}\n---\n\
             apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: app}\nspec: {path: app, dependsOn: [pre], targetNamespace: shop, wait: true, prune: true, timeout: 5m}\n---\n\
             apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: smoke}\nspec: {path: smoke, dependsOn: [app], targetNamespace: shop, timeout: 5m}\n";
        let job = |name: &str, ms: u64| {
            format!(
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations: {{sim.stagegate.dev/duration: {ms}ms}}\nspec:\n  ttlSecondsAfterFinished: {ttl}\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: {name}\n          image: registry.example.com/shop/app:{tag}\n          command: [\"/bin/{name}\"]\n"
            )
        };
        vec![
            ("stages.yaml".into(), stages.into()),
            (
                "pre/namespace.yaml".into(),
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".into(),
            ),
            ("pre/migrate.yaml".into(), job("migrate", *migrate_ms)),
            (
                "app/settings.yaml".into(),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{tag: \"{tag}\", replicas: \"{replicas}\"}}\n"
                ),
            ),
            (
                "app/web.yaml".into(),
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: \"registry.example.com/shop/app:{tag}\"}}]\n"
                ),
            ),
            ("smoke/smoke.yaml".into(), job("smoke", 150)),
        ]
    }
}

/// The tag an object of the repository carries (image or ConfigMap data).
fn tag_of(object: &serde_json::Value) -> Option<String> {
    if let Some(tag) = object.pointer("/data/tag").and_then(|v| v.as_str()) {
        return Some(tag.to_string());
    }
    let image = object
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(|v| v.as_str())?;
    image.rsplit_once(':').map(|(_, tag)| tag.to_string())
}

/// The repository and the agent processes of one campaign.
struct Campaign {
    env: Env,
    repo: GitRepo,
    rng: Rng,
    seed: u64,
    /// Commit ids, oldest first, and the revision each holds.
    commits: Vec<(String, Revision)>,
    logs: PathBuf,
    starts: usize,
    /// Job runs whose end the agent could not learn (see [`Campaign::converged`]).
    outcomes_lost: usize,
    /// The last resourceVersion before each reset: the history's epochs.
    resets: Vec<u64>,
}

impl Campaign {
    async fn new(seed: u64) -> Campaign {
        let env = env().await;
        env.c.sim.start_history();
        let repo = GitRepo::init(&env.tmp.path().join("repo"));
        let logs = env.tmp.path().join("logs");
        std::fs::create_dir_all(&logs).expect("mkdir logs");
        let mut campaign = Campaign {
            env,
            repo,
            rng: Rng(seed),
            seed,
            commits: Vec::new(),
            logs,
            starts: 0,
            outcomes_lost: 0,
            resets: Vec::new(),
        };
        campaign.commit();
        campaign
    }

    /// A new commit: a new tag (so new Job specs) most of the time, or the
    /// same tag with other replicas (Job specs unchanged: they must not run
    /// again, even after their TTL removed them).
    fn commit(&mut self) {
        let n = self.commits.len();
        let revision = match self.commits.last() {
            Some((_, last)) if self.rng.chance(30) => Revision {
                replicas: 1 + (last.replicas % 3),
                ..last.clone()
            },
            _ => Revision {
                tag: format!("v{n}"),
                migrate_ms: 100 + self.rng.below(1500),
                ttl: self.rng.below(2),
                replicas: 1 + self.rng.below(3),
            },
        };
        let sha = common::commit(&self.repo, &format!("revision {n}"), &revision.files());
        self.commits.push((sha, revision));
    }

    fn spawn(&mut self) -> Child {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("create log");
        Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(["run", "--repo", &self.repo.file_url(), "--namespace", NS])
            .args([
                "--create-namespace",
                "--interval",
                "1s",
                "--leader-elect",
                "false",
            ])
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(self.env.tmp.path().join("cache"))
            .arg("--kubeconfig")
            .arg(&self.env.kubeconfig)
            .env_remove("KUBECONFIG")
            .env("STAGEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn stagegate")
    }

    fn log_path(&self, start: usize) -> PathBuf {
        self.logs.join(format!("agent-{start}.log"))
    }

    fn last_log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until every stage is Ready at the last commit, as the Stage
    /// objects say; the history then shows whether it got there honestly.
    ///
    /// A stage failed because its Job's end was never seen is a lost
    /// outcome: the finalizer `stagegate.dev/job-outcome` exists so that a
    /// Job killed with the agent and deleted by its TTL is still there to
    /// read. It fails the campaign at once.
    async fn converged(&mut self) -> Result<(), String> {
        let store = StateStore::new(self.env.c.client.clone(), NS);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let sha = self.commits.last().expect("a commit").0.clone();
            let state = store.read().await.unwrap_or_default();
            let done = state.stages.len() == 3
                && state.stages.values().all(|s| {
                    s.phase == Phase::Ready
                        && s.revision.as_deref().is_some_and(|r| sha_matches(r, &sha))
                })
                && self.cluster_holds_the_last_revision().await;
            if done {
                return Ok(());
            }
            let lost = state.stages.iter().find(|(_, s)| {
                s.phase == Phase::Failed && s.message.contains("before its end was seen")
            });
            if let Some((name, stage)) = lost {
                self.outcomes_lost += 1;
                return Err(format!(
                    "a Job outcome was lost in stage {name}: {}",
                    stage.message
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("not converged on {sha}: {state:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The cluster, not only the Stage objects, is at the last commit:
    /// after a reset the restored Stage objects say Ready before the agent
    /// did anything, and only the objects it applies again tell.
    async fn cluster_holds_the_last_revision(&self) -> bool {
        let last = &self.commits.last().expect("a commit").1;
        let settings: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(self.env.c.client.clone(), APP_NS);
        let Ok(Some(cm)) = settings.get_opt("settings").await else {
            return false;
        };
        let data = cm.data.unwrap_or_default();
        data.get("tag") == Some(&last.tag)
            && data.get("replicas") == Some(&last.replicas.to_string())
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "campaign seed {} (replay: STAGEGATE_CAMPAIGN_SEED={}): {what}\n-- last agent log --\n{}",
            self.seed,
            self.seed,
            self.last_log()
        );
    }
}

/// A stage's revision is `main@sha1:<id>`.
fn sha_matches(revision: &str, sha: &str) -> bool {
    let id = revision.rsplit(['@', ':']).next().unwrap_or(revision);
    !id.is_empty() && sha.starts_with(id)
}

/// What the history shows: Job creations by spec, and the rule breaches.
#[derive(Debug, Default)]
struct Verdict {
    /// (Job name, spec hash) → creations.
    job_runs: BTreeMap<(String, String), usize>,
    breaches: Vec<String>,
}

impl Verdict {
    fn twice(&self) -> Vec<String> {
        self.job_runs
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|((name, hash), n)| format!("Job {name} spec {hash} created {n} times"))
            .collect()
    }
}

/// Judges the history of the `shop` namespace, each cluster on its own: a
/// reset (the last resourceVersion before it in `resets`) starts a new
/// one, where every Job spec may run once more and every gate is checked
/// again.
fn judge(history: &[Change], resets: &[u64]) -> Vec<Verdict> {
    let mut epochs = Vec::new();
    let mut rest = history;
    for last in resets {
        let cut = rest.partition_point(|c| c.rv <= *last);
        epochs.push(judge_epoch(&rest[..cut]));
        rest = &rest[cut..];
    }
    epochs.push(judge_epoch(rest));
    epochs
}

/// The verdicts of all epochs as one: creations added up by spec (a spec
/// created once in each of two clusters counts 2), breaches together.
fn merged(epochs: &[Verdict]) -> Verdict {
    let mut all = Verdict::default();
    for v in epochs {
        for (k, n) in &v.job_runs {
            *all.job_runs.entry(k.clone()).or_default() += n;
        }
        all.breaches.extend(v.breaches.iter().cloned());
    }
    all
}

/// Judges one cluster's part of the history of the `shop` namespace.
fn judge_epoch(history: &[Change]) -> Verdict {
    let mut verdict = Verdict::default();
    // The first resourceVersion at which a Job of (name, tag) was Complete.
    let mut complete: BTreeMap<(String, String), u64> = BTreeMap::new();
    // Tags already seen written, per (stage, resource, name): a write of a
    // new tag is where the gate matters.
    let mut written: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    for change in history.iter().filter(|c| c.namespace == APP_NS) {
        let tag = tag_of(&change.object).unwrap_or_default();
        if change.resource == "jobs" {
            if change.change == ChangeType::Created {
                let hash = change.annotation(SPEC_HASH).unwrap_or("").to_string();
                *verdict
                    .job_runs
                    .entry((change.name.clone(), hash))
                    .or_default() += 1;
            }
            if change.has_condition("Complete") {
                complete
                    .entry((change.name.clone(), tag.clone()))
                    .or_insert(change.rv);
            }
            if change.has_condition("Failed") {
                verdict.breaches.push(format!(
                    "Job {} ({tag}) failed at rv {}",
                    change.name, change.rv
                ));
            }
        }
        if change.change == ChangeType::Deleted {
            continue;
        }
        let Some(stage) = change.label(STAGE_LABEL) else {
            continue;
        };
        let key = (
            stage.to_string(),
            change.resource.clone(),
            change.name.clone(),
            tag.clone(),
        );
        if !written.insert(key) {
            continue;
        }
        let gate = match stage {
            "app" => "migrate",
            "smoke" => "migrate",
            _ => continue,
        };
        match complete.get(&(gate.to_string(), tag.clone())) {
            Some(rv) if *rv < change.rv => {}
            _ => verdict.breaches.push(format!(
                "{stage}'s {} {} for {tag} written at rv {} before Job {gate} for {tag} succeeded",
                change.resource, change.name, change.rv
            )),
        }
        // smoke also waits for app: its Job for a tag comes after the
        // Deployment of that tag was written.
        if stage == "smoke" && change.resource == "jobs" {
            let app_written = history.iter().any(|c| {
                c.rv < change.rv
                    && c.resource == "deployments"
                    && c.namespace == APP_NS
                    && tag_of(&c.object).as_deref() == Some(tag.as_str())
            });
            if !app_written {
                verdict.breaches.push(format!(
                    "smoke Job for {tag} created at rv {} before app's Deployment for {tag}",
                    change.rv
                ));
            }
        }
    }
    verdict
}

/// Jobs (by uid) that a deletion (their TTL's) found held by the agent's
/// outcome finalizer: the cases where the agent read an end the TTL would
/// otherwise have taken. A figure, not a rule: how often it happens
/// depends on timing.
fn held_past_deletion(history: &[Change]) -> usize {
    let finalizer = stagegate::cluster::apply::JOB_OUTCOME_FINALIZER;
    history
        .iter()
        .filter(|c| c.resource == "jobs" && c.namespace == APP_NS)
        .filter(|c| {
            c.object.pointer("/metadata/deletionTimestamp").is_some()
                && c.object
                    .pointer("/metadata/finalizers")
                    .and_then(|f| f.as_array())
                    .is_some_and(|f| f.iter().any(|f| f == finalizer))
        })
        .filter_map(|c| c.object.pointer("/metadata/uid").and_then(|u| u.as_str()))
        .collect::<BTreeSet<_>>()
        .len()
}

fn figures(title: &str, seed: u64, lines: &[(&str, String)]) {
    let mut out = format!("{title} (seed {seed}):");
    for (k, v) in lines {
        let _ = write!(out, " {k} {v};");
    }
    println!("{out}");
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

fn kill(agent: &mut Child) {
    // Child::kill sends SIGKILL: no shutdown path runs.
    let _ = agent.kill();
    let _ = agent.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_campaign_runs_each_job_spec_once_and_opens_no_gate_early() {
    let seed = seed();
    println!("kill campaign seed {seed}");
    let mut c = Campaign::new(seed).await;
    let rounds = rounds(6);
    let mut kills = 0;
    for _ in 0..rounds {
        let mut agent = c.spawn();
        // Kill somewhere in start-up, a fetch, an apply or a Job's wait; a
        // commit may land before or after the kill.
        let until_kill = c.rng.millis(300, 3500);
        let commit_at = c.rng.chance(60).then(|| c.rng.millis(0, 4000));
        match commit_at {
            Some(at) if at < until_kill => {
                sleep(at).await;
                c.commit();
                sleep(until_kill - at).await;
                kill(&mut agent);
            }
            Some(at) => {
                sleep(until_kill).await;
                kill(&mut agent);
                sleep(at - until_kill).await;
                c.commit();
            }
            None => {
                sleep(until_kill).await;
                kill(&mut agent);
            }
        }
        kills += 1;
        // Down long enough, at times, for a Job to finish and its TTL to
        // remove it before the agent is back.
        sleep(c.rng.millis(0, 2500)).await;
    }
    let mut agent = c.spawn();
    let converged = c.converged().await;
    kill(&mut agent);
    if let Err(e) = converged {
        c.fail(&e);
    }
    let history = c.env.c.sim.history();
    let verdict = merged(&judge(&history, &c.resets));
    let twice = verdict.twice();
    let specs = verdict.job_runs.len();
    let held = held_past_deletion(&history);
    let runs: usize = verdict.job_runs.values().sum();
    figures(
        "kill campaign",
        seed,
        &[
            ("SIGKILLs survived", kills.to_string()),
            ("agent starts", c.starts.to_string()),
            ("commits", c.commits.len().to_string()),
            ("Job specs", specs.to_string()),
            ("Job creations", runs.to_string()),
            ("Job outcomes lost", c.outcomes_lost.to_string()),
            ("Jobs read while held past a deletion", held.to_string()),
        ],
    );
    if !twice.is_empty() || !verdict.breaches.is_empty() {
        c.fail(&format!("{twice:#?}\n{:#?}", verdict.breaches));
    }
    assert_eq!(c.outcomes_lost, 0, "no Job outcome lost");
    assert!(specs >= 2, "the campaign ran Jobs: {verdict:?}");
}

/// One API fault, injected while the agent works.
fn inject(c: &mut Campaign, log: &mut Vec<String>) {
    let faults = c.env.c.sim.faults();
    let verbs = [
        Verb::Get,
        Verb::List,
        Verb::Patch,
        Verb::Create,
        Verb::Delete,
        Verb::Update,
    ];
    let paths = [
        None,
        Some("/apis/batch/v1"),
        Some("/apis/apps/v1"),
        Some("/api/v1"),
        Some("/apis/stagegate.dev"),
    ];
    match c.rng.below(7) {
        0..=2 => {
            let code = [500, 503, 429, 409, 504][c.rng.below(5) as usize];
            let verb = (c.rng.chance(70)).then(|| verbs[c.rng.below(verbs.len() as u64) as usize]);
            let path = paths[c.rng.below(paths.len() as u64) as usize];
            let count = 1 + c.rng.below(3) as u32;
            faults.fail_next(FailRule::new(verb, path, code, count));
            log.push(format!("{code} x{count} on {verb:?} {path:?}"));
        }
        3 => {
            let latency = c.rng.millis(50, 400);
            faults.set_latency(latency);
            log.push(format!("latency {latency:?}"));
        }
        5 => {
            let down = c.rng.millis(300, 2000);
            faults.restart_for(down);
            log.push(format!("API server restarted with its data, down {down:?}"));
        }
        4 => {
            if c.rng.chance(50) {
                faults.close_watches();
                log.push("watches closed".into());
            } else {
                faults.expire_watches();
                log.push("watch history expired".into());
            }
        }
        _ => {
            let outage = c.rng.millis(500, 3000);
            faults.unreachable_for(outage);
            log.push(format!("outage {outage:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_converges_without_running_a_job_twice_or_applying_early() {
    let seed = seed();
    println!("fault campaign seed {seed}");
    let mut c = Campaign::new(seed).await;
    let mut agent = c.spawn();
    let mut injected = Vec::new();
    let rounds = rounds(6);
    for _ in 0..rounds {
        sleep(c.rng.millis(200, 1500)).await;
        inject(&mut c, &mut injected);
        if c.rng.chance(40) {
            c.commit();
        }
        sleep(c.rng.millis(200, 1500)).await;
        if c.rng.chance(50) {
            c.env.c.sim.faults().set_latency(Duration::ZERO);
        }
    }
    c.env.c.sim.faults().clear();
    let converged = c.converged().await;
    let exited = agent.try_wait().ok().flatten();
    kill(&mut agent);
    if let Err(e) = converged {
        c.fail(&format!("{e}\nfaults: {injected:#?}"));
    }
    if let Some(status) = exited {
        c.fail(&format!(
            "the agent exited ({status}) during the faults: {injected:#?}"
        ));
    }
    let history = c.env.c.sim.history();
    let verdict = merged(&judge(&history, &c.resets));
    let twice = verdict.twice();
    // Nothing applied twice: no object of the repository was deleted and
    // created again (a Job of a new spec replaces the old one by design).
    let mut created: BTreeMap<(String, String), usize> = BTreeMap::new();
    for change in history.iter().filter(|c| {
        c.namespace == APP_NS
            && c.change == ChangeType::Created
            && c.resource != "jobs"
            && c.label(STAGE_LABEL).is_some()
    }) {
        *created
            .entry((change.resource.clone(), change.name.clone()))
            .or_default() += 1;
    }
    let recreated: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    figures(
        "fault campaign",
        seed,
        &[
            ("faults injected", injected.len().to_string()),
            ("commits", c.commits.len().to_string()),
            ("Job specs", verdict.job_runs.len().to_string()),
            (
                "Job creations",
                verdict.job_runs.values().sum::<usize>().to_string(),
            ),
        ],
    );
    if !twice.is_empty() || !verdict.breaches.is_empty() || !recreated.is_empty() {
        c.fail(&format!(
            "{twice:#?}\n{:#?}\nrecreated: {recreated:?}\nfaults: {injected:#?}",
            verdict.breaches
        ));
    }
    // Messages name the call: a fault that reached the agent is reported
    // with what was asked, never as a bare status dump.
    let log = std::fs::read_to_string(c.log_path(c.starts)).unwrap_or_default();
    let api_errors = log
        .lines()
        .filter(|l| l.contains("injected fault") || l.contains("failed with"));
    for line in api_errors {
        assert!(
            named_call(line),
            "seed {seed}: an API error without the call it answered: {line}"
        );
    }
}

/// Whether a log line reporting an API error says which call failed.
fn named_call(line: &str) -> bool {
    const CALLS: &[&str] = &[
        "get ",
        "list ",
        "apply ",
        "delete ",
        "watch ",
        "discover ",
        "patch ",
        "create ",
        "call=",
        "GET ",
        "PATCH ",
        "POST ",
        "PUT ",
        "DELETE ",
    ];
    CALLS.iter().any(|c| line.contains(c))
}

impl Campaign {
    /// The cluster is reset under a stopped agent, and the agent's memory
    /// (its Stage objects: Job runs, inventories) restored onto the empty
    /// cluster, as a backup of its namespace would be. The agent is stopped
    /// across the reset so that every write after it comes from a run that
    /// began after it: a run already past a gate when the data vanishes
    /// cannot have checked it (that race is not a rule any agent can keep).
    async fn reset_cluster(&mut self, agent: &mut Child) {
        kill(agent);
        let client = self.env.c.client.clone();
        let memory = StateStore::new(client.clone(), NS)
            .read()
            .await
            .expect("read the agent's state before the reset");
        let down = self.rng.millis(100, 800);
        self.resets.push(self.env.c.sim.faults().reset_for(down));
        while self.env.c.sim.faults().is_unreachable() {
            sleep(Duration::from_millis(50)).await;
        }
        common::install_stage_crd(&client).await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(client.clone());
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))
                .expect("a Namespace");
        namespaces
            .create(&kube::api::PostParams::default(), &ns)
            .await
            .expect("create the agent's namespace again");
        let store = StateStore::new(client, NS);
        for (name, stage) in &memory.stages {
            store
                .save_stage(name.as_str(), None, stage)
                .await
                .expect("restore a Stage");
        }
        if let Some(source) = &memory.source {
            store.save_source(source).await.expect("restore the source");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_campaign_reruns_jobs_before_dependents_after_a_reset_and_none_after_a_restart() {
    let seed = seed();
    println!("reset campaign seed {seed}");
    let mut c = Campaign::new(seed).await;
    let mut agent = c.spawn();
    if let Err(e) = c.converged().await {
        c.fail(&e);
    }
    let (mut restarts, mut resets) = (0, 0);
    for _ in 0..rounds(4) {
        if c.rng.chance(50) {
            c.commit();
        }
        sleep(c.rng.millis(0, 1500)).await;
        if c.rng.chance(50) {
            // Mid-run, at any moment: nothing may run twice.
            let down = c.rng.millis(300, 2000);
            c.env.c.sim.faults().restart_for(down);
            restarts += 1;
        } else {
            c.reset_cluster(&mut agent).await;
            agent = c.spawn();
            resets += 1;
        }
        if let Err(e) = c.converged().await {
            kill(&mut agent);
            c.fail(&e);
        }
    }
    kill(&mut agent);
    let epochs = judge(&c.env.c.sim.history(), &c.resets);
    let verdict = merged(&epochs);
    // Within one cluster each spec ran once, and no gate opened early.
    let twice: Vec<String> = epochs.iter().flat_map(Verdict::twice).collect();
    // Each reset cluster ran the migration again (its dependents were
    // applied again, after it, as the gate rule judged).
    let not_rerun: Vec<usize> = epochs
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, v)| !v.job_runs.keys().any(|(name, _)| name == "migrate"))
        .map(|(i, _)| i)
        .collect();
    figures(
        "reset campaign",
        seed,
        &[
            ("restarts with data", restarts.to_string()),
            ("resets", resets.to_string()),
            ("commits", c.commits.len().to_string()),
            ("Job specs", verdict.job_runs.len().to_string()),
            (
                "Job creations",
                verdict.job_runs.values().sum::<usize>().to_string(),
            ),
        ],
    );
    if !twice.is_empty() || !verdict.breaches.is_empty() || !not_rerun.is_empty() {
        c.fail(&format!(
            "{twice:#?}\n{:#?}\nclusters after a reset where migrate did not run again: {not_rerun:?}",
            verdict.breaches
        ));
    }
}
