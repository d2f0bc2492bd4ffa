//! The apiVersions and kinds that declare stages: stagegate's own `Stage`
//! and Flux's `Kustomization`. Both discovery (`stage`) and rendering
//! (`render`, which keeps stage documents out of the objects it applies)
//! ask this, so it sits below both.

pub const STAGE_API_VERSION: &str = "stagegate.dev/v1alpha1";
pub const STAGE_KIND: &str = "Stage";
pub const FLUX_KUSTOMIZATION_KIND: &str = "Kustomization";
pub const FLUX_API_VERSIONS: [&str; 2] = [
    "kustomize.toolkit.fluxcd.io/v1",
    "kustomize.toolkit.fluxcd.io/v1beta2",
];

/// The API group of Flux's Kustomization; another version of it is a stage
/// document stagegate cannot read, never an object to apply.
pub const FLUX_KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";
/// stagegate's own API group.
pub const STAGE_GROUP: &str = "stagegate.dev";

/// Whether a document defines a stage (and so is never applied as an object).
pub fn is_stage_document(api_version: &str, kind: &str) -> bool {
    (api_version == STAGE_API_VERSION && kind == STAGE_KIND)
        || (kind == FLUX_KUSTOMIZATION_KIND && FLUX_API_VERSIONS.contains(&api_version))
}

/// Whether a document looks like a stage definition stagegate cannot read: a
/// `Stage` or Flux `Kustomization` of an unknown version, or an apiVersion a
/// typo away from a known one. Skipping such a document would make its stage
/// count as removed and prune its objects, so it is an error instead.
pub fn is_unreadable_stage_document(api_version: &str, kind: &str) -> bool {
    if is_stage_document(api_version, kind) {
        return false;
    }
    let group = api_version.split('/').next().unwrap_or_default();
    match kind {
        STAGE_KIND => group.contains("stagegate") || near(api_version, STAGE_API_VERSION),
        FLUX_KUSTOMIZATION_KIND => {
            group.contains("fluxcd")
                || group.starts_with("kustomize.toolkit")
                || FLUX_API_VERSIONS.iter().any(|v| near(api_version, v))
        }
        _ => {
            // The right apiVersion with a misspelt kind is as unreadable.
            (api_version == STAGE_API_VERSION || group == STAGE_GROUP)
                || (group == FLUX_KUSTOMIZE_GROUP && near(kind, FLUX_KUSTOMIZATION_KIND))
        }
    }
}

/// At most two single-character edits apart (a typo, not another API).
fn near(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()] <= 2
}
