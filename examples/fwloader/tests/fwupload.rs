//! `fwupload` as a user runs it: the README's main command, an S-record as
//! objcopy writes it, resume after an interruption, `--json` purity,
//! `--dry-run`, the refusals of what is not firmware, and the documented exit
//! code for each kind of failure, with a message that says what went wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dextlink_tests::images;
use serde_json::Value;
use tempfile::TempDir;

fn fwupload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fwupload")).args(args).output().expect("running fwupload")
}

fn text_of(bytes: &[u8]) -> String {
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
    text_of(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
        })
        .collect()
}

/// A few bytes that are not text (a raw binary that is all text is refused).
const BINARY: &[u8] = b"\x00\x80\x00\x20";

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| i.wrapping_mul(2_654_435_761).rotate_left(13) as u8).collect()
}

#[test]
fn the_demo_image_uploads_and_verifies() {
    let rig = Rig::new();
    let output = rig.run(demo().to_str().unwrap(), &[]);
    assert!(output.status.success(), "{}", text_of(&output.stderr));
    let stdout = text_of(&output.stdout);
    assert!(stdout.contains("committed 65536 bytes"), "{stdout}");
    assert!(stdout.contains("verified: the device runs the new image"), "{stdout}");
    assert!(text_of(&output.stderr).contains("2 segment(s)"));
}

#[test]
fn json_output_is_json_lines_only_and_ends_with_the_summary() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(300_000));
    let output =
        rig.run(&image, &["--json", "--slot-size", "64K", "--sim", "fast", "--address", "0"]);
    assert!(output.status.success(), "{}", text_of(&output.stderr));
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
            "--address",
            "0x08000000",
        ],
    );
    assert!(output.status.success(), "{}", text_of(&output.stderr));
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
    let at = ["--address", "0x08000000"];
    let killed = rig.run(
        &image,
        &["--slot-size", "32K", "--sim", "fast", "--fault", "kill-client@150", at[0], at[1]],
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9), "{}", text_of(&killed.stderr));

    let rerun = rig.run(&image, &["--slot-size", "32K", "--sim", "fast", at[0], at[1]]);
    assert!(rerun.status.success(), "{}", text_of(&rerun.stderr));
    let stdout = text_of(&rerun.stdout);
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
            "--address",
            "0",
        ],
    );
    assert!(output.status.success(), "{}", text_of(&output.stderr));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!(summary["retries"]["reconnect"], 1, "{summary}");
}

#[test]
fn dry_run_plans_without_touching_the_device() {
    let rig = Rig::new();
    let image = rig.file("image.bin", &pattern(3_000_000));
    let output = rig.run(&image, &["--dry-run", "--address", "0x08000000"]);
    assert!(output.status.success(), "{}", text_of(&output.stderr));
    let stdout = text_of(&output.stdout);
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
        (vec![rig.file("a.bin", BINARY), "--slots".into(), "9".into()], 2, "--slots"),
        (vec![rig.file("b.bin", BINARY), "--slot-size".into(), "10".into()], 2, "--slot-size"),
        (vec![rig.file("c.bin", BINARY), "--fault".into(), "jam@3".into()], 2, "jam@3"),
        (
            vec![
                rig.file("d.bin", BINARY),
                "--address".into(),
                "0".into(),
                "--service".into(),
                "com.example.Other".into(),
            ],
            4,
            "com.example.Other",
        ),
        (vec![rig.file("e.bin", BINARY), "--sim".into(), "usb9".into()], 2, "usb9"),
        (
            vec![
                rig.file("f.bin", &pattern(100_000)),
                "--address".into(),
                "0".into(),
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
        let stderr = text_of(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_json_failure_is_still_json_ending_in_a_summary() {
    let rig = Rig::new();
    let image = rig.file("image.bin", BINARY);
    let output = rig.run(&image, &["--json", "--address", "0", "--service", "com.example.Other"]);
    assert_eq!(output.status.code(), Some(4));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["exit_code"], 4);
    assert_eq!(summary["error"], "device-not-found");
}

/// The case: `fwupload fw.srec`, as `objcopy -O srec` writes it, was
/// read as a raw binary and its text committed at 0x0. It is an S-record.
#[test]
fn an_srec_file_uploads_as_s_records_at_its_addresses() {
    let rig = Rig::new();
    let chunks = vec![(0x0800_0000u64, pattern(3000)), (0x0800_1000, pattern(500))];
    let text = images::srec_text(&chunks);
    // Every extension, and a misleading one: the content decides.
    for name in ["fw.srec", "fw.s37", "fw.bin"] {
        let image = rig.file(name, text.as_bytes());
        let output = rig.run(&image, &["--json", "--sim", "fast"]);
        assert!(output.status.success(), "{name}: {}", text_of(&output.stderr));
        let events = json_lines(&output);
        assert_eq!(events[0]["event"], "image");
        assert_eq!(events[0]["format"], "srec", "{name}");
        assert_eq!(events[0]["load_address"], 0x0800_0000, "{name}");
        assert_eq!(events[0]["len"], 0x1000 + 500, "{name}");
        let mut flat = vec![0xFF; 0x1000 + 500];
        flat[..3000].copy_from_slice(&chunks[0].1);
        flat[0x1000..].copy_from_slice(&chunks[1].1);
        let summary = events.last().unwrap();
        assert_eq!(summary["ok"], true, "{name}: {summary}");
        assert_eq!(summary["load_address"], 0x0800_0000, "{name}");
        assert_eq!(summary["crc32"], crc32fast::hash(&flat), "{name}");
        assert_eq!(summary["verified"], true, "{name}");
    }
    // The plain-text line says what it is.
    let image = rig.file("fw.srec", text.as_bytes());
    let output = rig.run(&image, &["--sim", "fast"]);
    assert!(output.status.success(), "{}", text_of(&output.stderr));
    let stderr = text_of(&output.stderr);
    assert!(
        stderr.contains("(Motorola S-record), 4596 bytes at 0x08000000 in 2 segment(s)"),
        "{stderr}"
    );
}

/// What is not firmware is refused with exit 3 and a hint, before the device
/// is touched, and `--dry-run` refuses the same.
#[test]
fn what_is_not_firmware_is_refused_with_exit_3_and_a_hint() {
    let rig = Rig::new();
    let srec = images::srec_text(&[(0x0800_0000, pattern(64))]);
    let hex = images::hex_text(&[(0x0800_0000, pattern(64))]);
    let cases: Vec<(String, Vec<&str>, &str)> = vec![
        (
            rig.file("fw.bin", &pattern(4096)),
            vec![],
            "a raw binary carries no load address: give the address of its first byte, e.g. \
             `--address 0x08000000`",
        ),
        (
            rig.file("fw.img", &pattern(4096)),
            vec!["--format", "bin"],
            "images carry their own addresses and need none",
        ),
        (
            rig.file("srec.bin", srec.as_bytes()),
            vec!["--format", "bin", "--address", "0x08000000"],
            "line 1 is an S-record: the file is Motorola S-record text, not a raw binary; read it \
             as Motorola S-record (`--format srec`)",
        ),
        (
            rig.file("hex.bin", hex.as_bytes()),
            vec!["--format", "raw", "--address", "0x08000000"],
            "line 1 is an Intel HEX record: the file is Intel HEX text, not a raw binary; read it \
             as Intel HEX (`--format hex`)",
        ),
        (
            rig.file("README.md", b"# My firmware\n\nBuild it with `make`.\n"),
            vec!["--address", "0x08000000"],
            "the file is all text (starting \"# My firmware\"), not firmware; if it really is a \
             raw image, insist with `--format bin`",
        ),
        (
            rig.file("notes.bin", b"flash me\n"),
            vec![],
            "the file is all text (starting \"flash me\"), not firmware",
        ),
    ];
    for (image, args, needle) in &cases {
        for dry_run in [false, true] {
            let mut all = args.clone();
            if dry_run {
                all.push("--dry-run");
            }
            let output = rig.run(image, &all);
            let stderr = text_of(&output.stderr);
            assert_eq!(output.status.code(), Some(3), "{image} {all:?}: {stderr}");
            assert!(stderr.contains(needle), "{image} {all:?}: {stderr}");
            assert!(stderr.contains(image.as_str()), "{image} {all:?}: the path is not named");
            assert!(!text_of(&output.stdout).contains("dry run:"), "{image} {all:?}");
            assert!(!Path::new(&rig.flash()).exists(), "{image} {all:?}: the device was touched");
        }
    }
    // JSON too: the summary names the image error.
    let output = rig.run(&cases[0].0, &["--json", "--dry-run"]);
    assert_eq!(output.status.code(), Some(3));
    let summary = json_lines(&output).pop().unwrap();
    assert_eq!((summary["ok"].clone(), summary["error"].clone()), (false.into(), "image".into()));
    assert!(summary["message"].as_str().unwrap().contains("--address 0x08000000"), "{summary}");

    // Insisting: an all-text file given as bin with an address is planned.
    let output = rig.run(&cases[4].0, &["--format", "bin", "--address", "0x08000000", "--dry-run"]);
    assert!(output.status.success(), "{}", text_of(&output.stderr));
    assert!(text_of(&output.stdout).contains("dry run: 37 bytes"), "{}", text_of(&output.stdout));
}
