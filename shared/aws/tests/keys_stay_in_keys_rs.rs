//! Key formats live in `domain::keys` only (issue #15): an adapter that spells a key
//! prefix itself (`"TENANT#"`, `format!("ACCOUNT#{a}")`) drifts from the layout the
//! other adapters, the audit and the docs assume. This test reads every adapter source
//! and fails on a string literal that starts like a key (`UPPER#` or `#UPPER`).

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The string literals of `code` that look like a key: `"ABC#…"` or `"#ABC…"`.
fn key_literals(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (i, literal) in line.split('"').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let upper = |s: &str| {
                s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            };
            let head = literal.split('#').next().unwrap_or_default();
            let after = literal.strip_prefix('#').unwrap_or_default();
            let after_head = after.split(['#', '{']).next().unwrap_or_default();
            if (literal.contains('#') && upper(head)) || upper(after_head) {
                found.push(literal.to_owned());
            }
        }
    }
    found
}

#[test]
fn no_adapter_spells_a_key_format_of_its_own() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10, "found {} sources", files.len());
    let mut leaks = Vec::new();
    for f in files {
        let code = std::fs::read_to_string(&f).expect("readable");
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in key_literals(code) {
            leaks.push(format!("{}: \"{literal}\"", f.display()));
        }
    }
    assert!(
        leaks.is_empty(),
        "key formats outside domain::keys (add a function or constant there):\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_check_sees_prefixes_and_sort_keys_but_not_expressions() {
    assert_eq!(
        key_literals(r##"s("TENANT#") format!("HUBSPOT#UNKNOWN_PORTAL#{p}") s("#MARKER")"##),
        ["TENANT#", "HUBSPOT#UNKNOWN_PORTAL#{p}", "#MARKER"]
    );
    assert!(key_literals(r##"format!("#{qn} :{qn}") "#f0" "ADD refused :n" "#pk""##).is_empty());
}
