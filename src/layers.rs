//! The layering check: every `crate::` and `super::` path in `src/` is read
//! and checked against the layer list in `docs/architecture.md` (the lines
//! `layer N: module module ...`). It fails on
//! - an import from a lower layer to a higher one,
//! - an import cycle between top-level modules,
//! - an import cycle between sibling modules of one directory (the one
//!   allowed: `envelope` archive ↔ mime, which mirrors cloud-init's format),
//! - a top-level module the layer list does not place.
//!
//! Test code (`#[cfg(test)] mod ...` to the end of a file, `tests.rs`, `test_util.rs`,
//! `examples.rs`) is not checked: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Sibling cycles that are allowed (directory, a, b).
const ALLOWED_SIBLING_CYCLES: &[(&str, &str, &str)] = &[("envelope", "archive", "mime")];

/// One source file: its module path (`["api", "discovery"]`) and its
/// non-test text.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The text without comments and without its test module.
fn production_text(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn sources() -> Vec<SourceFile> {
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&root).unwrap().to_path_buf();
        let parts: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts[0].as_str(),
            "bin" | "lib.rs" | "main.rs" | "layers.rs" | "test_util.rs"
        ) {
            continue;
        }
        let last = parts.last().unwrap().as_str();
        if last == "tests.rs" || last == "examples.rs" {
            continue;
        }
        let mut module: Vec<String> = parts.clone();
        let file = module.pop().unwrap();
        if file != "mod.rs" {
            module.push(file.trim_end_matches(".rs").to_string());
        }
        let text = production_text(&std::fs::read_to_string(&path).unwrap());
        out.push(SourceFile {
            path: rel,
            module,
            text,
        });
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path that follows `prefix` (`crate::` or `super::`), with `{a,
/// b::c}` groups expanded to their first segments: `["api", "kube"]`.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '$')) {
            continue; // `$crate::`, `a::super::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // the top-level items of the group
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(segments(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            if !item.trim().is_empty() {
                out.push(segments(item.trim()));
            }
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(s: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut rest = s;
    loop {
        let id = ident(rest);
        if id.is_empty() {
            break;
        }
        v.push(id.to_string());
        rest = &rest[id.len()..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    v
}

/// The layer list: module name → layer number.
fn layers() -> BTreeMap<String, usize> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.trim().strip_prefix("layer ") else {
            continue;
        };
        let Some((n, mods)) = rest.split_once(':') else {
            continue;
        };
        let n: usize = n.trim().parse().expect("layer number");
        for m in mods.split_whitespace() {
            assert!(
                out.insert(m.to_string(), n).is_none(),
                "{m} is in two layers"
            );
        }
    }
    assert!(
        !out.is_empty(),
        "docs/architecture.md has no `layer N:` lines"
    );
    out
}

/// module (top-level) → module → files that import it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn top_level_graph(files: &[SourceFile]) -> Graph {
    let mut g = Graph::new();
    for f in files {
        let from = &f.module[0];
        for p in paths_after(&f.text, "crate::") {
            let to = match p[0].as_str() {
                "out" | "outln" => "logging".to_string(),
                other => other.to_string(),
            };
            if &to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(f.path.display().to_string());
            }
        }
    }
    g
}

/// Edges between sibling modules of each directory: (dir, from, to).
fn sibling_edges(files: &[SourceFile]) -> BTreeSet<(String, String, String)> {
    let mut dirs: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        if f.module.len() >= 2 {
            let (last, parent) = f.module.split_last().unwrap();
            dirs.entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    let mut out = BTreeSet::new();
    for f in files {
        if f.module.len() < 2 {
            continue;
        }
        let (me, parent) = f.module.split_last().unwrap();
        let siblings = &dirs[parent];
        let mut targets = Vec::new();
        for p in paths_after(&f.text, "crate::") {
            if p.len() > parent.len() && p[..parent.len()] == *parent {
                targets.push(p[parent.len()].clone());
            }
        }
        // `super::x` from a file module is a sibling; from a mod.rs it is
        // the parent's sibling, which the parent's own check covers.
        let is_dir_module = f.path.ends_with("mod.rs");
        if !is_dir_module {
            for p in paths_after(&f.text, "super::") {
                targets.push(p[0].clone());
            }
        }
        for t in targets {
            if &t != me && siblings.contains(&t) {
                out.insert((parent.join("::"), me.clone(), t));
            }
        }
    }
    out
}

/// Strongly connected components of more than one node.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    // reachability is small here: a module set of ~20
    let nodes: BTreeSet<String> = edges
        .iter()
        .flat_map(|(a, bs)| std::iter::once(a.clone()).chain(bs.iter().cloned()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let r: BTreeMap<String, BTreeSet<String>> =
        nodes.iter().map(|n| (n.clone(), reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let comp: BTreeSet<String> = nodes
            .iter()
            .filter(|m| *m == n || (r[n].contains(*m) && r[*m].contains(n)))
            .cloned()
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

#[test]
fn imports_follow_the_layers() {
    let files = sources();
    let layer = layers();
    let mut problems = Vec::new();
    let tops: BTreeSet<&String> = files.iter().map(|f| &f.module[0]).collect();
    for t in &tops {
        if !layer.contains_key(*t) {
            problems.push(format!(
                "module {t} is not in the layer list of docs/architecture.md"
            ));
        }
    }
    let g = top_level_graph(&files);
    for (from, tos) in &g {
        for (to, where_) in tos {
            if let (Some(a), Some(b)) = (layer.get(from), layer.get(to))
                && b > a
            {
                problems.push(format!(
                    "upward import {from} (layer {a}) -> {to} (layer {b}) in {}",
                    where_.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    let edges: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(a, bs)| (a.clone(), bs.keys().cloned().collect()))
        .collect();
    for c in cycles(&edges) {
        problems.push(format!("import cycle between top-level modules: {c:?}"));
    }
    let sib = sibling_edges(&files);
    let mut by_dir: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (dir, a, b) in &sib {
        by_dir
            .entry(dir.clone())
            .or_default()
            .entry(a.clone())
            .or_default()
            .insert(b.clone());
    }
    let mut allowed_seen = 0;
    for (dir, edges) in &by_dir {
        for c in cycles(edges) {
            let allowed = ALLOWED_SIBLING_CYCLES
                .iter()
                .any(|(d, a, b)| d == dir && c.len() == 2 && c.contains(*a) && c.contains(*b));
            if allowed {
                allowed_seen += 1;
            } else {
                problems.push(format!("import cycle in {dir}: {c:?}"));
            }
        }
    }
    // the checker sees sibling cycles: the allowed one is there
    if allowed_seen != ALLOWED_SIBLING_CYCLES.len() {
        problems.push(format!(
            "expected the allowed cycles {ALLOWED_SIBLING_CYCLES:?}; one is gone: drop it from ALLOWED_SIBLING_CYCLES"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_imports() {
    // the parser itself: groups, nested groups, `$crate::` skipped
    let p = paths_after(
        "use crate::{api::kube, config::{self, Mode}};\nlet x = crate::host::Paths::new();\n$crate::logging::x",
        "crate::",
    );
    let firsts: Vec<&str> = p.iter().map(|v| v[0].as_str()).collect();
    assert_eq!(firsts, ["api", "config", "host"]);
    let mut e = BTreeMap::new();
    e.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    e.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    e.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycles(&e),
        vec![BTreeSet::from(["a".to_string(), "b".to_string()])]
    );
    // and the layer list is read from the docs
    assert!(layers()["error"] < layers()["cli"]);
}
