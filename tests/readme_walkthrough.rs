//! README.md's walkthrough, run as a person would follow it: `./demo.sh` in
//! one terminal, the fenced `sh` blocks of "Trying it" typed into another.
//!
//! How the README is read, so that it stays literal for people:
//! - the section's first `text` block is what the agent logs at start-up;
//! - a `sh` block's lines are commands, run one by one in one shell (so `cd`
//!   and `export` carry over), each of which must succeed;
//! - `#   output` lines (three or more spaces) right after a command are what
//!   that command prints;
//! - after a comment ending in `:` that says `within` (`# within 5 s:`), the
//!   `#   ` lines are what the agent logs, waited for;
//! - in an expected line, runs of spaces match any spacing, `...` matches
//!   anything, and what differs from run to run (commit ids, ages, a pod's
//!   random suffix) matches any value of its form.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use regex::Regex;

const DEMO_DIR_IN_README: &str = "/tmp/stagegate-demo";
const AGENT_WAIT: Duration = Duration::from_secs(120);
const COMMAND_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
enum Step {
    Run {
        command: String,
        expect: Vec<String>,
    },
    AgentLogs {
        expect: Vec<String>,
    },
}

#[test]
fn readme_walkthrough_reaches_every_output_it_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let (startup, steps) = walkthrough(&readme);
    assert!(
        !startup.is_empty(),
        "the walkthrough shows the agent's start-up log"
    );
    assert!(
        steps
            .iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .count()
            >= 10,
        "the walkthrough was found: {steps:?}"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let demo_dir = work.path().join("demo");
    let agent_log = work.path().join("agent.log");
    let mut demo = start_demo(root, &demo_dir, &agent_log);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_agent_lines(&agent_log, 0, &startup);
        let mut shell = Shell::start(root);
        let bin_dir = bin_dir();
        for step in &steps {
            match step {
                Step::Run { command, expect } => {
                    let command = command
                        .replace(DEMO_DIR_IN_README, &demo_dir.display().to_string())
                        .replace("$PWD/target/debug", &bin_dir.display().to_string());
                    let from = log_len(&agent_log);
                    let output = shell.run(&command);
                    for line in expect {
                        assert!(
                            output.lines().any(|l| pattern(line).is_match(l)),
                            "README: `{command}` should print\n  {line}\nbut printed:\n{output}"
                        );
                    }
                    shell.log_from = from;
                }
                Step::AgentLogs { expect } => {
                    wait_for_agent_lines(&agent_log, shell.log_from, expect);
                }
            }
        }
    }));
    stop(&mut demo);
    if let Err(panic) = result {
        let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
        eprintln!("--- agent log ---\n{log}");
        std::panic::resume_unwind(panic);
    }
}

/// The start-up log lines and the steps of the "Trying it" section.
fn walkthrough(readme: &str) -> (Vec<String>, Vec<Step>) {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Trying it"))
        .expect("README has a \"Trying it\" section");
    let mut startup = Vec::new();
    let mut steps = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let fence = line.trim_start();
        if fence == "```text" && startup.is_empty() {
            startup = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .map(str::to_string)
                .collect();
        } else if fence == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            steps.extend(block_steps(&block));
        }
    }
    (startup, steps)
}

fn block_steps(block: &[&str]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut agent_logs = false;
    for line in block {
        if let Some(expected) = line.strip_prefix("#   ") {
            let expected = expected.trim().to_string();
            match steps.last_mut() {
                Some(Step::Run { expect, .. }) if !agent_logs => expect.push(expected),
                Some(Step::AgentLogs { expect }) => expect.push(expected),
                _ => steps.push(Step::AgentLogs {
                    expect: vec![expected],
                }),
            }
        } else if line.starts_with('#') {
            agent_logs = line.contains("within") && line.trim_end().ends_with(':');
        } else if !line.trim().is_empty() {
            agent_logs = false;
            steps.push(Step::Run {
                command: line.to_string(),
                expect: Vec::new(),
            });
        }
    }
    steps
}

/// An expected line as a pattern over one whole line of output.
fn pattern(expected: &str) -> Regex {
    line_pattern(expected, true)
}

/// An expected log line as a pattern over the start of a log line: the
/// structured fields that follow the message are not shown in the README.
fn log_pattern(expected: &str) -> Regex {
    line_pattern(expected, false)
}

fn line_pattern(expected: &str, whole_line: bool) -> Regex {
    let variable = Regex::new(
        r"(?x)
          (?P<rev>main@(sha1:)?[0-9a-f]{7,40})
        | (?P<hash>\b[0-9a-f]{12}\b)
        | (?P<age>\b\d+(ms|s|m|h)(\d+(s|m))?\b)
        | (?P<pod>\bpod\s+[a-z0-9-]+-[a-z0-9]{5}\b)
        | (?P<any>\.\.\.)
        | (?P<space>\s+)",
    )
    .expect("regex");
    let mut out = String::from(r"^\s*");
    let mut last = 0;
    for m in variable.captures_iter(expected) {
        let whole = m.get(0).expect("match");
        out.push_str(&regex::escape(&expected[last..whole.start()]));
        last = whole.end();
        out.push_str(if m.name("rev").is_some() {
            r"main@(sha1:)?[0-9a-f]{7,40}"
        } else if m.name("hash").is_some() {
            // Spec hashes are reproducible; the test still pins their form,
            // not their value, as a Git object id can be in the same place.
            r"[0-9a-f]{12}"
        } else if m.name("age").is_some() {
            r"\d+(ms|s|m|h)(\d+(s|m))?"
        } else if m.name("pod").is_some() {
            r"pod\s+[a-z0-9-]+-[a-z0-9]{5}"
        } else if m.name("any").is_some() {
            ".*"
        } else {
            r"\s+"
        });
    }
    out.push_str(&regex::escape(&expected[last..]));
    out.push_str(if whole_line { r"\s*$" } else { r"(\s.*)?$" });
    Regex::new(&out).expect("pattern")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_stagegate"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

fn start_demo(root: &Path, demo_dir: &Path, agent_log: &Path) -> Child {
    let log = std::fs::File::create(agent_log).expect("agent log");
    let mut command = Command::new(root.join("demo.sh"));
    command
        .env("STAGEGATE_DEMO_DIR", demo_dir)
        .env("STAGEGATE_BIN", env!("CARGO_BIN_EXE_stagegate"))
        .env("STAGEGATE_LOG", "info")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    let kube_sim = bin_dir().join("kube-sim");
    if kube_sim.exists() {
        command.env("KUBE_SIM_BIN", kube_sim);
    }
    // A process group of its own, so that stopping it stops kube-sim too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command.spawn().expect("start demo.sh")
}

fn stop(demo: &mut Child) {
    let pid = demo.id() as i32;
    // SAFETY: kill(2) on the process group this test started.
    unsafe {
        libc::kill(-pid, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = demo.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = demo.wait();
}

fn log_len(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|s| s.len()).unwrap_or(0)
}

/// Waits until every expected line has appeared in the agent's log after
/// byte `from`.
fn wait_for_agent_lines(path: &Path, from: usize, expect: &[String]) {
    let patterns: Vec<(String, Regex)> =
        expect.iter().map(|l| (l.clone(), log_pattern(l))).collect();
    let deadline = Instant::now() + AGENT_WAIT;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let new = log.get(from..).unwrap_or("");
        let missing: Vec<&String> = patterns
            .iter()
            .filter(|(_, p)| !new.lines().any(|l| p.is_match(agent_message(l))))
            .map(|(l, _)| l)
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "README: the agent should log {missing:?} within {AGENT_WAIT:?}; it logged:\n{new}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The README shows `LEVEL message`; the log line has a timestamp before
/// the level.
fn agent_message(line: &str) -> &str {
    for level in ["TRACE ", "DEBUG ", "INFO ", "WARN ", "ERROR "] {
        if let Some(at) = line.find(level) {
            return line[at..].trim_start();
        }
    }
    line
}

/// One bash process that runs commands one at a time, so that a command's
/// output can be told from the next one's and `cd`/`export` carry over.
struct Shell {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    child: Child,
    count: usize,
    log_from: usize,
}

impl Shell {
    fn start(root: &Path) -> Shell {
        let mut child = Command::new("bash")
            .arg("--noprofile")
            .arg("--norc")
            .current_dir(root)
            .env_remove("KUBECONFIG")
            // No git identity: the walkthrough must work without one.
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "exec 2>&1").expect("write");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Shell {
            stdin,
            lines,
            child,
            count: 0,
            log_from: 0,
        }
    }

    /// Runs one command and returns what it printed; it must succeed.
    fn run(&mut self, command: &str) -> String {
        self.count += 1;
        let marker = format!("@@readme-step-{}", self.count);
        writeln!(self.stdin, "{command}\nprintf '\\n{marker} %s\\n' \"$?\"").expect("write");
        let mut output = String::new();
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!("README: `{command}` did not finish; it printed:\n{output}"),
            };
            if let Some(status) = line.strip_prefix(&format!("{marker} ")) {
                assert_eq!(status, "0", "README: `{command}` failed:\n{output}");
                return output;
            }
            output.push_str(&line);
            output.push('\n');
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn expected_lines_match_what_varies_between_runs() {
    let p = pattern("pre  Failed   main@sha1:ed9979d7682e  2s   Job shop/db-migrate: ...");
    assert!(p.is_match("pre          Failed   main@sha1:0123456789ab  17s  Job shop/db-migrate: BackoffLimitExceeded"));
    assert!(!p.is_match("pre Ready main@sha1:0123456789ab 17s Job shop/db-migrate: x"));
    let p = pattern("last log lines of pod db-migrate-rrsvn:");
    assert!(p.is_match("    last log lines of pod db-migrate-x7k2p:"));
}
