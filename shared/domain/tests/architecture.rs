//! The domain's modules import each other in layers, never in a circle (issue #15).
//!
//! Crates cannot import each other in a circle, but the modules of one crate can; this
//! test is the crate boundary's stand-in inside `domain`. It reads every source file,
//! collects the `crate::…` paths its non-test code names (doc comments and
//! `#[cfg(test)]` modules excluded), resolves each to the deepest module file that
//! exists, and fails with the cycle when the module graph has one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn module_files(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            module_files(&path, &p, out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let mut p = prefix.to_vec();
            if stem != "mod" && stem != "lib" {
                p.push(stem.to_owned());
            }
            out.insert(p.join("::"), path);
        }
    }
}

/// The code a module compiles outside its tests, without comments.
fn production_code(source: &str) -> String {
    let before_tests = source.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `code` with each `super::` written as the `crate::` path it names from `module`
/// (a file module's parent, or a `mod.rs` module's own parent).
fn with_super_resolved(module: &str, code: &str) -> String {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let absolute = if parent.is_empty() {
        "crate::".to_owned()
    } else {
        format!("crate::{parent}::")
    };
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("super::") {
        let starts_word = !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if starts_word { &absolute } else { "super::" });
        rest = &rest[at + "super::".len()..];
    }
    out.push_str(rest);
    out
}

/// Every `crate::a::b::C` path in `code`, with `crate::a::{b, c::D}` groups expanded.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let head = rest[..end].trim_end_matches(':').to_owned();
        if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
            let group_end = rest[end..].find('}').map_or(rest.len(), |i| end + i);
            for item in rest[end + 1..group_end].split(',') {
                let item = item.split_whitespace().next().unwrap_or_default();
                if !item.is_empty() {
                    paths.push(format!("{head}::{item}"));
                }
            }
        } else {
            paths.push(head);
        }
    }
    paths
}

fn graph(src: &Path) -> Graph {
    let mut files = BTreeMap::new();
    module_files(src, &[], &mut files);
    let resolve = |path: &str| -> Option<String> {
        let segments: Vec<&str> = path.split("::").collect();
        (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|m| files.contains_key(m))
    };
    let mut g = Graph::new();
    for (module, file) in &files {
        let source = std::fs::read_to_string(file).expect("domain sources are readable");
        let deps = crate_paths(&with_super_resolved(module, &production_code(&source)))
            .iter()
            .filter_map(|p| resolve(p))
            .filter(|d| d != module && !d.is_empty())
            .collect();
        g.insert(module.clone(), deps);
    }
    g
}

/// A cycle in `g`, if there is one, as the modules along it.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        m: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(m) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(m.to_owned(), Mark::Open);
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut marks, &mut Vec::new()))
}

fn domain_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_domain_module_imports_itself_through_others() {
    let g = graph(&domain_sources());
    assert!(
        g.len() > 40,
        "found only {} modules: is the path right?",
        g.len()
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "the domain's modules import each other in a circle: {}\n\
             Move the shared types into a leaf module (as registry.rs and ports/error.rs do).",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_registry_and_the_port_errors_are_leaves() {
    let g = graph(&domain_sources());
    let allowed: BTreeSet<String> = ["ids", "horizon"].map(String::from).into();
    for leaf in ["registry", "ports::error"] {
        let deps = &g[leaf];
        assert!(
            deps.is_subset(&allowed),
            "{leaf} must import nothing of the domain but ids and horizon, imports {deps:?}"
        );
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut g = Graph::new();
    g.insert("event".into(), ["governance".into()].into());
    g.insert("governance".into(), ["ports".into()].into());
    g.insert("ports".into(), ["event".into()].into());
    g.insert("ids".into(), BTreeSet::new());
    assert_eq!(
        find_cycle(&g),
        Some(
            vec!["event", "governance", "ports", "event"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    if let Some(d) = g.get_mut("ports") {
        d.clear();
    }
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn super_paths_are_read_from_the_module_that_writes_them() {
    assert_eq!(
        crate_paths(&with_super_resolved(
            "health::config",
            "use super::model::Metric;"
        )),
        ["health::model::Metric"]
    );
    assert_eq!(
        crate_paths(&with_super_resolved("health", "use super::ids::Segment;")),
        ["ids::Segment"]
    );
}

#[test]
fn grouped_imports_and_comments_are_read_as_the_compiler_reads_them() {
    let code = production_code(
        "use crate::ports::{error::Page, Directory};\n\
         /// see [`crate::quarantine`]\n\
         let x = crate::alert::TENANT_WIDE; // crate::audit\n\
         #[cfg(test)]\nmod tests { use crate::health; }",
    );
    assert_eq!(
        crate_paths(&code),
        [
            "ports::error::Page",
            "ports::Directory",
            "alert::TENANT_WIDE"
        ]
    );
}
