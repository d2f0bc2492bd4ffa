//! The README's first command, `./demo.sh`, works end to end on this machine.

use std::process::Command;

#[test]
fn demo_script_applies_the_example_in_dependency_order() {
    let work = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/demo.sh"))
        .arg("--once")
        .env("STAGEGATE_DEMO_DIR", work.path().join("demo"))
        .env("STAGEGATE_BIN", env!("CARGO_BIN_EXE_stagegate"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2/2 stages Ready"), "{stdout}");
    let pre = stderr.find("stage pre is Ready").expect("pre Ready");
    let app = stderr
        .find("stage application is Running")
        .expect("application started");
    assert!(
        pre < app,
        "the application starts after the migration stage is Ready:\n{stderr}"
    );
}
