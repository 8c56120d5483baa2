//! `dextlink`: generate, check, fingerprint and explain dextlink schemas.
//!
//! Exit codes:
//!   0  success
//!   1  a check failed: a generated file is stale, or `--against` found a breaking change
//!   2  usage error (bad arguments)
//!   3  the schema (or, for `iig`, the .iig file) is invalid (diagnostics on stderr)
//!   4  a file could not be read or written

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dextlink_schema::compat::{self, ChangeKind};
use dextlink_schema::emit::{c_client, cpp, explain, rust};
use dextlink_schema::stale::{self, Freshness, StaleError};
use dextlink_schema::{LoadError, Schema};

const EXIT_CHECK_FAILED: u8 = 1;
const EXIT_INVALID_SCHEMA: u8 = 3;
const EXIT_IO: u8 = 4;

#[derive(Parser)]
#[command(
    name = "dextlink",
    version,
    about = "One schema of DriverKit external methods, both sides of the user-client boundary",
    after_help = "Outputs: --cpp writes the dext's C++ header, --c-client a C11 client header, and \
                  --rust the Rust module `dextlink::interface!` expands to (to read the generated \
                  client; the macro generates the same module itself).\n\n\
                  Exit codes: 0 success, 1 check failed (stale file or breaking change), \
                  2 usage error, 3 invalid schema or .iig file, 4 file error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the generated headers and the Rust client module.
    Gen {
        /// The schema file.
        schema: PathBuf,
        /// Write the dext's C++ header here (`-` for stdout).
        #[arg(long, value_name = "OUT.h")]
        cpp: Option<PathBuf>,
        /// Write the plain C11 client header here (`-` for stdout).
        #[arg(long = "c-client", value_name = "OUT.h")]
        c_client: Option<PathBuf>,
        /// Write the Rust module that `dextlink::interface!` expands to here (`-` for stdout),
        /// formatted, to read the generated client.
        #[arg(long, value_name = "OUT.rs")]
        rust: Option<PathBuf>,
    },
    /// Validate a schema; compare checked-in headers with what it generates; compare
    /// it with an older schema for breaking changes.
    Check {
        /// The schema file (the new one, with --against).
        schema: PathBuf,
        /// Fail with a diff when this C++ header is not what `gen --cpp` writes.
        #[arg(long, value_name = "FILE.h")]
        cpp: Option<PathBuf>,
        /// Fail with a diff when this C header is not what `gen --c-client` writes.
        #[arg(long = "c-client", value_name = "FILE.h")]
        c_client: Option<PathBuf>,
        /// Fail with a diff when this Rust module is not what `gen --rust` writes.
        #[arg(long, value_name = "FILE.rs")]
        rust: Option<PathBuf>,
        /// Rewrite stale files instead of failing.
        #[arg(long)]
        write: bool,
        /// The schema already shipped: fail on changes that break an app or dext built from it.
        #[arg(long, value_name = "OLD_SCHEMA")]
        against: Option<PathBuf>,
    },
    /// Print the schema's ABI fingerprint.
    Fingerprint {
        schema: PathBuf,
        /// Print the canonical ABI text that is hashed instead.
        #[arg(long)]
        canonical: bool,
    },
    /// Print the dispatch table: selectors, arguments, checks.
    Explain {
        schema: PathBuf,
        /// As a Markdown table.
        #[arg(long)]
        markdown: bool,
    },
    /// Write dextlink's DriverKit shim header (`DIR/dextlink/driverkit_shim.h`), for
    /// compiling the C++ header and dext sources off-device with `-DDEXTLINK_DRIVERKIT_SHIM`.
    Shim {
        /// The include directory to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write what Xcode's iig writes for a dext's `.iig` class declaration, for
    /// dextlink's DriverKit runtime on Linux: `DIR/<Stem>.h` and `DIR/<Stem>.iig.cpp`.
    Iig {
        /// The `.iig` files: each gives `<Stem>.h` and `<Stem>.iig.cpp`.
        #[arg(required = true, value_name = "FILE.iig")]
        iig: Vec<PathBuf>,
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// An error that ends the command with an exit code.
struct Failure {
    code: u8,
    message: Option<String>,
}

impl Failure {
    fn io(what: String, error: std::io::Error) -> Failure {
        Failure { code: EXIT_IO, message: Some(format!("error: {what}: {error}")) }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("{message}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Loads a schema, printing its warnings; invalid schemas end the command.
fn load(path: &Path) -> Result<Schema, Failure> {
    match dextlink_schema::load(path) {
        Ok(schema) => {
            if !schema.warnings.items.is_empty() {
                eprint!("{}", schema.warnings.render(color()));
            }
            Ok(schema)
        }
        Err(LoadError::Io { path, error }) => {
            Err(Failure::io(format!("cannot read schema {}", path.display()), error))
        }
        Err(LoadError::Invalid(diagnostics)) => {
            eprint!("{}", diagnostics.render(color()));
            let errors = diagnostics.errors().count();
            Err(Failure {
                code: EXIT_INVALID_SCHEMA,
                message: Some(format!(
                    "error: {} is not a valid schema ({errors} error{})",
                    path.display(),
                    if errors == 1 { "" } else { "s" }
                )),
            })
        }
    }
}

fn cpp_header(schema: &Schema) -> String {
    let options = cpp::Options { schema_name: file_name(&schema.source().path) };
    cpp::emit(&schema.interface, &options)
}

/// The Rust module, as `dextlink::interface!` expands to it (without the
/// macro's `include_bytes!` that rebuilds the crate when the schema changes).
fn rust_module(schema: &Schema) -> String {
    let options = rust::Options { schema_name: file_name(&schema.source().path), track_path: None };
    rust::emit(&schema.interface, &options)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Gen { schema, cpp, c_client, rust } => {
            if cpp.is_none() && c_client.is_none() && rust.is_none() {
                return Err(Failure {
                    code: 2,
                    message: Some(
                        "error: nothing to generate\n\nhelp: add `--cpp OUT.h` (the dext header), \
                         `--c-client OUT.h` and/or `--rust OUT.rs` (the Rust client module)"
                            .to_string(),
                    ),
                });
            }
            let schema = load(&schema)?;
            if let Some(out) = cpp {
                write_output(&out, &cpp_header(&schema))?;
            }
            if let Some(out) = c_client {
                write_output(&out, &c_client::emit(&schema.interface))?;
            }
            if let Some(out) = rust {
                write_output(&out, &rust_module(&schema))?;
            }
            Ok(())
        }
        Command::Check { schema, cpp, c_client, rust, write, against } => {
            let new = load(&schema)?;
            let mut failed = false;
            if let Some(old_path) = against {
                let old = load(&old_path)?;
                failed |= report_compat(&old_path, &old, &schema, &new);
            }
            let outputs = [(cpp, "--cpp"), (c_client, "--c-client"), (rust, "--rust")];
            for (path, flag) in outputs {
                let Some(path) = path else { continue };
                let expected = match flag {
                    "--cpp" => cpp_header(&new),
                    "--c-client" => c_client::emit(&new.interface),
                    _ => rust_module(&new),
                };
                failed |= check_file(&path, &expected, &schema, flag, write)?;
            }
            if failed { Err(Failure { code: EXIT_CHECK_FAILED, message: None }) } else { Ok(()) }
        }
        Command::Fingerprint { schema, canonical } => {
            let schema = load(&schema)?;
            if canonical {
                print!("{}", dextlink_schema::fingerprint::canonical(&schema.interface));
            } else {
                println!("0x{:016x}", schema.interface.fingerprint);
            }
            Ok(())
        }
        Command::Explain { schema, markdown } => {
            let schema = load(&schema)?;
            let text = if markdown {
                explain::markdown(&schema.interface)
            } else {
                explain::text(&schema.interface)
            };
            print!("{text}");
            Ok(())
        }
        Command::Shim { out } => {
            let path = out.join("dextlink").join("driverkit_shim.h");
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure::io(format!("cannot create {}", dir.display()), e))?;
            }
            write_output(&path, cpp::SHIM_HEADER)
        }
        Command::Iig { iig, out } => run_iig(&iig, &out),
    }
}

/// `dextlink iig FILE… --out DIR`: every file is generated first, then all
/// outputs are written aside and renamed only when all were written, so a
/// failure leaves none of them.
fn run_iig(inputs: &[PathBuf], out: &Path) -> Result<(), Failure> {
    let mut generated: Vec<(String, String)> = Vec::new();
    let mut refused = Vec::new();
    for iig in inputs {
        let text = std::fs::read_to_string(iig)
            .map_err(|e| Failure::io(format!("cannot read {}", iig.display()), e))?;
        match dextlink_schema::iig::generate(iig, &text) {
            Ok(output) => {
                generated.push((output.header_name, output.header));
                generated.push((output.source_name, output.source));
            }
            Err(diagnostics) => {
                eprint!("{}", diagnostics.render(color()));
                refused.push(iig.display().to_string());
            }
        }
    }
    if !refused.is_empty() {
        return Err(Failure {
            code: EXIT_INVALID_SCHEMA,
            message: Some(format!(
                "error: {} {} not a .iig file dextlink iig understands; nothing was written",
                refused.join(", "),
                if refused.len() == 1 { "is" } else { "are" }
            )),
        });
    }
    let mut names = std::collections::BTreeSet::new();
    for (name, _) in &generated {
        if !names.insert(name.as_str()) {
            return Err(Failure {
                code: 2,
                message: Some(format!(
                    "error: two of the .iig files would both write {}; nothing was written",
                    out.join(name).display()
                )),
            });
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Failure::io(format!("cannot create {}", out.display()), e))?;
    let files: Vec<(&String, &String)> =
        generated.iter().map(|(name, text)| (name, text)).collect();
    // A name taken by a directory would fail the second rename after the
    // first one replaced its file: refuse before writing anything.
    for (name, _) in &files {
        let target = out.join(name);
        if target.is_dir() {
            return Err(Failure::io(
                format!("cannot write {}", target.display()),
                std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory"),
            ));
        }
    }
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let remove_all = |written: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in written {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for (name, text) in files {
        let target = out.join(name);
        let tmp = out.join(format!(".{name}.{}.tmp", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, text) {
            let _ = std::fs::remove_file(&tmp);
            remove_all(&written);
            return Err(Failure::io(format!("cannot write {}", target.display()), e));
        }
        written.push((tmp, target));
    }
    for (index, (tmp, target)) in written.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target) {
            remove_all(&written[index..]);
            return Err(Failure::io(format!("cannot write {}", target.display()), e));
        }
    }
    Ok(())
}

/// Prints every change between two schemas; returns whether any breaks.
fn report_compat(old_path: &Path, old: &Schema, new_path: &Path, new: &Schema) -> bool {
    let changes = compat::compare(&old.interface, &new.interface);
    let breaking = compat::has_breaking(&changes);
    for change in &changes {
        let kind = match change.kind {
            ChangeKind::Breaking => "breaking",
            ChangeKind::Additive => "additive",
            ChangeKind::Note => "note",
        };
        let at = change
            .new_span
            .map(|s| {
                let (line, col) = new.source().line_col(s.start);
                format!("{}:{line}:{col}: ", new_path.display())
            })
            .or_else(|| {
                change.old_span.map(|s| {
                    let (line, col) = old.source().line_col(s.start);
                    format!("{}:{line}:{col}: ", old_path.display())
                })
            })
            .unwrap_or_default();
        eprintln!("{at}{kind}: {}", change.message);
    }
    let count = changes.iter().filter(|c| c.kind == ChangeKind::Breaking).count();
    if breaking {
        eprintln!(
            "error: {} breaks apps or dexts built from {} ({count} breaking change{})",
            new_path.display(),
            old_path.display(),
            if count == 1 { "" } else { "s" }
        );
    } else {
        eprintln!("ok: {} is compatible with {}", new_path.display(), old_path.display());
    }
    breaking
}

/// Compares a checked-in file with what the schema generates. Returns whether
/// it was stale (and not rewritten).
fn check_file(
    path: &Path,
    expected: &str,
    schema: &Path,
    flag: &str,
    write: bool,
) -> Result<bool, Failure> {
    match stale::check_file(path, expected, write) {
        Ok(Freshness::Fresh) => Ok(false),
        Ok(Freshness::Rewritten) => {
            eprintln!("rewrote {}", path.display());
            Ok(false)
        }
        Err(StaleError::Io { path, error }) => {
            Err(Failure::io(format!("cannot access {}", path.display()), error))
        }
        Err(err) => {
            if let StaleError::Stale { diff, .. } = &err {
                print!("{diff}");
                eprintln!(
                    "error: {} is stale: it differs from what {} generates",
                    path.display(),
                    schema.display()
                );
            } else {
                eprintln!("error: {err}");
            }
            eprintln!(
                "help: run `dextlink gen {} {flag} {}` (or `dextlink check … --write`)",
                schema.display(),
                path.display()
            );
            Ok(true)
        }
    }
}

/// Writes a generated file whole or not at all; `-` writes to stdout.
fn write_output(path: &Path, text: &str) -> Result<(), Failure> {
    if path == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::io("cannot write to stdout".to_string(), e));
    }
    stale::write_atomically(path, text)
        .map_err(|e| Failure::io(format!("cannot write {}", path.display()), e))
}
