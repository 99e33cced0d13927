//! The built `wgseg` binary.

mod common;

use std::process::Command;

fn wgseg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgseg"))
        .args(args)
        .output()
        .expect("run wgseg")
}

#[test]
fn info_prints_adapter_backend_and_limits() {
    if common::gpu().is_none() {
        return;
    }
    let out = wgseg(&["info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "selected:",
        "backend:",
        "driver:",
        "max_storage_buffer_binding_size",
        "smoke test: ok",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn info_on_the_cpu_reference_backend() {
    let out = wgseg(&["info", "--device", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cpu (reference backend)") && text.contains("smoke test: ok"),
        "{text}"
    );
}

#[test]
fn unknown_device_is_a_clear_error() {
    let out = wgseg(&["info", "--device", "gpu:no-such-adapter-xyz"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no adapter matches") && err.contains("no-such-adapter-xyz"),
        "{err}"
    );
    let out = wgseg(&["info", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device"));
}
