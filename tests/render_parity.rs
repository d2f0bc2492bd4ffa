//! stagegate's renderer against the reference, `kubectl kustomize`, on the
//! fixtures under tests/fixtures/render: the same objects (as a set, without
//! the labels and annotation stagegate adds itself) for every overlay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stagegate::core::labels::{MANAGED_BY_KEY, SPEC_HASH_ANNOTATION, STAGE_LABEL};
use stagegate::core::render::{
    ImageOverride, Overlay, Patch, PatchTarget, render_stage, render_stage_with,
};
use stagegate::core::stage::Stage;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render")
}

fn kubectl_kustomize(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "`kubectl` is needed as the reference renderer for these tests and could not be run ({e}); \
             install kubectl (it bundles kustomize) and put it on PATH"
        ),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    stagegate::core::yaml::parse_documents(&text)
        .expect("kubectl's output is YAML")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// Drop what stagegate adds and maps left empty by that, so both sides say
/// the same thing the same way.
fn strip_stagegate(mut v: Value) -> Value {
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
    v
}

fn id(v: &Value) -> String {
    format!(
        "{} {} {}/{}",
        v["apiVersion"].as_str().unwrap_or(""),
        v["kind"].as_str().unwrap_or(""),
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn by_id(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects.into_iter().map(|v| (id(&v), v)).collect()
}

fn assert_same_as_kustomize(case: &str) {
    assert_stage_same_as_kustomize(&Stage::new("parity", case), case);
}

/// `stage` rendered by stagegate against `kubectl kustomize reference`.
fn assert_stage_same_as_kustomize(stage: &Stage, reference: &str) {
    assert_overlay_same_as_kustomize(stage, &Overlay::default(), reference);
}

fn assert_overlay_same_as_kustomize(stage: &Stage, overlay: &Overlay, reference: &str) {
    let case = reference;
    let root = fixtures();
    let expected = by_id(kubectl_kustomize(&root.join(reference)));
    let rendered = render_stage_with(&root, stage, overlay)
        .unwrap_or_else(|e| panic!("stagegate failed to render {}: {e}", stage.name));
    for m in &rendered {
        let text = stagegate::core::yaml::to_yaml(&m.value);
        let back =
            stagegate::core::yaml::parse_documents(&text).expect("stagegate's output is YAML");
        assert_eq!(
            back.first().map(|d| &d.value),
            Some(&m.value),
            "{case}: printed YAML reads back differently:\n{text}"
        );
    }
    let actual = by_id(
        rendered
            .into_iter()
            .map(|m| strip_stagegate(m.value))
            .collect(),
    );

    let mut problems = Vec::new();
    for key in expected.keys().filter(|k| !actual.contains_key(*k)) {
        problems.push(format!("missing from stagegate: {key}"));
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("only in stagegate: {key}"));
    }
    for (key, want) in &expected {
        if let Some(got) = actual.get(key)
            && got != want
        {
            problems.push(format!(
                "{key} differs\n--- kubectl kustomize\n{}\n--- stagegate\n{}",
                serde_yaml::to_string(want).unwrap_or_default(),
                serde_yaml::to_string(got).unwrap_or_default()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{case}: {} difference(s)\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(!expected.is_empty(), "{case}: the fixture renders nothing");
}

#[test]
fn base_matches_kustomize() {
    assert_same_as_kustomize("base");
}

#[test]
fn images_with_new_name_tag_and_digest_match_kustomize() {
    assert_same_as_kustomize("overlays/images");
}

#[test]
fn every_patch_kind_with_targets_matches_kustomize() {
    assert_same_as_kustomize("overlays/patches");
}

#[test]
fn namespace_prefix_suffix_and_name_references_match_kustomize() {
    assert_same_as_kustomize("overlays/names");
}

#[test]
fn common_labels_labels_and_annotations_match_kustomize() {
    assert_same_as_kustomize("overlays/labels");
}

#[test]
fn nested_overlays_match_kustomize() {
    assert_same_as_kustomize("overlays/nested");
}

#[test]
fn stage_target_namespace_patches_and_images_match_the_kustomization_flux_builds() {
    let mut stage = Stage::new("flux", "overlays/labels");
    stage.target_namespace = Some("apps".into());
    stage.patches = vec![
        Patch {
            patch: Some(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: not-used\nspec:\n  replicas: 4\n"
                    .into(),
            ),
            target: Some(PatchTarget {
                kind: Some("Deployment".into()),
                label_selector: Some("app=web".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Patch {
            patch: Some("- op: add\n  path: /spec/ttlSecondsAfterFinished\n  value: 600\n".into()),
            target: Some(PatchTarget {
                group: Some("batch".into()),
                kind: Some("Job".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    stage.images = vec![ImageOverride {
        name: "registry.example.com/shop/migrate".into(),
        new_tag: Some("3.0.0".into()),
        ..Default::default()
    }];
    assert_stage_same_as_kustomize(&stage, "flux-stage");
}

#[test]
fn sibling_bases_with_same_named_config_maps_keep_their_own_references() {
    assert_same_as_kustomize("scenarios/sibling-bases");
}

#[test]
fn one_base_reused_under_two_prefixes_mounts_its_own_claim() {
    assert_same_as_kustomize("scenarios/reused-base");
}

#[test]
fn binding_subjects_and_role_ref_follow_prefix_namespace_and_patch_rename() {
    assert_same_as_kustomize("scenarios/rbac");
}

#[test]
fn every_built_in_name_reference_field_follows_its_target() {
    assert_same_as_kustomize("scenarios/reference-fields");
}

#[test]
fn cluster_scope_is_decided_by_group_and_kind_as_kustomize_does() {
    assert_same_as_kustomize("scenarios/cluster-scope");
}

#[test]
fn octal_modes_annotation_types_and_block_scalars_read_as_kustomize_reads_them() {
    assert_same_as_kustomize("scenarios/yaml-values");
}

#[test]
fn config_map_and_secret_generators_with_options_match_kustomize() {
    assert_same_as_kustomize("scenarios/generators/base");
}

#[test]
fn generator_merge_and_replace_in_an_overlay_rename_and_rehash_like_kustomize() {
    assert_same_as_kustomize("scenarios/generators/overlay");
}

#[test]
fn components_replicas_and_sort_options_match_kustomize() {
    assert_same_as_kustomize("scenarios/components/overlay");
}

/// Where kustomize refuses, stagegate refuses too, naming the file and the field.
fn assert_both_refuse(case: &str, file: &str, field: &str) {
    let root = fixtures();
    let dir = root.join(case);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl is needed as the reference renderer");
    assert!(
        !output.status.success(),
        "{case}: kubectl kustomize accepted what stagegate should refuse"
    );
    let err = render_stage(&root, &Stage::new("parity", case))
        .expect_err("stagegate must refuse what kustomize refuses");
    let text = err.to_string();
    assert_eq!(err.file(), Path::new(file), "{text}");
    assert!(text.contains(field), "{text}");
}

#[test]
fn an_ambiguous_subject_is_refused_naming_both_service_accounts() {
    assert_both_refuse(
        "scenarios/ambiguous-accounts",
        "scenarios/ambiguous-accounts/binding.yaml",
        "subjects",
    );
    let root = fixtures();
    let err = render_stage(&root, &Stage::new("parity", "scenarios/ambiguous-accounts"))
        .expect_err("ambiguous");
    let text = err.to_string();
    assert!(
        text.contains("team-a/deployer") && text.contains("team-b/deployer"),
        "{text}"
    );
}

#[test]
fn field_names_in_another_case_are_read_as_kustomize_reads_them() {
    assert_same_as_kustomize("scenarios/spelling");
}

#[test]
fn a_stage_overlay_prefix_and_components_match_the_kustomization_flux_writes() {
    let stage = Stage::new("flux", "scenarios/overlay-target");
    let overlay = Overlay {
        name_prefix: Some("flux-".into()),
        components: vec!["../components/monitoring".into()],
        ..Default::default()
    };
    assert_overlay_same_as_kustomize(&stage, &overlay, "scenarios/overlay-reference");
}

#[test]
fn replacements_with_list_selectors_delimiters_wildcards_and_files_match_kustomize() {
    assert_same_as_kustomize("scenarios/replacements");
}

#[test]
fn built_in_transformers_listed_under_transformers_match_kustomize() {
    assert_same_as_kustomize("scenarios/builtin-transformers");
}

#[test]
fn vars_from_a_base_and_an_overlay_follow_prefixes_hashes_and_types_like_kustomize() {
    assert_same_as_kustomize("scenarios/vars/overlay");
}

#[test]
fn a_var_declared_twice_is_refused_naming_the_second_declaration() {
    assert_both_refuse(
        "scenarios/vars-duplicate/overlay",
        "scenarios/vars-duplicate/overlay/kustomization.yaml",
        "`NAME` is declared twice",
    );
}

#[test]
fn a_var_no_object_fits_is_refused_naming_the_var() {
    assert_both_refuse(
        "scenarios/vars-unresolved",
        "scenarios/vars-unresolved/kustomization.yaml",
        "`MISSING`",
    );
}

#[test]
fn configurations_of_a_base_extend_references_labels_vars_images_and_namespace_above_it() {
    assert_same_as_kustomize("scenarios/configurations/overlay");
}

#[test]
fn namespace_and_image_tag_transformers_listed_under_transformers_match_kustomize() {
    assert_same_as_kustomize("scenarios/builtin-namespace-images");
}

#[test]
fn a_replacement_into_yaml_held_in_a_string_is_refused_as_kustomize_refuses_it() {
    assert_both_refuse(
        "scenarios/replacement-into-string",
        "scenarios/replacement-into-string/kustomization.yaml",
        "continues into a string",
    );
}

#[test]
fn built_in_config_map_and_secret_generators_listed_under_generators_match_kustomize() {
    assert_same_as_kustomize("scenarios/builtin-generators");
}

#[test]
fn a_var_fitting_two_objects_is_refused_naming_both() {
    assert_both_refuse(
        "scenarios/vars-ambiguous",
        "scenarios/vars-ambiguous/kustomization.yaml",
        "ConfigMap a/settings, ConfigMap b/settings",
    );
}

#[test]
fn lists_merged_by_their_declared_keys_in_a_strategic_patch_match_kustomize() {
    // ownerReferences (uid), resourceClaims (name) and status conditions
    // (type): the shared merge-key table, judged by kustomize.
    assert_same_as_kustomize("overlays/merge-keys");
}

#[test]
fn value_add_transformers_write_values_and_file_path_parts_like_kustomize() {
    assert_same_as_kustomize("scenarios/builtin-value-add");
}

#[test]
fn a_sort_order_transformer_under_transformers_is_refused_as_kustomize_refuses_it() {
    assert_both_refuse(
        "scenarios/sort-order-transformer",
        "scenarios/sort-order-transformer/kustomization.yaml",
        "sortOptions",
    );
}

#[test]
fn a_hash_transformer_in_a_base_suffixes_generated_names_twice_like_kustomize() {
    assert_same_as_kustomize("scenarios/builtin-hash/overlay");
    assert_same_as_kustomize("scenarios/builtin-hash/base");
}

#[test]
fn prefix_suffix_transformers_with_their_own_field_specs_match_kustomize() {
    assert_same_as_kustomize("scenarios/prefix-field-specs");
}

#[test]
fn configurations_with_name_prefix_and_suffix_field_specs_match_kustomize() {
    assert_same_as_kustomize("scenarios/configurations-prefix/overlay");
    assert_same_as_kustomize("scenarios/configurations-prefix/base");
}
