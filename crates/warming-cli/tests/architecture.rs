//! The code's shape, checked: within each crate, no circle of files that
//! import each other (a file depends on another when it names an item of
//! that file's module: `use super::X`, `crate::a::b::f()`, `child::g()`).
//! A circle means neither file can be understood, changed or moved alone;
//! the fix is a module of its own for what both need. `WARMING_SHOW_EDGES=1`
//! prints every dependency the check found, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate (`["http", "routes"]`), by file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            // A binary's extra roots (src/bin/x.rs) are crates of their own.
            if parts.first().is_some_and(|p| p == "bin") {
                continue;
            }
            found.insert(parts, path);
        }
    }
    found
}

/// A file's code without comments, string contents and its unit tests
/// (an inline `mod tests` names its file's items as `super::`).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    strip_strings(&code)
}

/// What a file re-exports (`pub use a::B;`, `pub(crate) use a::B as C;`):
/// the name it gives, and the path it names.
fn reexports(text: &str) -> BTreeMap<String, Vec<String>> {
    let code = code_of(text);
    let mut found = BTreeMap::new();
    for marker in ["pub use ", "pub(crate) use "] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(marker) {
            let after = &rest[i + marker.len()..];
            let Some(end) = after.find(';') else { break };
            let mut paths = Vec::new();
            expand(after[..end].trim(), &mut Vec::new(), &mut paths);
            for (path, name) in paths {
                if name != "*" && name != "self" {
                    found.insert(name, path);
                }
            }
            rest = &after[end..];
        }
    }
    found
}

/// Every path a file names: `use` trees expanded, and `a::b::c` sequences
/// elsewhere, comments and strings left out.
fn named_paths(text: &str) -> Vec<Vec<String>> {
    let code = code_of(text);
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            let mut expanded = Vec::new();
            expand(after[..end].trim(), &mut Vec::new(), &mut expanded);
            paths.extend(expanded.into_iter().map(|(path, _)| path));
        }
        rest = &after[end..];
    }
    // Inline paths: identifiers joined by `::`, outside `use` statements
    // (read whole above).
    let mut outside_use = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let word_start = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let end = rest[i..].find(';').map_or(rest.len(), |e| i + e);
        if word_start {
            outside_use.push_str(&rest[..i]);
        } else {
            outside_use.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    outside_use.push_str(rest);
    let mut current: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut chars = outside_use.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            if !word.is_empty() {
                current.push(std::mem::take(&mut word));
            }
            continue;
        }
        if !word.is_empty() {
            current.push(std::mem::take(&mut word));
        }
        if current.len() > 1 {
            paths.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    paths
}

/// Removes string and char literals' contents.
fn strip_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in code.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                out.push('"');
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim().trim_start_matches("pub(crate) ").trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let depth = prefix.len();
        prefix.extend(head);
        let mut level = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand(&inner[start..i], prefix, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(depth);
    } else {
        let mut parts = tree.split(" as ");
        let item = parts.next().unwrap_or(tree).trim();
        if item.is_empty() {
            return;
        }
        let mut path = prefix.clone();
        path.extend(item.split("::").map(|s| s.trim().to_owned()));
        let name = parts
            .next()
            .map(|alias| alias.trim().to_owned())
            .or_else(|| path.last().cloned())
            .unwrap_or_default();
        out.push((path, name));
    }
}

/// Re-exports by module.
type Reexports = BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>;

/// The module a path names, from `here`: the longest module prefix, or,
/// when that module only re-exports the item named next, the module the
/// re-export leads to (a crate root's `pub use` is a door, not a place).
fn target(
    path: &[String],
    here: &[String],
    known: &BTreeMap<Vec<String>, PathBuf>,
    reexports: &Reexports,
    depth: usize,
) -> Option<Vec<String>> {
    let first = path.first()?.as_str();
    let anchored = matches!(first, "crate" | "self" | "super");
    let (mut base, rest): (Vec<String>, &[String]) = match first {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (here.to_vec(), &path[1..]),
        "super" => {
            let mut base = here.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        // A bare name counts only as a child module of `here`.
        _ => {
            let mut child = here.to_vec();
            child.push(first.to_owned());
            if !known.contains_key(&child) {
                return None;
            }
            (here.to_vec(), path)
        }
    };
    let mut reached = anchored.then(|| base.clone());
    let mut next = None;
    for segment in rest {
        base.push(segment.clone());
        if known.contains_key(&base) {
            reached = Some(base.clone());
        } else {
            next = Some(segment.clone());
            break;
        }
    }
    let module = reached?;
    if let (Some(item), true) = (next, depth < 8) {
        if let Some(source) = reexports.get(&module).and_then(|r| r.get(&item)) {
            if let Some(through) = target(source, &module, known, reexports, depth + 1) {
                return Some(through);
            }
        }
    }
    Some(module)
}

/// Circles of files, each as its files' paths.
fn circles(src: &Path) -> Vec<Vec<String>> {
    let known = modules(src);
    let reexports: Reexports = known
        .iter()
        .map(|(m, file)| {
            (
                m.clone(),
                reexports(&std::fs::read_to_string(file).unwrap()),
            )
        })
        .collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        for path in named_paths(&text) {
            if let Some(to) = target(&path, module, &known, &reexports, 0) {
                if &to != module {
                    if std::env::var_os("WARMING_SHOW_EDGES").is_some() {
                        eprintln!("{}: {module:?} -> {to:?} by {path:?}", src.display());
                    }
                    edges.entry(module.clone()).or_default().insert(to);
                }
            }
        }
    }
    // Two modules are in a circle when each reaches the other.
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        known.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for m in known.keys() {
        if done.contains(m) {
            continue;
        }
        let circle: Vec<&Vec<String>> = known
            .keys()
            .filter(|o| reaches[m].contains(*o) && reaches[*o].contains(m))
            .collect();
        if circle.len() > 1 {
            found.push(
                circle
                    .iter()
                    .map(|c| {
                        done.insert((*c).clone());
                        known[*c].strip_prefix(src).unwrap().display().to_string()
                    })
                    .collect(),
            );
        }
    }
    found
}

#[test]
fn no_crate_has_a_circle_of_files_importing_each_other() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut report = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        for circle in circles(&src) {
            report.push(format!("{}: {}", src.display(), circle.join(" <-> ")));
        }
    }
    assert!(
        report.is_empty(),
        "files that import each other:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("http")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod http;\n").unwrap();
    std::fs::write(
        src.join("http/mod.rs"),
        "mod routes;\npub struct State;\nfn router() { routes::get(); }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("http/routes.rs"),
        "use super::State;\npub fn get() {}\n",
    )
    .unwrap();
    assert_eq!(circles(src).len(), 1);
    // State in a module of its own: no circle.
    std::fs::write(
        src.join("http/mod.rs"),
        "mod routes;\nmod state;\nfn router() { routes::get(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("http/state.rs"), "pub struct State;\n").unwrap();
    std::fs::write(
        src.join("http/routes.rs"),
        "use super::state::State;\npub fn get() {}\n",
    )
    .unwrap();
    assert!(circles(src).is_empty());
}
