//! No import circles between sibling modules (STYLE.md: leaves import no exchange file,
//! exchange files import the hub and leaves, the hub imports leaves only).
//!
//! Reads every `.rs` file of each crate of the workspace (ike, esp, tun-io, engine and
//! the root package, found beside this crate), resolves each `crate::`, `super::` and `self::`
//! path (including names a `mod.rs` re-exports from one of its children) to the module
//! it names, and turns it into an edge between the two sibling modules under their
//! closest common parent. A cycle among siblings fails the test and prints it.
//! `#[cfg(test)]` modules are left out: test code may reach anywhere.
//!
//! Run: `cargo test -p ike --test imports`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path below the crate root, e.g. `["endpoint", "ike_sa"]`.
type ModPath = Vec<String>;

/// One module: its source text (comments, strings and test modules removed) and the
/// names it imports from each of its child modules (`use child::Name;`).
struct Module {
    text: String,
    reexports: BTreeMap<String, String>,
}

/// Source with comments, string and char literals blanked out, so that only code is
/// searched for paths.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && {
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            b.get(j) == Some(&b'"') && (i == 0 || !is_ident(b[i - 1]))
        } {
            let mut j = i + 1;
            let mut hashes = 0;
            while b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            // Copy one whole UTF-8 character.
            let len = match c {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            out.push_str(&src[i..(i + len).min(src.len())]);
            i += len;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Removes `#[cfg(test)]` items (a test module or a single item) from stripped source.
fn drop_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its matching closing brace, or at a `;` before any brace.
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices().skip("#[cfg(test)]".len()) {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The crate's modules, found from `lib.rs` through the directory layout.
fn load(root: &Path) -> BTreeMap<ModPath, Module> {
    let mut mods = BTreeMap::new();
    walk(root, &root.join("lib.rs"), Vec::new(), &mut mods);
    mods
}

fn walk(root: &Path, file: &Path, path: ModPath, mods: &mut BTreeMap<ModPath, Module>) {
    let src = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let text = drop_test_items(&strip(&src));
    let children = declared_mods(&text);
    let dir: PathBuf = if path.is_empty() {
        root.to_path_buf()
    } else if file.file_name().is_some_and(|n| n == "mod.rs") {
        file.parent().unwrap().to_path_buf()
    } else {
        file.with_extension("")
    };
    let mut reexports = BTreeMap::new();
    for (name, child) in use_items(&text) {
        if children.contains(&child) {
            reexports.insert(name, child);
        }
    }
    for child in &children {
        let a = dir.join(format!("{child}.rs"));
        let b = dir.join(child).join("mod.rs");
        let f = if a.exists() { a } else { b };
        let mut p = path.clone();
        p.push(child.clone());
        walk(root, &f, p, mods);
    }
    mods.insert(path, Module { text, reexports });
}

/// `mod name;` declarations (inline `mod name { .. }` blocks are not files).
fn declared_mods(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(name) = l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.insert(name.trim().to_string());
        }
    }
    out
}

/// For every `use first::...;` item: (each name it brings into scope, `first`).
fn use_items(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        let item = &rest[at + 3..];
        let end = item.find(';').unwrap_or(item.len());
        let body = compact(&item[..end]);
        rest = &item[end..];
        let Some((first, tail)) = body.split_once("::") else {
            continue;
        };
        for leaf in leaves(tail) {
            out.push((leaf, first.to_string()));
        }
    }
    out
}

/// The names a use tree brings into scope: `a`, `b::c` -> `c`, `d as e` -> `e`,
/// `{x, y::{z}}` -> x, z.
fn leaves(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        return split_top(inner).iter().flat_map(|t| leaves(t)).collect();
    }
    if let Some((_, rest)) = tree.split_once("::") {
        return leaves(rest);
    }
    let name = tree.rsplit(" as ").next().unwrap_or(tree);
    vec![name.to_string()]
}

/// Whitespace collapsed to single spaces, and none around `::`, braces and commas.
fn compact(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let mut out = String::new();
    for w in words {
        let glue = out.ends_with([':', '{', '}', ',']) || w.starts_with([':', '{', '}', ',']);
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Splits at commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

/// Position of `word` as a whole identifier.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(k) = s[from..].find(word) {
        let at = from + k;
        let before = at == 0 || !is_ident(b[at - 1]);
        let after = b.get(at + word.len()).is_none_or(|&c| !is_ident(c));
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Every path starting with `crate::`, `super::` or `self::` in a module's code, as
/// segment lists; use-tree braces are expanded (`super::{a::X, b}` -> two paths).
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(k) = text[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b':') {
                continue;
            }
            // The longest path text: identifiers, `::`, and a balanced use tree.
            let mut j = at;
            let mut depth = 0usize;
            while j < b.len() {
                let c = b[j];
                if is_ident(c) || c == b':' || (depth > 0 && (c == b',' || c.is_ascii_whitespace()))
                {
                    j += 1;
                } else if c == b'{' && b[j - 1] == b':' {
                    depth += 1;
                    j += 1;
                } else if c == b'}' && depth > 0 {
                    depth -= 1;
                    j += 1;
                } else {
                    break;
                }
            }
            let raw = compact(&text[at..j]);
            expand(raw.trim_end_matches(':'), &mut out);
        }
    }
    out
}

fn expand(raw: &str, out: &mut Vec<Vec<String>>) {
    if let Some(open) = raw.find("::{") {
        let prefix = &raw[..open];
        let inner = raw[open + 3..]
            .strip_suffix('}')
            .unwrap_or(&raw[open + 3..]);
        for t in split_top(inner) {
            expand(&format!("{prefix}::{t}"), out);
        }
        return;
    }
    out.push(
        raw.split("::")
            .filter(|s| !s.is_empty())
            .map(|s| s.split(" as ").next().unwrap_or(s).to_string())
            .collect(),
    );
}

/// The module a path written in module `from` names (its longest module prefix, with
/// a parent's re-export followed into the child that defines the name).
fn resolve(mods: &BTreeMap<ModPath, Module>, from: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut cur: ModPath = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => from.clone(),
        _ => return None,
    };
    // `super` is walked below like any later `super`; `crate` and `self` are consumed.
    let skip = usize::from(path[0] != "super");
    for s in &path[skip..] {
        if s == "super" {
            cur.pop();
            continue;
        }
        let mut next = cur.clone();
        next.push(s.clone());
        if mods.contains_key(&next) {
            cur = next;
            continue;
        }
        if let Some(child) = mods.get(&cur).and_then(|m| m.reexports.get(s)) {
            cur.push(child.clone());
        }
        break;
    }
    Some(cur)
}

/// Edges between sibling modules, grouped by their parent.
fn sibling_edges(
    mods: &BTreeMap<ModPath, Module>,
) -> BTreeMap<ModPath, BTreeSet<(String, String)>> {
    let mut edges: BTreeMap<ModPath, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, m) in mods {
        for p in paths(&m.text) {
            let Some(to) = resolve(mods, from, &p) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .insert((from[common].clone(), to[common].clone()));
            }
        }
    }
    edges
}

/// One cycle in a directed graph, if any.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeSet<(String, String)>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for (_, to) in edges.iter().filter(|(f, _)| f == n) {
            if let Some(c) = visit(to, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for (from, _) in edges {
        if let Some(c) = visit(from, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `src/` of every library crate of the workspace.
fn workspace_roots() -> Vec<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["ike", "esp", "tun-io", "engine", "."]
        .iter()
        .map(|c| ws.join(c).join("src"))
        .filter(|src| src.join("lib.rs").exists())
        .collect()
}

#[test]
fn no_import_circle_between_sibling_modules() {
    let roots = workspace_roots();
    assert!(roots.len() >= 4, "workspace crates not found: {roots:?}");
    let mut cycles = Vec::new();
    for root in roots {
        for (parent, edges) in sibling_edges(&load(&root)) {
            if let Some(c) = find_cycle(&edges) {
                let at = parent.join("::");
                cycles.push(format!(
                    "{}: crate::{at}: {}",
                    root.display(),
                    c.join(" -> ")
                ));
            }
        }
    }
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_sees_the_endpoint_layering() {
    let mods = load(&src_root());
    let edges = sibling_edges(&mods);
    let endpoint = &edges[&vec!["endpoint".to_string()]];
    let has = |a: &str, b: &str| endpoint.contains(&(a.to_string(), b.to_string()));
    // Exchange files import the hub and leaves; the hub imports leaves only.
    assert!(has("create_child_sa", "ike_sa"));
    assert!(has("create_child_sa", "payloads"));
    assert!(has("ike_sa", "child_sa"));
    assert!(!has("ike_sa", "create_child_sa"));
    assert!(!has("child_sa", "ike_sa"));
    // A planted circle is found.
    let mut planted = endpoint.clone();
    planted.insert(("payloads".into(), "create_child_sa".into()));
    assert!(find_cycle(&planted).is_some());
}
