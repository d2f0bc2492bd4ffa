//! A repository cannot brick the agent or slip past `validate`: stagegate's
//! own objects, oversized data, mistyped specs and file names that are not
//! UTF-8 are errors naming the file.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::*;
use stagegate::core::plan::build_plan;

fn errors_of(files: &[(&str, &str)]) -> String {
    let dir = repo(files);
    match build_plan(dir.path(), None) {
        Ok(_) => panic!("the repository must be refused"),
        Err(problems) => problems.to_string(),
    }
}

#[test]
fn a_configmap_named_like_the_agents_state_is_refused_naming_the_file() {
    let text = errors_of(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        (
            "app/state.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stagegate-state\n  namespace: stagegate-system\ndata: {a: b}\n",
        ),
    ]);
    assert!(
        text.contains("app/state.yaml") && text.contains("collides"),
        "{text}"
    );
}

#[test]
fn a_job_whose_spec_is_a_string_and_an_oversized_configmap_are_refused() {
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: {}\n",
        "x".repeat(1024 * 1024 + 10)
    );
    let text = errors_of(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        (
            "app/job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: \"string\"\n",
        ),
        ("app/big.yaml", &big),
    ]);
    assert!(
        text.contains("app/job.yaml") && text.contains("`spec` must be a mapping"),
        "{text}"
    );
    assert!(
        text.contains("app/big.yaml") && text.contains("1 MiB"),
        "{text}"
    );
}

#[test]
fn a_file_name_that_is_not_utf8_is_an_error_naming_it() {
    let dir = repo(&[
        ("stages.yaml", &stage_doc("app", "app", "")),
        (
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        ),
    ]);
    let name = OsStr::from_bytes(b"caf\xe9.yaml");
    std::fs::write(dir.path().join("app").join(name), "kind: ConfigMap\n").unwrap();
    let text = match build_plan(dir.path(), None) {
        Ok(_) => panic!("a file that cannot be named must not be skipped"),
        Err(problems) => problems.to_string(),
    };
    assert!(
        text.contains("app/caf") && text.contains("not UTF-8"),
        "{text}"
    );
}
