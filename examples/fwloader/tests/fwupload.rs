//! `fwupload` as a user runs it: the README's main command, resume after an
//! interruption, `--json` purity, `--dry-run`, and the documented exit code
//! for each kind of failure, with a message that says what went wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

fn fwupload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fwupload")).args(args).output().expect("running fwupload")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo.hex")
}

struct Rig {
    dir: TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig { dir: tempfile::tempdir().unwrap() }
    }

    fn flash(&self) -> String {
        self.dir.path().join("device.flash").display().to_string()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    /// `fwupload IMAGE --flash <this rig's flash> ARGS…`
    fn run(&self, image: &str, args: &[&str]) -> Output {
        let flash = self.flash();
        let mut all = vec![image, "--flash", flash.as_str()];
        all.extend_from_slice(args);
        fwupload(&all)
    }
}

fn json_lines(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| i.wrapping_mul(2_654_435_761).rotate_left(13) as u8).collect()
}

#[test]
fn the_demo_image_uploads_and_verifies() {
    let rig = Rig::new();
    let output = rig.run(demo().to_str().unwrap(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("committed 65536 bytes"), "{stdout}");
    assert!(stdout.contains("verified: the device runs the new image"), "{stdout}");
    assert!(text(&output.stderr).contains("2 segment(s)"));
}

#[test]
fn json_output_is_json_lines_only_and_ends_with_the_summary() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(300_000));
    let output = rig.run(&image, &["--json", "--slot-size", "64K", "--sim", "fast"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let events = json_lines(&output);
    assert_eq!(events[0]["event"], "image");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["bytes"], 300_000);
    assert_eq!(summary["crc32"], crc32fast::hash(&pattern(300_000)));
    assert_eq!(summary["verified"], true);
    assert_eq!(summary["retries"]["stall"], 0);
    assert!(events.iter().any(|e| e["event"] == "progress" && e["phase"] == "transfer"));
}

#[test]
fn faults_are_recovered_and_reported_in_the_summary() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(500_000));
    let output = rig.run(
        &image,
        &[
            "--json",
            "--slot-size",
            "32K",
            "--sim",
            "fast",
            "--fault",
            "stall@2,short@5,bitflip@9",
            "--seed",
            "3",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!(summary["retries"]["stall"], 2, "{summary}");
    assert_eq!(summary["retries"]["short"], 1, "{summary}");
}

#[test]
fn an_interrupted_upload_resumes_and_says_so() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(6_000_000));
    // The client (and the simulated device in it) is killed at its 150th
    // transfer of 184, as a crash would stop it. By then 4.9 MB were sent;
    // the device buffers at most 2 MiB unprogrammed, so it has acknowledged
    // a prefix, and that is in its flash file.
    let killed =
        rig.run(&image, &["--slot-size", "32K", "--sim", "fast", "--fault", "kill-client@150"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9), "{}", text(&killed.stderr));

    let rerun = rig.run(&image, &["--slot-size", "32K", "--sim", "fast"]);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    let stdout = text(&rerun.stdout);
    assert!(stdout.contains("resumed at byte "), "{stdout}");
}

#[test]
fn a_killed_dext_process_is_relaunched_and_the_upload_completes() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(1_000_000));
    let output = rig.run(
        &image,
        &[
            "--json",
            "--slot-size",
            "32K",
            "--sim",
            "fast",
            "--sim-process",
            "--fault",
            "kill-dext@10",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!(summary["retries"]["reconnect"], 1, "{summary}");
}

#[test]
fn dry_run_plans_without_touching_the_device() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(3_000_000));
    let output = rig.run(&image, &["--dry-run", "--address", "0x08000000"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("3000000 bytes"), "{stdout}");
    assert!(stdout.contains("3 transfer(s)"), "{stdout}");
    assert!(!Path::new(&rig.flash()).exists(), "the dry run created the device's flash");
}

#[test]
fn each_failure_has_its_exit_code_and_names_the_problem() {
    let rig = Rig::new();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![rig.file("bad.hex", b":10000000zz\n"), "--format".into(), "hex".into()],
            3,
            "bad.hex: line 1, column 10",
        ),
        (vec![rig.dir.path().join("missing.bin").display().to_string()], 3, "missing.bin"),
        (vec![rig.file("a.bin", b"abc"), "--slots".into(), "9".into()], 2, "--slots"),
        (vec![rig.file("b.bin", b"abc"), "--slot-size".into(), "10".into()], 2, "--slot-size"),
        (vec![rig.file("c.bin", b"abc"), "--fault".into(), "jam@3".into()], 2, "jam@3"),
        (
            vec![rig.file("d.bin", b"abc"), "--service".into(), "com.example.Other".into()],
            4,
            "com.example.Other",
        ),
        (vec![rig.file("e.bin", b"abc"), "--sim".into(), "usb9".into()], 2, "usb9"),
        (
            vec![
                rig.file("f.bin", &pattern(100_000)),
                "--slot-size".into(),
                "8K".into(),
                "--fault".into(),
                "stall%100".into(),
            ],
            6,
            "stall",
        ),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = rig.run(args[0], &args[1..]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_json_failure_is_still_json_ending_in_a_summary() {
    let rig = Rig::new();
    let image = rig.file("image.bin", b"abc");
    let output = rig.run(&image, &["--json", "--service", "com.example.Other"]);
    assert_eq!(output.status.code(), Some(4));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["exit_code"], 4);
    assert_eq!(summary["error"], "device-not-found");
}
