//! The compiled-table consistency check: does the dext's C++ header, as a C++
//! compiler compiles it, agree with the app's generated Rust module?
//!
//! Both generated sides assert the schema's layout numbers, but those
//! assertions come from one model. What they cannot see is a difference
//! between what the two *compilers* made of them, or a header that was
//! edited by hand. [`verify`] looks: it writes the header and dextlink's
//! DriverKit shim into a temporary directory beside a generated program that
//! prints the compiled `kDispatchTable` (every field of every entry), every
//! shared struct's size, alignment, field offsets and field sizes, the
//! memory types and the interface's constants; compiles it with the system's
//! C++ compiler (`-std=c++17 -Wall -Wextra -Werror`), runs it, and compares
//! each fact with the Rust module's [`INTERFACE`](InterfaceInfo): `METHODS`
//! by selector, `STRUCTS` (measured by rustc) by name and field,
//! `MEMORY_TYPES` by id. A difference fails with one line per fact.
//!
//! In a test of the crate that holds the client (`tests/tablecheck.rs`):
//!
//! ```ignore
//! dextlink::interface!("fwloader.dextlink");
//!
//! #[test]
//! fn the_compiled_header_agrees_with_the_rust_client() {
//!     match dextlink_tablecheck::verify(&fw_loader::INTERFACE) {
//!         Ok(report) => println!("{report}"),
//!         Err(e) => panic!("{e}"),
//!     }
//! }
//! ```
//!
//! The header checked is the macro's `CPP_HEADER` unless
//! [`Options::header`] names another file, such as the header checked in
//! beside the dext's sources (whose staleness `dextlink check` reports).
//! The probe runs on the build machine, so the C++ layouts are that
//! machine's; every LP64 target (arm64 and x86_64 macOS among them) lays out
//! dextlink's fixed-width fields alike, which the header's asserts hold it to.

mod compare;
mod probe;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use dextlink::server::InterfaceInfo;
use dextlink_schema::emit::cpp::{SHIM_HEADER, SHIM_MACRO};

/// The compiler flags of the probe, before [`Options::args`]: the header
/// must compile cleanly with them (the project's own tests are stricter).
pub const FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror"];

/// Compilers tried, in order, when neither [`Options::compiler`] nor `$CXX`
/// names one.
pub const DEFAULT_COMPILERS: &[&str] = &["c++", "g++", "clang++"];

/// How [`verify_with`] compiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The C++ compiler (a GCC-compatible driver). `None`: `$CXX` (split at
    /// whitespace, as `make` does, so `ccache g++` works), else the first of
    /// [`DEFAULT_COMPILERS`] that runs.
    pub compiler: Option<PathBuf>,
    /// Extra arguments, after [`FLAGS`] (so `-std=c++20` overrides).
    pub args: Vec<String>,
    /// Compile this header file instead of the interface's `cpp_header`,
    /// e.g. the copy checked in beside the dext's sources.
    pub header: Option<PathBuf>,
}

impl Options {
    /// Options that compile with `compiler`.
    pub fn compiler(compiler: impl Into<PathBuf>) -> Options {
        Options { compiler: Some(compiler.into()), ..Options::default() }
    }
}

/// What a successful [`verify`] compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The interface's name.
    pub interface: &'static str,
    /// The compiler as it was run.
    pub compiler: String,
    /// The first line of its `--version`.
    pub compiler_version: String,
    /// Dispatch table entries compared, field by field.
    pub entries: usize,
    /// Methods among them (the rest are zero-filled entries).
    pub methods: usize,
    /// Structs compared.
    pub structs: usize,
    /// Their fields compared, in all.
    pub fields: usize,
    /// Memory types compared.
    pub memory_types: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the C++ header compiled by {} ({}) agrees with the Rust metadata: \
             kFingerprint, kVersion, {} ({}), {} ({}), {}",
            self.interface,
            self.compiler,
            self.compiler_version,
            count(self.entries, "dispatch table entry", "dispatch table entries"),
            count(self.methods, "method", "methods"),
            count(self.structs, "struct", "structs"),
            count(self.fields, "field", "fields"),
            count(self.memory_types, "memory type", "memory types"),
        )
    }
}

/// `1 struct`, `3 structs`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a [`Difference`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The interface's constants (`kFingerprint`, `kVersion`, `kSelectorCount`).
    Interface(&'static str),
    /// A dispatch table entry, with the Rust side's method there, if any.
    Selector { selector: u32, method: Option<&'static str> },
    /// A shared struct.
    Struct(&'static str),
    /// A memory type, by its schema name.
    MemoryType(&'static str),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Interface(name) => write!(f, "interface {name}"),
            Item::Selector { selector, method: Some(m) } => write!(f, "selector {selector} ({m})"),
            Item::Selector { selector, method: None } => write!(f, "selector {selector}"),
            Item::Struct(name) => write!(f, "struct {name}"),
            Item::MemoryType(name) => write!(f, "memory type {name}"),
        }
    }
}

/// One side's value of a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A count, size, offset, id or check value.
    Number(u64),
    /// A fingerprint.
    Hash(u64),
    /// Whether a dispatch entry's `function` is set.
    Function(bool),
    /// Whether a dispatch entry exists at all (the other side's table is
    /// shorter).
    Present(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            // kIOUserClientVariableStructureSize reads better in hex.
            Value::Number(0xffff_ffff) => f.write_str("0xffffffff"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Hash(h) => write!(f, "0x{h:016x}"),
            Value::Function(true) => f.write_str("a function"),
            Value::Function(false) => f.write_str("nullptr"),
            Value::Present(true) => f.write_str("an entry"),
            Value::Present(false) => f.write_str("no entry"),
        }
    }
}

/// One fact on which the compiled C++ and the Rust metadata disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub item: Item,
    /// The fact, named as in C++: `checkStructureInputSize`, `function`,
    /// `entry`, `kVersion`, `size`, `alignment`, `offset of bar`,
    /// `size of bar`, `MemoryType::Staging`, `kStagingSize`.
    pub fact: String,
    pub cpp: Value,
    pub rust: Value,
}

impl fmt::Display for Difference {
    /// `selector 3 (checked_struct): checkStructureInputSize: C++ 16, Rust 24`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: C++ {}, Rust {}", self.item, self.fact, self.cpp, self.rust)
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No compiler could be run.
    #[error(
        "no C++ compiler found (tried `{}`): install one, or name it in CXX or `Options::compiler`",
        .tried.join("`, `")
    )]
    NoCompiler { tried: Vec<String> },
    /// The interface metadata cannot be turned into a probe (a hand-made
    /// [`InterfaceInfo`] with names that are not C++ identifiers).
    #[error("cannot probe this interface: {0}")]
    InvalidInterface(String),
    /// Reading the header, writing the temporary files, or starting a program failed.
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// The compiler rejected the header or the probe: a `static_assert` of
    /// the header failed, or it lacks something the Rust side has.
    #[error("{compiler} could not compile the header with the probe program:\n{stderr}")]
    Compile { compiler: String, stderr: String },
    /// The probe program failed, or printed something unexpected.
    #[error("the probe program failed: {0}")]
    Probe(String),
    /// The compiled C++ and the Rust metadata differ: one line per fact.
    #[error("{}", mismatch_text(.0))]
    Mismatch(Vec<Difference>),
}

fn mismatch_text(differences: &[Difference]) -> String {
    let mut text = String::from("the compiled C++ header disagrees with the Rust metadata:");
    for d in differences {
        text.push_str("\n  ");
        text.push_str(&d.to_string());
    }
    text
}

/// Checks `interface`'s C++ header against its Rust metadata with the
/// default [`Options`].
pub fn verify(interface: &InterfaceInfo) -> Result<Report, Error> {
    verify_with(interface, &Options::default())
}

/// Checks `interface`'s C++ header (or [`Options::header`]) against its Rust
/// metadata, compiling as `options` say.
pub fn verify_with(interface: &InterfaceInfo, options: &Options) -> Result<Report, Error> {
    probe::validate(interface)?;
    let header_text = match &options.header {
        Some(path) => std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: format!("read the header {}", path.display()),
            source,
        })?,
        None => interface.cpp_header.to_string(),
    };
    let compiler = find_compiler(options)?;

    let dir = TempDir::new()?;
    let header = format!("{}.h", interface.name);
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text)
            .map_err(|source| Error::Io { action: format!("write {}", path.display()), source })
    };
    write(dir.0.join(&header), &header_text)?;
    let shim_dir = dir.0.join("dextlink");
    std::fs::create_dir(&shim_dir)
        .map_err(|source| Error::Io { action: format!("create {}", shim_dir.display()), source })?;
    write(shim_dir.join("driverkit_shim.h"), SHIM_HEADER)?;
    let source = dir.0.join("probe.cpp");
    write(source.clone(), &probe::source(interface, &header))?;

    let exe = dir.0.join(format!("probe{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = compiler.command();
    cmd.args(FLAGS)
        .arg(format!("-D{SHIM_MACRO}"))
        .arg("-I")
        .arg(&dir.0)
        .args(&options.args)
        .arg(&source)
        .arg("-o")
        .arg(&exe);
    let built = output_of(&mut cmd, &compiler.name)?;
    if !built.status.success() {
        return Err(Error::Compile {
            compiler: compiler.name,
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&built.stdout),
                String::from_utf8_lossy(&built.stderr)
            ),
        });
    }

    let ran = output_of(&mut Command::new(&exe), "the probe program")?;
    if !ran.status.success() {
        return Err(Error::Probe(format!(
            "it exited with {}:\n{}",
            ran.status,
            String::from_utf8_lossy(&ran.stderr)
        )));
    }
    let stdout = String::from_utf8(ran.stdout)
        .map_err(|_| Error::Probe("its output is not UTF-8".to_string()))?;
    let compiled = probe::parse(interface, &stdout)?;
    let differences = compare::compare(interface, &compiled);
    if !differences.is_empty() {
        return Err(Error::Mismatch(differences));
    }
    Ok(Report {
        interface: interface.name,
        compiler: compiler.name,
        compiler_version: compiler.version,
        entries: compiled.entries.len(),
        methods: interface.methods.len(),
        structs: interface.structs.len(),
        fields: interface.structs.iter().map(|s| s.fields.len()).sum(),
        memory_types: interface.memory_types.len(),
    })
}

/// Runs `cmd` to completion with its output captured.
fn output_of(cmd: &mut Command, what: &str) -> Result<std::process::Output, Error> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io { action: format!("run {what}"), source })
}

/// The compiler found, with arguments that came with it in `$CXX`.
#[derive(Debug)]
struct Compiler {
    program: OsString,
    args: Vec<OsString>,
    /// How it is shown: the program and its arguments.
    name: String,
    version: String,
}

impl Compiler {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }

    fn new(program: OsString, args: Vec<OsString>) -> Compiler {
        let name = std::iter::once(&program)
            .chain(&args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        Compiler { program, args, name, version: String::new() }
    }

    /// Fills in the version if `--version` runs and succeeds.
    fn runs(&mut self) -> bool {
        let Ok(out) = self.command().arg("--version").stdin(Stdio::null()).output() else {
            return false;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        self.version = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").into();
        out.status.success()
    }
}

/// The compiler of `options`, else `$CXX`, else the first default that runs.
/// A compiler that was named is not replaced by another: a CI job that sets
/// `CXX=clang++` means clang.
fn find_compiler(options: &Options) -> Result<Compiler, Error> {
    let mut candidates = Vec::new();
    if let Some(path) = &options.compiler {
        candidates.push(Compiler::new(path.clone().into_os_string(), Vec::new()));
    } else if let Some(cxx) = std::env::var_os("CXX").filter(|c| !c.is_empty()) {
        match cxx.to_str() {
            Some(text) => {
                let mut words = text.split_whitespace().map(OsString::from);
                if let Some(program) = words.next() {
                    candidates.push(Compiler::new(program, words.collect()));
                }
            }
            None => candidates.push(Compiler::new(cxx, Vec::new())),
        }
    }
    if candidates.is_empty() {
        candidates = DEFAULT_COMPILERS
            .iter()
            .map(|c| Compiler::new(OsString::from(c), Vec::new()))
            .collect();
    }
    let mut tried = Vec::new();
    for mut compiler in candidates {
        if compiler.runs() {
            return Ok(compiler);
        }
        tried.push(compiler.name);
    }
    Err(Error::NoCompiler { tried })
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, Error> {
        // Unique within the process by the counter (tests verify in
        // parallel), between processes by the pid; `create_dir` fails on a
        // leftover of an earlier process with the same pid, and the next
        // number is tried.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..64 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("dextlink-tablecheck-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(source) => {
                    return Err(Error::Io { action: format!("create {}", path.display()), source });
                }
            }
        }
        Err(Error::Io {
            action: format!("create a directory in {}", base.display()),
            source: last.unwrap_or_else(|| io::Error::other("no free name")),
        })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover in the temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
