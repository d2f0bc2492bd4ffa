//! Names stagegate writes onto the cluster. Kept in one place so the renderer,
//! the apply engine and the install manifests cannot disagree.

pub const FIELD_MANAGER: &str = "stagegate";
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "stagegate";
pub const STAGE_LABEL: &str = "stagegate.dev/stage";
pub const SPEC_HASH_ANNOTATION: &str = "stagegate.dev/spec-hash";
