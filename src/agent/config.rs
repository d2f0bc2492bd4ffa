//! Agent settings, from a YAML file, `STAGEGATE_*` environment variables and
//! flags; flags win over the environment, which wins over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::agent::source::{GitAuth, GitRef};

/// `stagegate run` flags; every one also reads `STAGEGATE_<NAME>`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct RunArgs {
    /// YAML file with the same settings (camelCase keys); flags and env win.
    #[arg(long, value_name = "FILE", env = "STAGEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Git repository URL (https://, ssh://, git://, file://).
    #[arg(long, value_name = "URL", env = "STAGEGATE_REPO")]
    pub repo: Option<String>,
    /// Branch to follow (default: main).
    #[arg(long, value_name = "B", env = "STAGEGATE_BRANCH", conflicts_with_all = ["tag", "semver", "commit"])]
    pub branch: Option<String>,
    /// Tag to follow.
    #[arg(long, value_name = "T", env = "STAGEGATE_TAG", conflicts_with_all = ["semver", "commit"])]
    pub tag: Option<String>,
    /// Follow the highest tag in a semver range, e.g. ">=1.2, <2".
    #[arg(
        long,
        value_name = "RANGE",
        env = "STAGEGATE_SEMVER",
        conflicts_with = "commit"
    )]
    pub semver: Option<String>,
    /// Pin one commit (40-hex id).
    #[arg(long, value_name = "SHA", env = "STAGEGATE_COMMIT")]
    pub commit: Option<String>,
    /// Directory of the repository holding the stage definitions (default: all of it).
    #[arg(long, value_name = "DIR", env = "STAGEGATE_PATH")]
    pub path: Option<PathBuf>,
    /// How often to poll the repository (default 1m).
    #[arg(long, value_name = "D", env = "STAGEGATE_INTERVAL", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// The agent's namespace: Stage objects and leader Lease (default stagegate-system).
    #[arg(long, short = 'n', value_name = "NS", env = "STAGEGATE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Create the agent's namespace when it is missing.
    #[arg(long, env = "STAGEGATE_CREATE_NAMESPACE")]
    pub create_namespace: bool,
    /// API requests in flight at once, watches aside (default 4); any number of stages may wait.
    #[arg(long, value_name = "N", env = "STAGEGATE_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Where the Git cache lives (default: a stagegate directory in the system cache dir).
    #[arg(long, value_name = "DIR", env = "STAGEGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// SSH private key file (a mounted Secret).
    #[arg(long, value_name = "FILE", env = "STAGEGATE_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file; required with an SSH key: host keys are verified strictly.
    #[arg(long, value_name = "FILE", env = "STAGEGATE_KNOWN_HOSTS_FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// File holding the SSH key's passphrase.
    #[arg(long, value_name = "FILE", env = "STAGEGATE_SSH_PASSPHRASE_FILE")]
    pub ssh_passphrase_file: Option<PathBuf>,
    /// HTTPS user name.
    #[arg(long, value_name = "USER", env = "STAGEGATE_HTTPS_USERNAME")]
    pub https_username: Option<String>,
    /// File holding the HTTPS password or access token.
    #[arg(long, value_name = "FILE", env = "STAGEGATE_HTTPS_PASSWORD_FILE")]
    pub https_password_file: Option<PathBuf>,
    /// File holding the push webhook's shared secret; without it the webhook is off.
    #[arg(long, value_name = "FILE", env = "STAGEGATE_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Address of /metrics, /healthz, /readyz, POST /hooks/git and the status
    /// page (default 0.0.0.0:8080; with --once, no server unless this is set).
    #[arg(long, value_name = "ADDR", env = "STAGEGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve the read-only status page at / and /api/status (default true).
    #[arg(long, value_name = "BOOL", env = "STAGEGATE_STATUS_PAGE")]
    pub status_page: Option<bool>,
    /// Hold a Lease so that only one replica reconciles (default true; false with --once).
    #[arg(long, value_name = "BOOL", env = "STAGEGATE_LEADER_ELECT")]
    pub leader_elect: Option<bool>,
    /// Default stage timeout (default 5m).
    #[arg(long, value_name = "D", env = "STAGEGATE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// How long a Job's pod may be stuck (image pull, unschedulable) before its stage fails (default 2m).
    #[arg(long, value_name = "D", env = "STAGEGATE_STUCK_POD_GRACE", value_parser = humantime::parse_duration)]
    pub stuck_pod_grace: Option<Duration>,
    /// Reconcile the current revision once, wait for every stage, exit 0 only if all are Ready.
    #[arg(long)]
    pub once: bool,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// ServiceAccount (in each Kustomization's namespace) that Flux stages
    /// without serviceAccountName are applied as, as Flux's
    /// --default-service-account (default: the agent's own rights).
    #[arg(long, value_name = "NAME", env = "STAGEGATE_DEFAULT_SERVICE_ACCOUNT")]
    pub default_service_account: Option<String>,
    /// Apply Flux's own bootstrap Kustomization (flux-system, whose path
    /// holds gotk-components.yaml) instead of skipping it.
    #[arg(long, value_name = "BOOL", env = "STAGEGATE_APPLY_FLUX_BOOTSTRAP", num_args = 0..=1, default_missing_value = "true")]
    pub apply_flux_bootstrap: Option<bool>,
}

/// The config file: the same settings, camelCase.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSettings {
    repo: Option<String>,
    branch: Option<String>,
    tag: Option<String>,
    semver: Option<String>,
    commit: Option<String>,
    path: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    namespace: Option<String>,
    create_namespace: Option<bool>,
    concurrency: Option<usize>,
    cache_dir: Option<PathBuf>,
    ssh_key_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    ssh_passphrase_file: Option<PathBuf>,
    https_username: Option<String>,
    https_password_file: Option<PathBuf>,
    webhook_secret_file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    status_page: Option<bool>,
    leader_elect: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stuck_pod_grace: Option<Duration>,
    default_service_account: Option<String>,
    apply_flux_bootstrap: Option<bool>,
}

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub repo: String,
    pub reference: GitRef,
    pub path: Option<PathBuf>,
    pub interval: Duration,
    pub namespace: String,
    pub create_namespace: bool,
    pub concurrency: usize,
    pub cache_dir: PathBuf,
    pub auth: GitAuth,
    pub webhook_secret_file: Option<PathBuf>,
    /// `None`: no HTTP server (`--once` without `--listen`).
    pub listen: Option<SocketAddr>,
    pub status_page: bool,
    pub leader_elect: bool,
    pub timeout: Duration,
    pub stuck_pod_grace: Duration,
    pub once: bool,
    pub kubeconfig: Option<PathBuf>,
    /// Flux's `--default-service-account`.
    pub default_service_account: Option<String>,
    pub apply_flux_bootstrap: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no repository: set --repo, STAGEGATE_REPO or `repo` in the config file")]
    NoRepo,
    #[error("only one of branch, tag, semver and commit may be set (found {0})")]
    ConflictingRefs(String),
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    pub fn resolve(args: RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let repo = args.repo.or(file.repo).ok_or(ConfigError::NoRepo)?;
        // Flags and env pick the reference as a whole: one of them set there
        // overrides whichever the file chose.
        let flag_refs = [&args.branch, &args.tag, &args.semver, &args.commit];
        let (branch, tag, semver, commit) = if flag_refs.iter().any(|r| r.is_some()) {
            (args.branch, args.tag, args.semver, args.commit)
        } else {
            (file.branch, file.tag, file.semver, file.commit)
        };
        let reference = reference(branch, tag, semver, commit)?;
        let ssh_key = args.ssh_key_file.or(file.ssh_key_file);
        let known_hosts = args.known_hosts_file.or(file.known_hosts_file);
        let https_password = args.https_password_file.or(file.https_password_file);
        let auth = match (ssh_key, https_password) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set an SSH key or an HTTPS password, not both".into(),
                ));
            }
            (Some(private_key), None) => GitAuth::Ssh {
                private_key,
                known_hosts: known_hosts.ok_or_else(|| {
                    ConfigError::Invalid(
                        "an SSH key needs --known-hosts-file: host keys are always verified".into(),
                    )
                })?,
                passphrase_file: args.ssh_passphrase_file.or(file.ssh_passphrase_file),
            },
            (None, Some(password_file)) => GitAuth::Https {
                username: args
                    .https_username
                    .or(file.https_username)
                    .unwrap_or_else(|| "git".into()),
                password_file,
            },
            (None, None) => GitAuth::None,
        };
        let concurrency = args.concurrency.or(file.concurrency).unwrap_or(4);
        if concurrency == 0 {
            return Err(ConfigError::Invalid(
                "concurrency must be at least 1".into(),
            ));
        }
        let once = args.once;
        Ok(Settings {
            repo,
            reference,
            path: args.path.or(file.path),
            interval: args
                .interval
                .or(file.interval)
                .unwrap_or(Duration::from_secs(60)),
            namespace: args
                .namespace
                .or(file.namespace)
                .unwrap_or_else(|| "stagegate-system".into()),
            create_namespace: args.create_namespace || file.create_namespace.unwrap_or(false),
            concurrency,
            cache_dir: args
                .cache_dir
                .or(file.cache_dir)
                .unwrap_or_else(default_cache_dir),
            auth,
            webhook_secret_file: args.webhook_secret_file.or(file.webhook_secret_file),
            // A pod is probed and scraped on :8080, as Flux's controllers
            // are; a one-shot run in a pipeline serves nothing unless asked.
            listen: args
                .listen
                .or(file.listen)
                .or((!once).then_some(DEFAULT_LISTEN)),
            status_page: args.status_page.or(file.status_page).unwrap_or(true),
            leader_elect: args.leader_elect.or(file.leader_elect).unwrap_or(!once),
            timeout: args
                .timeout
                .or(file.timeout)
                .unwrap_or(Duration::from_secs(300)),
            stuck_pod_grace: args
                .stuck_pod_grace
                .or(file.stuck_pod_grace)
                .unwrap_or(Duration::from_secs(120)),
            once,
            kubeconfig: args.kubeconfig,
            default_service_account: service_account(
                args.default_service_account
                    .or(file.default_service_account),
            )?,
            apply_flux_bootstrap: args
                .apply_flux_bootstrap
                .or(file.apply_flux_bootstrap)
                .unwrap_or(false),
        })
    }
}

/// Where the agent listens in a pod.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8080);

impl Settings {
    /// The push webhook's secret, read from its file: `None` when no file is
    /// set (the webhook is off). An empty secret is an error: an HMAC keyed
    /// with nothing would accept anyone's request.
    pub fn webhook_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.webhook_secret_file else {
            return Ok(None);
        };
        let err = |message: String| ConfigError::File {
            path: path.clone(),
            message,
        };
        let secret = std::fs::read(path)
            .map_err(|e| err(format!("cannot read the webhook secret: {e}")))?
            .trim_ascii()
            .to_vec();
        if secret.is_empty() {
            return Err(err(
                "the webhook secret is empty; write a random secret into it \
                 (e.g. `openssl rand -hex 32`), or unset --webhook-secret-file to turn the webhook off"
                    .into(),
            ));
        }
        Ok(Some(secret))
    }
}

/// A ServiceAccount name is a DNS subdomain; an empty one means unset.
pub fn service_account(name: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(ConfigError::Invalid(format!(
            "default service account {name:?} is not a valid ServiceAccount name"
        )));
    }
    Ok(Some(name))
}

/// The values `--substitute-from FILE` gives the offline commands: a YAML
/// map of `KEY: value`, or an env file of `KEY=value` lines (`#` comments).
pub fn read_substitute_file(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_substitute_values(&text).map_err(err)
}

fn parse_substitute_values(
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut values = std::collections::BTreeMap::new();
    let meaningful = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let env_style = meaningful.clone().all(|l| {
        l.split_once('=')
            .is_some_and(|(k, _)| is_variable_name(k.trim_start_matches("export ").trim()))
    });
    if env_style {
        for line in meaningful {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            let key = key.trim_start_matches("export ").trim();
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            values.insert(key.to_string(), unquoted.to_string());
        }
        return Ok(values);
    }
    let map: std::collections::BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(text)
        .map_err(|e| format!("neither KEY=value lines nor a YAML map of KEY: value: {e}"))?;
    for (key, value) in map {
        if !is_variable_name(&key) {
            return Err(format!(
                "{key:?} is not a variable name (letters, digits, _)"
            ));
        }
        let text = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "{key}: the value must be a string, number or boolean"
                ));
            }
        };
        values.insert(key, text);
    }
    Ok(values)
}

fn is_variable_name(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))
}

fn reference(
    branch: Option<String>,
    tag: Option<String>,
    semver: Option<String>,
    commit: Option<String>,
) -> Result<GitRef, ConfigError> {
    let set: Vec<&str> = [
        ("branch", &branch),
        ("tag", &tag),
        ("semver", &semver),
        ("commit", &commit),
    ]
    .iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| *k)
    .collect();
    if set.len() > 1 {
        return Err(ConfigError::ConflictingRefs(set.join(", ")));
    }
    Ok(match (branch, tag, semver, commit) {
        (_, Some(tag), _, _) => GitRef::Tag(tag),
        (_, _, Some(range), _) => GitRef::TagRange(range),
        (_, _, _, Some(commit)) => GitRef::Commit(commit),
        (branch, ..) => GitRef::Branch(branch.unwrap_or_else(|| "main".into())),
    })
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("stagegate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stagegate.yaml");
        std::fs::write(
            &file,
            "repo: https://example.com/a.git\nbranch: prod\ninterval: 5m\nconcurrency: 2\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(file.clone()),
            interval: Some(Duration::from_secs(30)),
            ..RunArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.repo, "https://example.com/a.git");
        assert_eq!(s.reference, GitRef::Branch("prod".into()));
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.concurrency, 2);
        assert_eq!(s.namespace, "stagegate-system");
        assert!(s.leader_elect);

        let args = RunArgs {
            config: Some(file),
            tag: Some("v1".into()),
            ..RunArgs::default()
        };
        assert_eq!(
            Settings::resolve(args).unwrap().reference,
            GitRef::Tag("v1".into())
        );
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/stagegate.yaml");
        let s = Settings::resolve(RunArgs {
            config: Some(example.into()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.path.as_deref(), Some(Path::new("clusters/production")));
        assert!(matches!(s.auth, GitAuth::Ssh { .. }));
        assert_eq!(s.stuck_pod_grace, Duration::from_secs(120));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        assert!(matches!(
            Settings::resolve(RunArgs::default()),
            Err(ConfigError::NoRepo)
        ));
        let args = RunArgs {
            repo: Some("x".into()),
            ssh_key_file: Some("k".into()),
            ..RunArgs::default()
        };
        assert!(
            Settings::resolve(args)
                .unwrap_err()
                .to_string()
                .contains("known-hosts")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "repo: x\nintervall: 5m\n").unwrap();
        let err = Settings::resolve(RunArgs {
            config: Some(file),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("intervall"), "{err}");
    }

    #[test]
    fn an_empty_webhook_secret_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhook-secret");
        std::fs::write(&file, " \n").unwrap();
        let s = Settings::resolve(RunArgs {
            repo: Some("x".into()),
            webhook_secret_file: Some(file.clone()),
            ..RunArgs::default()
        })
        .unwrap();
        let err = s.webhook_secret().unwrap_err().to_string();
        assert!(
            err.contains("webhook-secret") && err.contains("empty"),
            "{err}"
        );
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(s.webhook_secret().unwrap(), Some(b"s3cret".to_vec()));
    }

    #[test]
    fn flux_settings_come_from_flags_env_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stagegate.yaml");
        std::fs::write(
            &file,
            "repo: x\ndefaultServiceAccount: tenant\napplyFluxBootstrap: true\n",
        )
        .unwrap();
        let s = Settings::resolve(RunArgs {
            config: Some(file.clone()),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.default_service_account.as_deref(), Some("tenant"));
        assert!(s.apply_flux_bootstrap);
        let s = Settings::resolve(RunArgs {
            config: Some(file),
            default_service_account: Some("other".into()),
            apply_flux_bootstrap: Some(false),
            ..RunArgs::default()
        })
        .unwrap();
        assert_eq!(s.default_service_account.as_deref(), Some("other"));
        assert!(!s.apply_flux_bootstrap);
        let err = Settings::resolve(RunArgs {
            repo: Some("x".into()),
            default_service_account: Some("Tenant A".into()),
            ..RunArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"Tenant A\""), "{err}");
    }

    #[test]
    fn substitute_files_are_env_lines_or_a_yaml_map() {
        let env = parse_substitute_values(
            "# cluster\nexport CLUSTER=prod\nREGION=\"eu-west-1\"\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(env["CLUSTER"], "prod");
        assert_eq!(env["REGION"], "eu-west-1");
        assert_eq!(env["EMPTY"], "");
        let yaml = parse_substitute_values("CLUSTER: prod\nREPLICAS: 3\n").unwrap();
        assert_eq!(yaml["REPLICAS"], "3");
        let bad = parse_substitute_values("CLUSTER: {a: b}\n").unwrap_err();
        assert!(bad.contains("CLUSTER"), "{bad}");
    }

    #[test]
    fn once_listens_only_when_asked() {
        let base = RunArgs {
            repo: Some("x".into()),
            ..RunArgs::default()
        };
        let pod = Settings::resolve(base.clone()).unwrap();
        assert_eq!(pod.listen, Some(DEFAULT_LISTEN));
        let once = Settings::resolve(RunArgs {
            once: true,
            ..base.clone()
        })
        .unwrap();
        assert_eq!(once.listen, None);
        let asked = "127.0.0.1:9000".parse().unwrap();
        let once = Settings::resolve(RunArgs {
            once: true,
            listen: Some(asked),
            ..base
        })
        .unwrap();
        assert_eq!(once.listen, Some(asked));
    }
}
