//! Hooks inside a stage: objects that run before (`pre-apply`) or after
//! (`post-apply`) the stage's other objects, read from stagegate's own
//! annotations and from Helm's and kluctl's, so charts and kluctl
//! deployments run as they are.
//!
//! Pure: annotations in, a [`Hook`] (or why not) out. The apply engine runs
//! hooks in their phase; `graph`, `render`, `diff` and `status` show them.
//!
//! A hook Job keeps every rule of an ordinary Job (spec hash, run policy,
//! rerun requests): it runs again when it changed, not on every sync.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

pub const HOOK: &str = "stagegate.dev/hook";
pub const HOOK_WEIGHT: &str = "stagegate.dev/hook-weight";
pub const HOOK_DELETE_POLICY: &str = "stagegate.dev/hook-delete-policy";
pub const HOOK_WAIT: &str = "stagegate.dev/hook-wait";
pub const HOOK_TIMEOUT: &str = "stagegate.dev/hook-timeout";

pub const HELM_HOOK: &str = "helm.sh/hook";
pub const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
pub const HELM_HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

pub const KLUCTL_HOOK: &str = "kluctl.io/hook";
pub const KLUCTL_HOOK_WEIGHT: &str = "kluctl.io/hook-weight";
pub const KLUCTL_HOOK_DELETE_POLICY: &str = "kluctl.io/hook-delete-policy";
pub const KLUCTL_HOOK_WAIT: &str = "kluctl.io/hook-wait";
pub const KLUCTL_HOOK_TIMEOUT: &str = "kluctl.io/hook-timeout";

/// When, relative to the stage's other objects, a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPhase {
    Pre,
    Post,
}

impl HookPhase {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pre => "pre-apply",
            Self::Post => "post-apply",
        }
    }

    /// The short word `graph` and `status` use.
    pub fn short(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
        }
    }
}

impl fmt::Display for HookPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// On which applies of the stage a hook runs. "Initial" means none of the
/// stage's (non-hook) objects existed in the cluster before this apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    Initial,
    Upgrade,
}

impl When {
    fn union(self, other: When) -> When {
        if self == other { self } else { When::Always }
    }

    pub fn applies(self, initial: bool) -> bool {
        match self {
            When::Always => true,
            When::Initial => initial,
            When::Upgrade => !initial,
        }
    }
}

/// `hook-delete-policy`, any combination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Delete the previous object before creating the new one: what the
    /// spec-hash recreation of Jobs always does, so it changes nothing.
    pub before_hook_creation: bool,
    /// Delete the hook (a Job with its pods) once it succeeded.
    pub hook_succeeded: bool,
    /// Delete the hook once it failed (its reason and log tail stay in the state).
    pub hook_failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Runs before the stage's other objects, and on which applies.
    pub pre: Option<When>,
    /// Runs after the stage's other objects are applied (and healthy when the stage waits).
    pub post: Option<When>,
    /// Ascending; hooks of one phase and equal weight run at the same time.
    pub weight: i32,
    pub delete: DeletePolicy,
    /// `false`: created, not waited for (`kluctl.io/hook-wait: "false"`).
    pub wait: bool,
    /// Replaces the stage's timeout for this hook.
    pub timeout: Option<Duration>,
}

impl Hook {
    /// The phase this hook runs in on an apply that is (or is not) the
    /// stage's initial install; `None` when it does not run on this one. A
    /// hook in both phases runs in the first: its second run would find the
    /// same spec already done.
    pub fn phase(&self, initial: bool) -> Option<HookPhase> {
        if self.pre.is_some_and(|w| w.applies(initial)) {
            Some(HookPhase::Pre)
        } else if self.post.is_some_and(|w| w.applies(initial)) {
            Some(HookPhase::Post)
        } else {
            None
        }
    }

    /// Whether the answer of [`Hook::phase`] depends on the install being initial.
    pub fn depends_on_install(&self) -> bool {
        [self.pre, self.post]
            .into_iter()
            .flatten()
            .any(|w| w != When::Always)
    }

    /// Every `(phase, when)` this hook runs at, pre first.
    pub fn points(&self) -> Vec<(HookPhase, When)> {
        let mut points = Vec::new();
        if let Some(w) = self.pre {
            points.push((HookPhase::Pre, w));
        }
        if let Some(w) = self.post {
            points.push((HookPhase::Post, w));
        }
        points
    }

    /// `pre-apply weight -5`, `post-apply (initial install only), not waited for`.
    pub fn describe(&self) -> String {
        let points: Vec<String> = self
            .points()
            .into_iter()
            .map(|(phase, when)| format!("{}{}", phase.label(), when_suffix(when)))
            .collect();
        let mut out = points.join(", ");
        out.push_str(&self.details());
        out
    }

    /// ` (weight -5, not waited for, deleted after success)`: what the graph adds to a name.
    pub fn details(&self) -> String {
        let mut parts = Vec::new();
        if self.weight != 0 {
            parts.push(format!("weight {}", self.weight));
        }
        if !self.wait {
            parts.push("not waited for".to_string());
        }
        if let Some(t) = self.timeout {
            parts.push(format!("timeout {}", humantime::format_duration(t)));
        }
        if self.delete.hook_succeeded {
            parts.push("deleted after success".to_string());
        }
        if self.delete.hook_failed {
            parts.push("deleted after failure".to_string());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

pub fn when_suffix(when: When) -> &'static str {
    match when {
        When::Always => "",
        When::Initial => " on the initial install",
        When::Upgrade => " on upgrades",
    }
}

/// What an object's annotations make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookKind {
    /// An ordinary object of the stage.
    NotAHook,
    Hook(Hook),
    /// Annotated only with hook kinds stagegate cannot honour (Helm
    /// `pre-delete`, `test`…): never applied; `validate` warns about it.
    Unsupported,
}

impl HookKind {
    pub fn hook(&self) -> Option<&Hook> {
        match self {
            HookKind::Hook(h) => Some(h),
            _ => None,
        }
    }
}

/// An object's hook, with warnings (each naming the object) about what is
/// not honoured. An error is a value stagegate's own annotation does not
/// allow, or a weight or timeout that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub kind: HookKind,
    pub warnings: Vec<String>,
}

/// The annotation families, in the order their attributes are read when an
/// object carries more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Stagegate,
    Helm,
    Kluctl,
}

impl Family {
    fn hook_key(self) -> &'static str {
        match self {
            Family::Stagegate => HOOK,
            Family::Helm => HELM_HOOK,
            Family::Kluctl => KLUCTL_HOOK,
        }
    }

    /// `(phase, when)` of one comma-separated value; `Err(true)` for a
    /// kind we know and cannot honour, `Err(false)` for one we do not know.
    fn point(self, value: &str) -> Result<(HookPhase, When), bool> {
        use HookPhase::{Post, Pre};
        use When::{Always, Initial, Upgrade};
        match (self, value) {
            (Family::Stagegate, "pre-apply") => Ok((Pre, Always)),
            (Family::Stagegate, "post-apply") => Ok((Post, Always)),
            (Family::Helm, "pre-install") => Ok((Pre, Initial)),
            (Family::Helm, "pre-upgrade") => Ok((Pre, Upgrade)),
            (Family::Helm, "post-install") => Ok((Post, Initial)),
            (Family::Helm, "post-upgrade") => Ok((Post, Upgrade)),
            (
                Family::Helm,
                "pre-delete" | "post-delete" | "pre-rollback" | "post-rollback" | "test"
                | "test-success" | "test-failure",
            ) => Err(true),
            (Family::Kluctl, "pre-deploy") => Ok((Pre, Always)),
            (Family::Kluctl, "post-deploy") => Ok((Post, Always)),
            (Family::Kluctl, "pre-deploy-initial") => Ok((Pre, Initial)),
            (Family::Kluctl, "post-deploy-initial") => Ok((Post, Initial)),
            (Family::Kluctl, "pre-deploy-upgrade") => Ok((Pre, Upgrade)),
            (Family::Kluctl, "post-deploy-upgrade") => Ok((Post, Upgrade)),
            (Family::Kluctl, "pre-delete" | "post-delete") => Err(true),
            _ => Err(false),
        }
    }
}

const FAMILIES: [Family; 3] = [Family::Stagegate, Family::Helm, Family::Kluctl];

/// A hook annotation whose value cannot be honoured: the object is not
/// applied. Each names the object and the annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("{object}: {HOOK}: {value:?} is not one of pre-apply, post-apply")]
    Phase { object: String, value: String },
    #[error("{object}: {key}: {value:?} is not an integer")]
    Weight {
        object: String,
        key: &'static str,
        value: String,
    },
    #[error("{object}: {key}: {value:?} is not true or false")]
    Wait {
        object: String,
        key: &'static str,
        value: String,
    },
    #[error("{object}: {key}: {value:?} is not a duration (like 30s, 5m, 1h30m)")]
    Timeout {
        object: String,
        key: &'static str,
        value: String,
    },
}

/// Read the hook annotations of `object` (a rendered manifest). `name` is
/// how messages name the object, e.g. `Job shop/migrate`.
pub fn parse(object: &Value, name: &str) -> Result<Parsed, HookError> {
    let annotation = |key: &str| {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    let mut warnings = Vec::new();
    let mut pre: Option<When> = None;
    let mut post: Option<When> = None;
    let mut any_hook_annotation = false;
    // Hook kinds that cannot be honoured, each said once.
    let mut ignored: Vec<String> = Vec::new();
    for family in FAMILIES {
        let Some(value) = annotation(family.hook_key()) else {
            continue;
        };
        any_hook_annotation = true;
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match family.point(part) {
                Ok((HookPhase::Pre, w)) => pre = Some(pre.map_or(w, |p| p.union(w))),
                Ok((HookPhase::Post, w)) => post = Some(post.map_or(w, |p| p.union(w))),
                Err(_) if family == Family::Stagegate => {
                    return Err(HookError::Phase {
                        object: name.to_string(),
                        value: part.to_string(),
                    });
                }
                Err(true) => ignored.push(format!(
                    "{}: {part} is not supported (stagegate has no delete, rollback or test phase)",
                    family.hook_key()
                )),
                Err(false) => ignored.push(format!(
                    "{}: {part:?} is not a hook kind stagegate knows",
                    family.hook_key()
                )),
            }
        }
    }
    if !any_hook_annotation {
        return Ok(Parsed {
            kind: HookKind::NotAHook,
            warnings,
        });
    }
    if pre.is_none() && post.is_none() {
        warnings.push(format!(
            "{name}: {}; it is never applied",
            ignored.join("; ")
        ));
        return Ok(Parsed {
            kind: HookKind::Unsupported,
            warnings,
        });
    }

    for note in ignored {
        warnings.push(format!("{name}: {note}; that hook kind is ignored"));
    }
    let first = |keys: &[&'static str]| {
        keys.iter()
            .find_map(|k| annotation(k).map(|v| (*k, v.trim())))
    };
    let weight = match first(&[HOOK_WEIGHT, HELM_HOOK_WEIGHT, KLUCTL_HOOK_WEIGHT]) {
        None => 0,
        Some((key, v)) => v.parse::<i32>().map_err(|_| HookError::Weight {
            object: name.to_string(),
            key,
            value: v.to_string(),
        })?,
    };
    let mut delete = DeletePolicy::default();
    if let Some((key, v)) = first(&[
        HOOK_DELETE_POLICY,
        HELM_HOOK_DELETE_POLICY,
        KLUCTL_HOOK_DELETE_POLICY,
    ]) {
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "before-hook-creation" => delete.before_hook_creation = true,
                "hook-succeeded" => delete.hook_succeeded = true,
                "hook-failed" => delete.hook_failed = true,
                other => warnings.push(format!(
                    "{name}: {key}: {other:?} is not one of before-hook-creation, hook-succeeded, hook-failed; ignored"
                )),
            }
        }
    }
    let wait = match first(&[HOOK_WAIT, KLUCTL_HOOK_WAIT]) {
        None => true,
        Some((_, "true")) => true,
        Some((_, "false")) => false,
        Some((key, v)) => {
            return Err(HookError::Wait {
                object: name.to_string(),
                key,
                value: v.to_string(),
            });
        }
    };
    let timeout = match first(&[HOOK_TIMEOUT, KLUCTL_HOOK_TIMEOUT]) {
        None => None,
        Some((key, v)) => Some(parse_duration(v).ok_or_else(|| HookError::Timeout {
            object: name.to_string(),
            key,
            value: v.to_string(),
        })?),
    };
    Ok(Parsed {
        kind: HookKind::Hook(Hook {
            pre,
            post,
            weight,
            delete,
            wait,
            timeout,
        }),
        warnings,
    })
}

/// `5m`, `1h30m`, `90s`, and Go's `5m0s` as kluctl writes them.
fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Some(d);
    }
    // Go durations run units together without spaces: split before each
    // number that follows a unit.
    let mut spaced = String::new();
    let mut prev_alpha = false;
    for c in text.chars() {
        if (c.is_ascii_digit() || c == '.') && prev_alpha {
            spaced.push(' ');
        }
        prev_alpha = c.is_ascii_alphabetic();
        spaced.push(c);
    }
    humantime::parse_duration(&spaced).ok()
}

/// Hook of an object, or `None` for an ordinary object or one whose
/// annotations cannot be read (planning reports those).
pub fn hook_of(object: &Value) -> Option<Hook> {
    match parse(object, "").ok()?.kind {
        HookKind::Hook(h) => Some(h),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(annotations: &[(&str, &str)]) -> Value {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "annotations": map}})
    }

    fn hook(annotations: &[(&str, &str)]) -> Hook {
        match parse(&obj(annotations), "Job migrate").unwrap().kind {
            HookKind::Hook(h) => h,
            other => panic!("not a hook: {other:?}"),
        }
    }

    #[test]
    fn plain_object_is_not_a_hook() {
        let parsed = parse(&obj(&[("a", "b")]), "Job migrate").unwrap();
        assert_eq!(parsed.kind, HookKind::NotAHook);
        assert!(parsed.warnings.is_empty());
        let bare = json!({"kind": "ConfigMap", "metadata": {"name": "x"}});
        assert_eq!(parse(&bare, "x").unwrap().kind, HookKind::NotAHook);
    }

    #[test]
    fn stagegate_hooks_with_weight_and_both_phases() {
        let h = hook(&[(HOOK, "pre-apply"), (HOOK_WEIGHT, "-5")]);
        assert_eq!(h.pre, Some(When::Always));
        assert_eq!(h.post, None);
        assert_eq!(h.weight, -5);
        assert!(h.wait);
        assert_eq!(h.phase(true), Some(HookPhase::Pre));
        assert_eq!(h.phase(false), Some(HookPhase::Pre));
        assert_eq!(h.describe(), "pre-apply (weight -5)");

        let h = hook(&[(HOOK, "pre-apply, post-apply")]);
        assert_eq!(
            h.points(),
            vec![
                (HookPhase::Pre, When::Always),
                (HookPhase::Post, When::Always)
            ]
        );
        assert_eq!(h.phase(false), Some(HookPhase::Pre), "the first phase wins");

        let h = hook(&[(HOOK, "post-apply")]);
        assert_eq!(h.phase(true), Some(HookPhase::Post));
        assert!(!h.depends_on_install());
    }

    #[test]
    fn unknown_stagegate_hook_value_is_an_error() {
        let err = parse(&obj(&[(HOOK, "pre-sync")]), "Job migrate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Job migrate") && err.contains("pre-sync"),
            "{err}"
        );
    }

    #[test]
    fn helm_install_and_upgrade_map_to_initial_and_upgrade() {
        let h = hook(&[(HELM_HOOK, "pre-install")]);
        assert_eq!(h.pre, Some(When::Initial));
        assert_eq!(h.phase(true), Some(HookPhase::Pre));
        assert_eq!(h.phase(false), None);
        assert!(h.depends_on_install());

        let h = hook(&[(HELM_HOOK, "pre-upgrade")]);
        assert_eq!(h.phase(true), None);
        assert_eq!(h.phase(false), Some(HookPhase::Pre));

        let h = hook(&[(HELM_HOOK, "pre-install,pre-upgrade")]);
        assert_eq!(h.pre, Some(When::Always));
        assert!(!h.depends_on_install());

        let h = hook(&[(HELM_HOOK, "post-install,post-upgrade")]);
        assert_eq!((h.pre, h.post), (None, Some(When::Always)));

        let h = hook(&[(HELM_HOOK, "pre-install,post-upgrade")]);
        assert_eq!(h.phase(true), Some(HookPhase::Pre));
        assert_eq!(h.phase(false), Some(HookPhase::Post));
    }

    #[test]
    fn helm_weight_and_delete_policies() {
        let h = hook(&[
            (HELM_HOOK, "pre-install"),
            (HELM_HOOK_WEIGHT, "1"),
            (HELM_HOOK_DELETE_POLICY, "hook-succeeded"),
        ]);
        assert_eq!(h.weight, 1);
        assert_eq!(
            h.delete,
            DeletePolicy {
                hook_succeeded: true,
                ..DeletePolicy::default()
            }
        );
        let h = hook(&[
            (HELM_HOOK, "post-upgrade"),
            (HELM_HOOK_DELETE_POLICY, "before-hook-creation,hook-failed"),
        ]);
        assert!(h.delete.before_hook_creation && h.delete.hook_failed && !h.delete.hook_succeeded);
        assert_eq!(
            h.describe(),
            "post-apply on upgrades (deleted after failure)"
        );
    }

    #[test]
    fn unsupported_helm_kinds_warn_naming_the_object() {
        let parsed = parse(
            &obj(&[(HELM_HOOK, "pre-install,pre-delete")]),
            "Job shop/migrate",
        )
        .unwrap();
        assert!(matches!(parsed.kind, HookKind::Hook(_)));
        assert_eq!(parsed.warnings.len(), 1);
        assert!(
            parsed.warnings[0].contains("Job shop/migrate")
                && parsed.warnings[0].contains("pre-delete"),
            "{:?}",
            parsed.warnings
        );

        for kind in [
            "pre-delete",
            "post-delete",
            "pre-rollback",
            "post-rollback",
            "test",
        ] {
            let parsed = parse(&obj(&[(HELM_HOOK, kind)]), "Pod t").unwrap();
            assert_eq!(parsed.kind, HookKind::Unsupported, "{kind}");
            assert_eq!(
                parsed.warnings,
                vec![format!(
                    "Pod t: helm.sh/hook: {kind} is not supported (stagegate has no delete, rollback or test phase); it is never applied"
                )]
            );
        }
        let parsed = parse(&obj(&[(HELM_HOOK, "pre-instal")]), "Job x").unwrap();
        assert_eq!(parsed.kind, HookKind::Unsupported);
        assert!(parsed.warnings[0].contains("not a hook kind stagegate knows"));
    }

    #[test]
    fn kluctl_hooks_wait_and_timeout() {
        let h = hook(&[(KLUCTL_HOOK, "post-deploy"), (KLUCTL_HOOK_WAIT, "false")]);
        assert_eq!((h.pre, h.post), (None, Some(When::Always)));
        assert!(!h.wait);
        assert_eq!(h.describe(), "post-apply (not waited for)");

        let h = hook(&[(KLUCTL_HOOK, "pre-deploy")]);
        assert_eq!(h.pre, Some(When::Always));
        let h = hook(&[(KLUCTL_HOOK, "pre-deploy-initial")]);
        assert_eq!(h.pre, Some(When::Initial));
        let h = hook(&[(KLUCTL_HOOK, "pre-deploy-upgrade")]);
        assert_eq!(h.pre, Some(When::Upgrade));
        let h = hook(&[(KLUCTL_HOOK, "post-deploy-initial")]);
        assert_eq!(h.post, Some(When::Initial));
        let h = hook(&[(KLUCTL_HOOK, "post-deploy-upgrade")]);
        assert_eq!(h.post, Some(When::Upgrade));
        let h = hook(&[
            (KLUCTL_HOOK, "pre-deploy-initial,pre-deploy-upgrade"),
            (KLUCTL_HOOK_WEIGHT, "-1"),
            (KLUCTL_HOOK_DELETE_POLICY, "hook-succeeded"),
            (KLUCTL_HOOK_TIMEOUT, "5m0s"),
        ]);
        assert_eq!(h.pre, Some(When::Always));
        assert_eq!(h.weight, -1);
        assert!(h.delete.hook_succeeded);
        assert_eq!(h.timeout, Some(Duration::from_secs(300)));

        let parsed = parse(&obj(&[(KLUCTL_HOOK, "post-delete")]), "Job x").unwrap();
        assert_eq!(parsed.kind, HookKind::Unsupported);
    }

    #[test]
    fn timeouts_in_humantime_and_go_form() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn bad_weight_wait_or_timeout_is_an_error_naming_the_object() {
        let e = parse(
            &obj(&[(HELM_HOOK, "pre-install"), (HELM_HOOK_WEIGHT, "high")]),
            "Job a",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Job a") && e.contains(HELM_HOOK_WEIGHT), "{e}");
        assert!(matches!(
            parse(
                &obj(&[(KLUCTL_HOOK, "post-deploy"), (KLUCTL_HOOK_WAIT, "no")]),
                "Job a"
            ),
            Err(HookError::Wait {
                key: KLUCTL_HOOK_WAIT,
                ..
            })
        ));
        assert!(matches!(
            parse(
                &obj(&[(KLUCTL_HOOK, "post-deploy"), (KLUCTL_HOOK_TIMEOUT, "soon")]),
                "Job a"
            ),
            Err(HookError::Timeout {
                key: KLUCTL_HOOK_TIMEOUT,
                ..
            })
        ));
    }

    #[test]
    fn stagegate_attributes_win_over_helm_and_kluctl() {
        let h = hook(&[
            (HELM_HOOK, "pre-install,pre-upgrade"),
            (HOOK_WEIGHT, "3"),
            (HELM_HOOK_WEIGHT, "7"),
            (HOOK_DELETE_POLICY, "hook-failed"),
            (HELM_HOOK_DELETE_POLICY, "hook-succeeded"),
        ]);
        assert_eq!(h.weight, 3);
        assert!(h.delete.hook_failed && !h.delete.hook_succeeded);
    }

    #[test]
    fn unknown_delete_policy_warns() {
        let parsed = parse(
            &obj(&[
                (HELM_HOOK, "pre-install"),
                (HELM_HOOK_DELETE_POLICY, "never"),
            ]),
            "Job a",
        )
        .unwrap();
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].contains("never"));
    }
}
