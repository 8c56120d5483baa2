//! The generated dext header under sanitizers, fed random arguments:
//! `tests/cpp/dispatch_fuzz.cpp` sends hostile and well-formed
//! `IOUserClientMethodArguments` for every method shape of
//! `tests/schemas/shapes.dextlink` through the shim's `ExternalMethod` path
//! and checks, against a model of docs/driverkit.md §2.2 and the schema's
//! declared ranges and sizes, that every call that must be refused is refused
//! before any handler runs, that every well-formed call reaches its handler
//! with exactly the values sent, and that nothing leaks.
//!
//! It is built with AddressSanitizer and UndefinedBehaviorSanitizer (no
//! recovery) and the workspace's strict warnings, with every compiler
//! available, and must finish with no sanitizer report. With clang, the same
//! file also builds as a libFuzzer target (`-DDEXTLINK_LIBFUZZER`), which is
//! run briefly. Without clang++, or when it cannot link libFuzzer, that part
//! is skipped with a note, and fails under `CI=true` (`dextlink_tests::tools`).
//!
//! The seed changes from run to run (one for both tests) and is printed on
//! stderr as the tests start, and in any failure; set
//! `DEXTLINK_FUZZ_SEED` (decimal or 0x-hex) to replay one, and
//! `DEXTLINK_FUZZ_ITERATIONS` / `DEXTLINK_LIBFUZZER_RUNS` to run longer.
//! The figures (iterations, outcomes, time) are printed: see them with
//! `--nocapture`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dextlink_tests::{
    compile_cpp, cpp_header, cxx_compilers, env_number, load, root, scratch_dir, tools,
};

const SANITIZERS: &[&str] =
    &["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"];

/// Iterations per compiler (a few seconds under the sanitizers).
const ITERATIONS: u64 = 200_000;
/// libFuzzer executions (each one iteration; libFuzzer adds its own cost per run).
const LIBFUZZER_RUNS: u64 = 200_000;
/// A run that takes longer than this has hung: it is killed and reported.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `DEXTLINK_FUZZ_SEED`, or a fresh seed: one for the whole run, printed by
/// each test that uses it (and named in its failure) so that it can be
/// replayed.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        env_number("DEXTLINK_FUZZ_SEED").unwrap_or_else(|| {
            let nanos =
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        })
    })
}

/// Prints `line` (the seed a run uses) past the test harness's capture, so
/// that it shows even when the run hangs or is killed before it reports.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// What a finished child process printed.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `exe` with `args` in `dir`, killing it after `RUN_LIMIT`.
fn run(exe: &Path, args: &[String], dir: &Path) -> Result<Output, String> {
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(dir)
        // Leak checking is on by default with ASan on Linux; say so explicitly,
        // and make UBSan print where it stopped.
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    // Drain both pipes while waiting, so that a chatty child never blocks.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} did not finish within {RUN_LIMIT:?}", exe.display()));
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

/// A sanitizer's report in `text`, if any.
fn sanitizer_report(text: &str) -> Option<&str> {
    const MARKERS: &[&str] = &[
        "ERROR: AddressSanitizer",
        "ERROR: LeakSanitizer",
        "runtime error:",
        "SUMMARY: AddressSanitizer",
        "SUMMARY: UndefinedBehaviorSanitizer",
        "WARNING: AddressSanitizer",
    ];
    MARKERS.iter().find_map(|m| text.find(m).map(|at| &text[at..]))
}

/// Builds the driver with `compiler` and runs it: the summary line, or a report.
fn fuzz_with(
    compiler: &str,
    header: &str,
    main: &str,
    seed: u64,
    iterations: u64,
) -> Result<String, String> {
    let dir = scratch_dir(&format!("cpp-fuzz-{compiler}"));
    std::fs::write(dir.join("Shapes.h"), header).unwrap();
    let exe = dir.join("dispatch_fuzz");
    compile_cpp(compiler, &dir, main, SANITIZERS, Some(&exe))?;
    let out = run(&exe, &[format!("{seed:#x}"), iterations.to_string()], &dir)?;
    let summary =
        out.stdout.lines().find(|l| l.starts_with("dispatch-fuzz: seed")).map(str::to_string);
    let report = sanitizer_report(&out.stderr).or_else(|| sanitizer_report(&out.stdout));
    match summary {
        Some(line) if out.status.success() && line.ends_with(" 0 failed") && report.is_none() => {
            Ok(format!("{compiler}: {line} (run {:.2} s)", out.elapsed.as_secs_f64()))
        }
        _ => Err(format!(
            "dispatch_fuzz built with {compiler} failed ({}); replay with DEXTLINK_FUZZ_SEED={seed:#x} \
             (the binary: {}):\n--- stdout\n{}--- stderr\n{}",
            out.status,
            dir.keep_hint(),
            out.stdout,
            out.stderr
        )),
    }
}

#[test]
fn generated_dispatch_survives_random_arguments_under_sanitizers() {
    let schema = load(&root().join("tests/schemas/shapes.dextlink"));
    let header = cpp_header(&schema);
    let source = root().join("tests/cpp/dispatch_fuzz.cpp");
    assert!(source.is_file(), "missing {}", source.display());
    // The .cpp includes "Shapes.h": written into the scratch dir, which is on
    // the include path.
    let main = format!("#include \"{}\"\n", source.display());
    let seed = seed();
    let iterations = env_number("DEXTLINK_FUZZ_ITERATIONS").unwrap_or(ITERATIONS);
    announce(&format!(
        "dispatch fuzz: DEXTLINK_FUZZ_SEED={seed:#x}, {iterations} iterations per compiler"
    ));

    // Every compiler runs (side by side) before anything is reported, so that
    // one report shows whether a failure depends on the compiler.
    let results: Vec<Result<String, String>> = thread::scope(|scope| {
        let runs: Vec<_> = cxx_compilers()
            .into_iter()
            .map(|compiler| {
                let (header, main) = (&header, &main);
                scope.spawn(move || fuzz_with(compiler, header, main, seed, iterations))
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("fuzz thread")).collect()
    });
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(line) => println!("{line}"),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The smallest libFuzzer target: does `-fsanitize=fuzzer` link here?
const LIBFUZZER_PROBE: &str = "#include <stddef.h>\n#include <stdint.h>\n\
    extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)\n\
    {\n    (void)data;\n    (void)size;\n    return 0;\n}\n";

#[test]
fn libfuzzer_entry_point_runs_clean() {
    const WHAT: &str = "the libFuzzer variant of dispatch_fuzz";
    if !tools::require("clang++", WHAT) {
        return;
    }
    let dir = scratch_dir("cpp-libfuzzer");
    let probe = dir.join("probe");
    if let Err(e) =
        compile_cpp("clang++", &dir, LIBFUZZER_PROBE, &["-fsanitize=fuzzer"], Some(&probe))
    {
        tools::skip(WHAT, &format!("clang++ cannot link libFuzzer here:\n{e}"));
        return;
    }

    std::fs::write(
        dir.join("Shapes.h"),
        cpp_header(&load(&root().join("tests/schemas/shapes.dextlink"))),
    )
    .unwrap();
    let source = root().join("tests/cpp/dispatch_fuzz.cpp");
    let main = format!("#include \"{}\"\n", source.display());
    let exe = dir.join("dispatch_fuzz_libfuzzer");
    let flags = [
        "-fsanitize=fuzzer,address,undefined",
        "-fno-sanitize-recover=all",
        "-g",
        "-O1",
        "-DDEXTLINK_LIBFUZZER",
    ];
    compile_cpp("clang++", &dir, &main, &flags, Some(&exe)).unwrap_or_else(|e| panic!("{e}"));

    let runs = env_number("DEXTLINK_LIBFUZZER_RUNS").unwrap_or(LIBFUZZER_RUNS);
    let run_seed = seed();
    // libFuzzer's seed is an unsigned int; 0 would mean "pick one".
    let seed = run_seed % 0xffff_fffe + 1;
    announce(&format!(
        "libFuzzer: DEXTLINK_FUZZ_SEED={run_seed:#x} (libFuzzer -seed={seed}), {runs} runs"
    ));
    let args = [
        format!("-runs={runs}"),
        format!("-seed={seed}"),
        format!("-artifact_prefix={}/", dir.display()),
        "-print_final_stats=1".to_string(),
    ];
    let out = run(&exe, &args, &dir).unwrap_or_else(|e| panic!("{e}"));
    let done = out.stderr.lines().find(|l| l.starts_with("Done ")).map(str::to_string);
    let report = sanitizer_report(&out.stderr);
    let expected = format!("Done {runs} runs");
    if !out.status.success()
        || report.is_some()
        || !done.as_deref().is_some_and(|d| d.starts_with(&expected))
    {
        panic!(
            "the libFuzzer target failed ({}); replay with DEXTLINK_FUZZ_SEED={run_seed:#x} \
             (libFuzzer -seed={seed}); the crashing input: {}:\n{}",
            out.status,
            dir.keep_hint(),
            out.stderr
        );
    }
    let exec_per_sec = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("stat::average_exec_per_sec:"))
        .map_or("?", str::trim)
        .to_string();
    println!(
        "libFuzzer (clang++): {} (seed {seed}), {exec_per_sec} exec/s, {:.2} s",
        done.unwrap_or_default(),
        out.elapsed.as_secs_f64()
    );
}
