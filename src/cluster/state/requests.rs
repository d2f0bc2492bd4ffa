//! Requests an operator makes through annotations on a `Stage` object, as
//! Flux's `reconcile.fluxcd.io/requestedAt`: `kubectl annotate` or the
//! `stagegate rerun`, `suspend`, `resume` and `reconcile` commands.

use std::collections::BTreeMap;

/// Run Jobs of the stage again: a Job name (`name` or `namespace/name`), a
/// comma-separated list, or `*`. Each distinct value is handled once.
pub const RERUN_ANNOTATION: &str = "stagegate.dev/rerun";
/// `"true"`: do not apply the stage, whatever Git says (an emergency brake).
pub const SUSPEND_ANNOTATION: &str = "stagegate.dev/suspend";
/// Any new value: fetch and reconcile now, on a Stage or on the source object.
pub const RECONCILE_ANNOTATION: &str = "stagegate.dev/reconcile-requested-at";

/// What one object's annotations ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub rerun: Option<String>,
    pub suspend: bool,
    pub reconcile_at: Option<String>,
}

impl Requests {
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            rerun: get(RERUN_ANNOTATION),
            suspend: get(SUSPEND_ANNOTATION).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            reconcile_at: get(RECONCILE_ANNOTATION),
        }
    }

    /// The Jobs a rerun value names, `*` included as is.
    pub fn rerun_jobs(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|j| !j.is_empty())
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_become_requests() {
        let a = BTreeMap::from([
            (
                RERUN_ANNOTATION.to_string(),
                " db-migrate, shop/smoke ".to_string(),
            ),
            (SUSPEND_ANNOTATION.to_string(), "True".to_string()),
        ]);
        let r = Requests::from_annotations(Some(&a));
        assert!(r.suspend);
        assert_eq!(
            Requests::rerun_jobs(r.rerun.as_deref().unwrap()),
            ["db-migrate", "shop/smoke"]
        );
        assert_eq!(r.reconcile_at, None);
        assert_eq!(Requests::from_annotations(None), Requests::default());
    }
}
