//! The README's first command, `./demo.sh`, works end to end on this machine.

use std::process::Command;

#[test]
fn demo_script_applies_the_example_in_dependency_order() {
    let work = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut demo = Command::new(format!("{root}/demo.sh"));
    demo.arg("--once")
        .env("STAGEGATE_DEMO_DIR", work.path().join("demo"))
        .env("STAGEGATE_BIN", env!("CARGO_BIN_EXE_stagegate"))
        .env_remove("KUBECONFIG");
    // kube-sim built beside stagegate (the workspace's tests build it), or
    // the script builds it.
    let kube_sim = std::path::Path::new(env!("CARGO_BIN_EXE_stagegate")).with_file_name("kube-sim");
    if kube_sim.exists() {
        demo.env("KUBE_SIM_BIN", kube_sim);
    }
    let out = demo.output().expect("run demo.sh");
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

#[test]
fn demo_refuses_to_start_over_a_running_demo_and_names_it() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    std::fs::create_dir_all(&dir).unwrap();
    // This test's own process stands for the running demo.
    std::fs::write(dir.join("demo.pid"), std::process::id().to_string()).unwrap();
    std::fs::write(dir.join("kubeconfig"), "kept").unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/demo.sh"))
        .arg("--once")
        .env("STAGEGATE_DEMO_DIR", &dir)
        .env("STAGEGATE_BIN", env!("CARGO_BIN_EXE_stagegate"))
        .output()
        .expect("run demo.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a demo is already running in"), "{stderr}");
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("kubeconfig")).unwrap(),
        "kept",
        "the running demo's files are untouched"
    );
}
