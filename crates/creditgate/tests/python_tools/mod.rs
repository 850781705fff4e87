//! Real counterparts from PyPI (fakellm, aiosmtpd) for black-box tests: each installed once
//! into a virtualenv under `target/`, one installer at a time (a file lock shared with
//! `scripts/test.sh`), reused while its check passes.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether tests run in CI, where a missing counterpart fails instead of skipping.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The cargo target directory of the running test binary.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Runs `command`; an error carries the last lines of its stderr.
pub fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    Err(format!(
        "{command:?} exited with {}: {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

/// Finds or installs `requirement` (`name==version`) into `target/venv-<name>`; answers
/// `bin/<entry>` inside it once `installed` accepts it.
pub fn venv_with(
    name: &str,
    requirement: &str,
    entry: &str,
    installed: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    venv_with_all(name, &[requirement], entry, installed)
}

/// Finds or installs a virtualenv of several packages installed together (one installer at
/// a time: test binaries and scripts/test.sh share a file lock beside it):
/// finds or installs every one of `requirements` (`name==version`) into
/// `target/venv-<name>` under the lock `target/venv-<name>.lock`; answers `bin/<entry>`
/// inside it once `installed` accepts it.
pub fn venv_with_all(
    name: &str,
    requirements: &[&str],
    entry: &str,
    installed: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let venv = target.join(format!("venv-{name}"));
    let entry = venv.join("bin").join(entry);
    if installed(&entry) {
        return Ok(entry);
    }
    let lock_path = target.join(format!("venv-{name}.lock"));
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    if installed(&entry) {
        return Ok(entry);
    }
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .map_err(|e| {
        format!("{e}\n(python3 with the venv module is needed: apt-get install python3-venv)")
    })?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet"])
        .args(requirements))?;
    if installed(&entry) {
        Ok(entry)
    } else {
        Err(format!(
            "{} does not pass its check after the install",
            entry.display()
        ))
    }
}
