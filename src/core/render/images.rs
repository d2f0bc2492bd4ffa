//! kustomize's `images`: new name, tag or digest for the containers and
//! init containers of any object (kustomize looks for `containers` and
//! `initContainers` lists anywhere, which covers Pod templates of every
//! workload kind and CronJob job templates).

use serde_json::Value;

use super::ImageOverride;
use super::fieldspec::{FieldSpec, map_strings};
use super::resource::Resource;

pub(crate) fn apply(resources: &mut [Resource], images: &[ImageOverride]) {
    if images.is_empty() {
        return;
    }
    for r in resources {
        walk(&mut r.value, images);
    }
}

/// `images` at the `images` field specs of the `configurations` files
/// (image fields of custom resources), besides the containers.
pub(crate) fn apply_to_fields(
    resources: &mut [Resource],
    images: &[ImageOverride],
    specs: &[FieldSpec],
) {
    if images.is_empty() || specs.is_empty() {
        return;
    }
    for r in resources {
        let (group, version, kind) = r.gvk();
        for spec in specs.iter().filter(|s| s.selects(&group, &version, &kind)) {
            map_strings(&mut r.value, spec, &mut |image| {
                let mut current: Option<String> = None;
                for o in images {
                    let text = current.as_deref().unwrap_or(image);
                    if let Some(new) = rewrite(text, o) {
                        current = Some(new);
                    }
                }
                current
            });
        }
    }
}

fn walk(value: &mut Value, images: &[ImageOverride]) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if (key == "containers" || key == "initContainers")
                    && let Value::Array(containers) = child
                {
                    for c in containers.iter_mut() {
                        if let Some(Value::String(image)) = c.get_mut("image") {
                            for o in images {
                                if let Some(new) = rewrite(image, o) {
                                    *image = new;
                                }
                            }
                        }
                    }
                }
                walk(child, images);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, images)),
        _ => {}
    }
}

/// Whether `image` is `name` with an optional `@sha256` and/or `:tag` — the
/// same test as kustomize's (an image with both a tag and a digest is not
/// matched there, so it is not here either).
fn is_matched(image: &str, name: &str) -> bool {
    let Some(rest) = image.strip_prefix(name) else {
        return false;
    };
    let rest = rest.strip_prefix("@sha256").unwrap_or(rest);
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(tag) => tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '{' | '}' | '-')),
    }
}

/// Split `registry:port/name:tag@digest` into (name, tag, digest); a colon
/// before the first slash belongs to the registry, not to a tag.
pub(crate) fn split(image: &str) -> (&str, &str, &str) {
    let offset = match image.find('/') {
        Some(i) if i > 0 => i,
        _ => 0,
    };
    let search = &image[offset..];
    let at = search.find('@').map(|i| i + offset);
    let colon = search.find(':').map(|i| i + offset);
    match (colon, at) {
        (None, None) => (image, "", ""),
        (c, Some(a)) if c.is_none_or(|c| a < c) => (&image[..a], "", &image[a + 1..]),
        (Some(c), Some(a)) => (&image[..c], &image[c + 1..a], &image[a + 1..]),
        (Some(c), None) => (&image[..c], &image[c + 1..], ""),
        (None, Some(_)) => (image, "", ""),
    }
}

fn rewrite(image: &str, o: &ImageOverride) -> Option<String> {
    if !is_matched(image, &o.name) {
        return None;
    }
    let (name, tag, digest) = split(image);
    let name = o.new_name.as_deref().unwrap_or(name);
    // A new tag or digest replaces both the old tag and the old digest.
    let (tag, digest) = match (o.new_tag.as_deref(), o.digest.as_deref()) {
        (Some(t), Some(d)) => (t, d),
        (Some(t), None) => (t, ""),
        (None, Some(d)) => ("", d),
        (None, None) => (tag, digest),
    };
    let mut out = name.to_string();
    if !tag.is_empty() {
        out.push(':');
        out.push_str(tag);
    }
    if !digest.is_empty() {
        out.push('@');
        out.push_str(digest);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(
        name: &str,
        new_name: Option<&str>,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> ImageOverride {
        ImageOverride {
            name: name.into(),
            new_name: new_name.map(Into::into),
            new_tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        }
    }

    #[test]
    fn split_keeps_registry_port() {
        assert_eq!(
            split("localhost:5000/app:1.0"),
            ("localhost:5000/app", "1.0", "")
        );
        assert_eq!(split("nginx@sha256:abc"), ("nginx", "", "sha256:abc"));
        assert_eq!(split("nginx:1@sha256:abc"), ("nginx", "1", "sha256:abc"));
        assert_eq!(split("nginx"), ("nginx", "", ""));
    }

    #[test]
    fn rewrites_name_tag_and_digest() {
        assert_eq!(
            rewrite("nginx:1.0", &o("nginx", None, Some("2.0"), None)).as_deref(),
            Some("nginx:2.0")
        );
        assert_eq!(
            rewrite("nginx:1.0", &o("nginx", Some("reg/nginx"), None, None)).as_deref(),
            Some("reg/nginx:1.0")
        );
        assert_eq!(
            rewrite("nginx:1.0", &o("nginx", None, None, Some("sha256:ff"))).as_deref(),
            Some("nginx@sha256:ff")
        );
        assert_eq!(
            rewrite("nginx-extra:1", &o("nginx", None, Some("2"), None)),
            None
        );
    }

    #[test]
    fn applies_to_init_containers_and_cronjob_templates() {
        let mut r = vec![Resource::new(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                   "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                       "initContainers": [{"name": "i", "image": "busybox"}],
                       "containers": [{"name": "m", "image": "app:1"}]}}}}}}),
            "f".into(),
        )];
        apply(
            &mut r,
            &[
                o("app", None, Some("2"), None),
                o("busybox", None, Some("1.36"), None),
            ],
        );
        let spec = &r[0].value["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "app:2");
        assert_eq!(spec["initContainers"][0]["image"], "busybox:1.36");
    }
}
