//! Tidy: rules of the source tree that review would otherwise have to remember (after the
//! `tidy` tests TigerBeetle and rust-analyzer keep).
//!
//! - No `todo!`, `unimplemented!` or `dbg!` anywhere under `crates/`.
//! - `anyhow` only in the binary's own parts (`main.rs`, `cmd/`); the libraries have closed
//!   error enums.
//! - Randomness (`rand::`) only in the id and secret source (`ids.rs`) and in tests.
//! - Source files at most [`FILE_LINES_MAX`] lines (their `#[cfg(test)]` modules and test
//!   files apart), functions outside tests at most
//!   [`FN_LINES_MAX`]. The files and functions over the limit when the rule came are listed
//!   with their size then ([`LONG_FILES`], [`LONG_FNS`]): they may shrink, not grow, and a
//!   listed one that is back under the limit must leave the list, so the lists only get
//!   shorter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest source file, in lines.
const FILE_LINES_MAX: usize = 500;
/// Longest function, in lines (signature to closing brace).
const FN_LINES_MAX: usize = 70;

/// Files over [`FILE_LINES_MAX`] when the rule came, at their size then.
const LONG_FILES: &[(&str, usize)] = &[
    ("crates/creditgate/src/cmd/bench/proxy.rs", 1133),
    ("crates/creditgate/src/http/proxy/endpoints.rs", 545),
    ("crates/creditgate/src/providers/stripe.rs", 516),
    ("crates/creditgate/src/http/api/holds.rs", 512),
    ("crates/creditgate/src/http/api/payments.rs", 629),
    ("crates/domain/src/ledger/types.rs", 541),
    ("crates/store/src/api/members.rs", 508),
    ("crates/store/src/postgres.rs", 677),
    ("crates/store/src/sqlite/writer.rs", 512),
];

/// Functions over [`FN_LINES_MAX`] when the rule came (`file::name`), at their size then.
const LONG_FNS: &[(&str, usize)] = &[
    ("crates/creditgate/src/cmd/bench/proxy.rs::table", 159),
    (
        "crates/creditgate/src/cmd/demo/tour.rs::auto_reload_rescue",
        127,
    ),
    ("crates/creditgate/src/cmd/demo/tour.rs::tour", 109),
    (
        "crates/creditgate/src/http/proxy/formats/request.rs::request_facts",
        78,
    ),
    (
        "crates/creditgate/src/http/billing/pages/auto_reload.rs::reload_save",
        79,
    ),
    (
        "crates/creditgate/src/http/billing/pages/sign_in.rs::auth_use",
        77,
    ),
    (
        "crates/creditgate/src/demo_upstream/openai_responses.rs::openai_response_events",
        72,
    ),
    ("crates/creditgate/src/node/mod.rs::build", 119),
    ("crates/creditgate/src/http/proxy/mod.rs::forward", 126),
    ("crates/creditgate/src/http/proxy/upstream.rs::stream", 75),
    (
        "crates/creditgate/src/http/api/credits.rs::create_grant",
        73,
    ),
    ("crates/creditgate/src/http/api/holds.rs::place_hold", 125),
    ("crates/creditgate/src/http/api/usage.rs::record_usage", 72),
    (
        "crates/creditgate/src/http/api/usage.rs::usage_operation",
        83,
    ),
    ("crates/domain/src/access.rs::decide", 93),
    ("crates/domain/src/ledger/engine.rs::expire_grant", 71),
    ("crates/store/src/api/payments/reload.rs::begin_reload", 112),
    ("crates/store/src/api/payments/reload.rs::reload_failed", 76),
    ("crates/store/src/api/payments/rows.rs::advance_payment", 91),
    ("crates/store/src/sqlite/writer.rs::load", 102),
    ("crates/store/src/sqlite/writer.rs::write", 99),
];

/// Files (relative to the workspace root) that may use `anyhow`: the binary's own parts.
fn anyhow_allowed(path: &str) -> bool {
    let src = "crates/creditgate/src/";
    let Some(rest) = path.strip_prefix(src) else {
        return false;
    };
    rest == "main.rs" || rest.starts_with("cmd/")
}

/// The shell's layers, each above the ones after it: a module may use only what is below it
/// (`node` → `http`, `workers` → `app` → `providers` → the rest), and no transport another.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "crates/creditgate/src/app/",
        &["crate::http", "crate::workers", "crate::node"],
    ),
    (
        "crates/creditgate/src/providers/",
        &["crate::http", "crate::workers", "crate::node", "crate::app"],
    ),
    (
        "crates/creditgate/src/limiter.rs",
        &["crate::http", "crate::workers", "crate::node", "crate::app"],
    ),
    (
        "crates/creditgate/src/state.rs",
        &["crate::http", "crate::workers", "crate::node", "crate::app"],
    ),
    (
        "crates/creditgate/src/workers/",
        &["crate::http", "crate::node"],
    ),
    (
        "crates/creditgate/src/http/api/",
        &["crate::http::billing", "crate::http::proxy", "crate::node"],
    ),
    (
        "crates/creditgate/src/http/billing/",
        &["crate::http::proxy", "crate::http::api", "crate::node"],
    ),
    (
        "crates/creditgate/src/http/proxy/",
        &["crate::http::billing", "crate::http::api", "crate::node"],
    ),
];

/// The first path `line` (code, comments cut) of `path` uses that its layer may not.
fn layer_breach(path: &str, line: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| path.starts_with(prefix))
        .flat_map(|(_, banned)| banned.iter())
        .find(|banned| line.contains(*banned))
        .copied()
}

/// Files that may use `rand::` outside tests.
const RAND_ALLOWED: &[&str] = &["crates/creditgate/src/ids.rs"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, as (path relative to the root, text).
fn rust_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a UTF-8 source file");
            let relative = path
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            out.push((relative, text));
        }
    }
}

fn all_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for krate in ["domain", "store", "creditgate"] {
        rust_files(&root().join("crates").join(krate), &mut files);
    }
    assert!(files.len() > 50, "the walk found the sources");
    files
}

/// Whether a file is test code as a whole.
fn is_test_file(path: &str) -> bool {
    path.contains("/tests/") || path.ends_with("tests.rs") || path.ends_with("_tests.rs")
}

/// The lines of `text` outside `#[cfg(test)]` modules, with their 1-based numbers.
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            i = block_end(&lines, i + 1) + 1;
            continue;
        }
        out.push((i + 1, line));
        i += 1;
    }
    out
}

/// The index of the line closing the block opened on line `start` (`}` at its indentation).
fn block_end(lines: &[&str], start: usize) -> usize {
    let indent = indentation(lines[start]);
    (start + 1..lines.len())
        .find(|&j| indentation(lines[j]) == indent && lines[j].trim_start().starts_with('}'))
        .unwrap_or(lines.len() - 1)
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The name of the function a line starts, if it starts one.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "async ",
        "const ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    if let Some(r) = rest.strip_prefix("pub(in ") {
        rest = r.split_once(") ").map_or(r, |(_, after)| after);
        rest = rest.strip_prefix("async ").unwrap_or(rest);
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&name[..end])
}

/// (`file::name`, lines) of every function outside tests whose body opens with `{`.
fn functions(path: &str, text: &str) -> Vec<(String, usize)> {
    let kept = non_test_lines(text);
    let lines: Vec<&str> = kept.iter().map(|(_, l)| *l).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        // The signature may span lines; the body opens on the first line ending in `{`
        // (a declaration ending in `;` has none).
        let Some(open) = (i..lines.len().min(i + 20)).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let end = block_end(&lines, i);
        out.push((format!("{path}::{name}"), end - i + 1));
    }
    out
}

fn check_ratchet(
    what: &str,
    limit: usize,
    found: &BTreeMap<String, usize>,
    listed: &[(&str, usize)],
    problems: &mut Vec<String>,
) {
    let listed: BTreeMap<&str, usize> = listed.iter().copied().collect();
    for (name, &lines) in found {
        match listed.get(name.as_str()) {
            None if lines > limit => problems.push(format!(
                "{what} {name} has {lines} lines, over {limit}: split it"
            )),
            Some(&was) if lines > was => problems.push(format!(
                "{what} {name} grew to {lines} lines (listed at {was}, the limit is {limit})"
            )),
            Some(_) if lines <= limit => problems.push(format!(
                "{what} {name} is {lines} lines, within {limit}: take it off the list"
            )),
            _ => {}
        }
    }
    for name in listed.keys() {
        if !found.contains_key(*name) {
            problems.push(format!(
                "{what} {name} is listed but gone: take it off the list"
            ));
        }
    }
}

#[test]
fn the_source_tree_is_tidy() {
    let files = all_files();
    let mut problems = Vec::new();
    let mut file_sizes = BTreeMap::new();
    let mut fn_sizes = BTreeMap::new();
    for (path, text) in &files {
        for (number, line) in text.lines().enumerate() {
            for banned in ["todo!(", "unimplemented!(", "dbg!("] {
                // This file names them.
                if line.contains(banned) && !path.ends_with("tests/tidy.rs") {
                    problems.push(format!("{path}:{}: {banned}", number + 1));
                }
            }
        }
        if !path.contains("/src/") || is_test_file(path) {
            continue;
        }
        let code = non_test_lines(text);
        for (number, line) in &code {
            let line = line.split("//").next().unwrap_or("");
            if line.contains("anyhow") && !anyhow_allowed(path) {
                problems.push(format!("{path}:{number}: anyhow outside the binary"));
            }
            if let Some(used) = layer_breach(path, line) {
                problems.push(format!(
                    "{path}:{number}: {used}: a layer looking up or across"
                ));
            }
            if line.contains("rand::") && !RAND_ALLOWED.contains(&path.as_str()) {
                problems.push(format!(
                    "{path}:{number}: randomness outside ids.rs (use ids::random_hex)"
                ));
            }
        }
        file_sizes.insert(path.clone(), code.len());
        fn_sizes.extend(functions(path, text));
    }
    check_ratchet(
        "file",
        FILE_LINES_MAX,
        &file_sizes,
        LONG_FILES,
        &mut problems,
    );
    check_ratchet("function", FN_LINES_MAX, &fn_sizes, LONG_FNS, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_function_finder_finds_functions() {
    let text = "fn a() {\n    1\n}\n\npub async fn b(\n    x: u8,\n) -> u8 {\n    x\n}\nfn c();\n\
                #[cfg(test)]\nmod tests {\n    fn hidden() {\n    }\n}\n";
    assert_eq!(
        functions("f.rs", text),
        vec![("f.rs::a".to_owned(), 3), ("f.rs::b".to_owned(), 5)]
    );
    assert_eq!(fn_name("    pub(in crate::proxy) fn x(y: u8) {"), Some("x"));
    assert_eq!(fn_name("let f = 1;"), None);
}
