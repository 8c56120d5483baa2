//! For the `build.rs` of a crate that compiles its dext's C++ itself (the
//! `build` feature): compiles the sources into a shared library in
//! `OUT_DIR`, with the flags and include directory `dextlink-sim
//! --print-cflags` and `--print-libs` print, so that tests can load it with
//! [`CppDext::load`](crate::CppDext::load).
//!
//! ```no_run
//! // build.rs
//! let dext = dextlink_sim::build::Dext::new("null_driver")
//!     .file("dext/NullDriver.cpp")
//!     .file("dext/NullDriverUserClient.cpp")
//!     .compile()
//!     .unwrap();
//! // The crate's code and tests read it as env!("DEXTLINK_DEXT_NULL_DRIVER").
//! dextlink_sim::build::emit_env("null_driver", &dext);
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory of the runtime's DriverKit headers.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("driverkit/include")
}

/// The compile flags a dext needs (what `--print-cflags` prints).
pub fn cflags() -> Vec<String> {
    vec![format!("-I{}", include_dir().display()), "-std=c++17".into(), "-fPIC".into()]
}

/// The link flags a dext needs (what `--print-libs` prints): a shared
/// object whose DriverKit symbols stay undefined, to bind to the host's at
/// load time.
pub fn libs() -> Vec<String> {
    vec!["-shared".into(), "-fPIC".into()]
}

/// A dext library to compile.
#[derive(Debug, Clone)]
pub struct Dext {
    name: String,
    files: Vec<PathBuf>,
    includes: Vec<PathBuf>,
    flags: Vec<String>,
    compiler: Option<PathBuf>,
}

impl Dext {
    /// `lib{name}.so`.
    pub fn new(name: &str) -> Dext {
        Dext {
            name: name.to_owned(),
            files: Vec::new(),
            includes: Vec::new(),
            flags: Vec::new(),
            compiler: None,
        }
    }

    pub fn file(mut self, path: impl AsRef<Path>) -> Dext {
        self.files.push(path.as_ref().to_owned());
        self
    }

    /// Another include directory (e.g. where `dextlink iig` wrote the class headers).
    pub fn include(mut self, dir: impl AsRef<Path>) -> Dext {
        self.includes.push(dir.as_ref().to_owned());
        self
    }

    pub fn flag(mut self, flag: &str) -> Dext {
        self.flags.push(flag.to_owned());
        self
    }

    /// The C++ compiler (default: `cc`'s choice, honouring `CXX`).
    pub fn compiler(mut self, compiler: impl AsRef<Path>) -> Dext {
        self.compiler = Some(compiler.as_ref().to_owned());
        self
    }

    /// Compiles and links the library into `OUT_DIR`; prints
    /// `cargo:rerun-if-changed` for every source. Errors carry the
    /// compiler's output.
    pub fn compile(&self) -> Result<PathBuf, String> {
        let out_dir = std::env::var_os("OUT_DIR")
            .map(PathBuf::from)
            .ok_or("OUT_DIR is not set: call this from a build script")?;
        self.compile_into(&out_dir)
    }

    /// [`compile`](Dext::compile) into `out_dir`.
    pub fn compile_into(&self, out_dir: &Path) -> Result<PathBuf, String> {
        if self.files.is_empty() {
            return Err(format!("dext {}: no source files given", self.name));
        }
        let compiler = match &self.compiler {
            Some(compiler) => compiler.clone(),
            None => cc::Build::new()
                .cpp(true)
                .try_get_compiler()
                .map_err(|e| format!("no C++ compiler: {e}"))?
                .path()
                .to_owned(),
        };
        let output = out_dir.join(format!("lib{}.so", self.name));
        let mut command = Command::new(&compiler);
        command.args(cflags()).args(libs());
        for dir in &self.includes {
            command.arg("-I").arg(dir);
        }
        command.args(&self.flags).args(&self.files).arg("-o").arg(&output);
        for file in &self.files {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        let result =
            command.output().map_err(|e| format!("cannot run {}: {e}", compiler.display()))?;
        if !result.status.success() {
            return Err(format!(
                "{} could not build dext {}:\n{}{}",
                compiler.display(),
                self.name,
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr)
            ));
        }
        Ok(output)
    }
}

/// Tells cargo to set `DEXTLINK_DEXT_{NAME}` (upper case) to the library's
/// path when compiling the crate.
pub fn emit_env(name: &str, library: &Path) {
    let key: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    println!("cargo:rustc-env=DEXTLINK_DEXT_{key}={}", library.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_dext_compiles_into_a_shared_library() {
        let dir = std::env::temp_dir().join(format!("dextlink-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dext");
        let mut dext = Dext::new("test_dext").compiler("g++").flag("-Wall");
        for file in
            ["TestDriver.cpp", "TestDriver.iig.cpp", "TestUserClient.cpp", "TestUserClient.iig.cpp"]
        {
            dext = dext.file(sources.join(file));
        }
        let result = dext.compile_into(&dir);
        let header = result.as_ref().ok().and_then(|path| std::fs::read(path).ok());
        let _ = std::fs::remove_dir_all(&dir);
        let header = header.unwrap_or_else(|| panic!("{result:?}"));
        // ELF, ET_DYN: a shared object.
        assert_eq!(&header[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([header[16], header[17]]), 3);
        let error = Dext::new("none").compile_into(Path::new("/nonexistent")).unwrap_err();
        assert_eq!(error, "dext none: no source files given");
    }
}
