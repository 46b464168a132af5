//! The library's public surface, checked against `public-api.txt`: every
//! public item, field, variant and method, with each function's signature,
//! as rustdoc sees it. A change to the surface fails this test until the
//! file is regenerated on purpose (`WARMING_BLESS=1 cargo test -p
//! warming-core --test public_api`) and the diff reviewed: the surface
//! changes only when someone means it to.
//!
//! rustdoc's JSON output is unstable; `RUSTC_BOOTSTRAP=1` lets the stable
//! toolchain produce it (as `cargo-semver-checks` does). It is built in a
//! target directory of its own, so it never waits on the test's own build.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A type as written, from rustdoc's JSON.
fn ty(t: &Value) -> String {
    let Some((kind, inner)) = t.as_object().and_then(|o| o.iter().next()) else {
        return "?".into();
    };
    match kind.as_str() {
        "primitive" | "generic" => inner.as_str().unwrap_or("?").to_owned(),
        "resolved_path" => {
            let path = inner["path"].as_str().unwrap_or("?");
            let name = path.rsplit("::").next().unwrap_or(path);
            let args = &inner["args"]["angle_bracketed"]["args"];
            match args.as_array().filter(|a| !a.is_empty()) {
                Some(args) => {
                    let args: Vec<String> = args
                        .iter()
                        .map(|a| match a.get("type") {
                            Some(t) => ty(t),
                            None => "'_".into(),
                        })
                        .collect();
                    format!("{name}<{}>", args.join(", "))
                }
                None => name.to_owned(),
            }
        }
        "borrowed_ref" => {
            let mutable = if inner["is_mutable"].as_bool() == Some(true) {
                "mut "
            } else {
                ""
            };
            format!("&{mutable}{}", ty(&inner["type"]))
        }
        "tuple" => {
            let parts: Vec<String> = inner
                .as_array()
                .map(|a| a.iter().map(ty).collect())
                .unwrap_or_default();
            format!("({})", parts.join(", "))
        }
        "slice" => format!("[{}]", ty(inner)),
        "array" => format!(
            "[{}; {}]",
            ty(&inner["type"]),
            inner["len"].as_str().unwrap_or("?")
        ),
        "impl_trait" => "impl ..".into(),
        "dyn_trait" => "dyn ..".into(),
        "raw_pointer" => format!("*{}", ty(&inner["type"])),
        "qualified_path" => format!("<..>::{}", inner["name"].as_str().unwrap_or("?")),
        other => other.to_owned(),
    }
}

/// A function's signature: `(inputs) -> output`.
fn signature(function: &Value) -> String {
    let sig = &function["sig"];
    let inputs: Vec<String> = sig["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|pair| {
                    let name = pair[0].as_str().unwrap_or("_");
                    let t = ty(&pair[1]);
                    if name == "self" {
                        t.replace("Self", "self")
                    } else {
                        format!("{name}: {t}")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let output = match &sig["output"] {
        Value::Null => String::new(),
        t => format!(" -> {}", ty(t)),
    };
    format!("({}){output}", inputs.join(", "))
}

struct Walk<'a> {
    index: &'a serde_json::Map<String, Value>,
    lines: BTreeSet<String>,
}

impl Walk<'_> {
    fn item(&self, id: &Value) -> Option<&Value> {
        self.index.get(&id.to_string())
    }

    fn public(item: &Value) -> bool {
        item["visibility"] == "public"
    }

    /// Walks item `id`, reachable as `path` (its own name appended).
    fn walk(&mut self, id: &Value, prefix: &str, name_override: Option<&str>) {
        let Some(item) = self.item(id).cloned() else {
            return;
        };
        let Some((kind, inner)) = item["inner"].as_object().and_then(|o| o.iter().next()) else {
            return;
        };
        let name = name_override
            .or_else(|| item["name"].as_str())
            .unwrap_or("");
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}::{name}")
        };
        match kind.as_str() {
            "module" => {
                if !prefix.is_empty() {
                    self.lines.insert(format!("mod {path}"));
                }
                let here = if prefix.is_empty() { "" } else { &path };
                for child in inner["items"].as_array().into_iter().flatten() {
                    if self.item(child).is_some_and(Self::public) {
                        self.walk(child, here, None);
                    }
                }
            }
            "use" => {
                if inner["is_glob"] == true {
                    if let Some(target) = self.item(&inner["id"]).cloned() {
                        for child in target["inner"]["module"]["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            if self.item(child).is_some_and(Self::public) {
                                self.walk(child, prefix, None);
                            }
                        }
                    }
                } else {
                    self.walk(&inner["id"], prefix, inner["name"].as_str());
                }
            }
            "struct" => {
                self.lines.insert(format!("struct {path}"));
                for field in inner["kind"]["plain"]["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(f) = self.item(field).filter(|f| Self::public(f)) {
                        let line = format!(
                            "field {path}.{}: {}",
                            f["name"].as_str().unwrap_or("?"),
                            ty(&f["inner"]["struct_field"])
                        );
                        self.lines.insert(line);
                    }
                }
                if inner["kind"]["plain"]["has_stripped_fields"] == true {
                    self.lines
                        .insert(format!("struct {path} has private fields"));
                }
                self.impls(&path, &inner["impls"]);
            }
            "enum" => {
                self.lines.insert(format!("enum {path}"));
                for variant in inner["variants"].as_array().into_iter().flatten() {
                    if let Some(v) = self.item(variant) {
                        self.lines.insert(format!(
                            "variant {path}::{}",
                            v["name"].as_str().unwrap_or("?")
                        ));
                    }
                }
                self.impls(&path, &inner["impls"]);
            }
            "function" => {
                self.lines.insert(format!("fn {path}{}", signature(inner)));
            }
            "trait" => {
                self.lines.insert(format!("trait {path}"));
                for member in inner["items"].as_array().into_iter().flatten() {
                    if let Some(m) = self.item(member) {
                        let sig = m["inner"]
                            .get("function")
                            .map(signature)
                            .unwrap_or_default();
                        self.lines.insert(format!(
                            "trait-item {path}::{}{sig}",
                            m["name"].as_str().unwrap_or("?")
                        ));
                    }
                }
            }
            "constant" | "static" => {
                let t = inner.get("type").map(ty).unwrap_or_default();
                self.lines.insert(format!("const {path}: {t}"));
            }
            "type_alias" => {
                self.lines.insert(format!("type {path}"));
            }
            other => {
                self.lines.insert(format!("{other} {path}"));
            }
        }
        // The attributes a user's code depends on.
        if item["attrs"].to_string().contains("non_exhaustive") {
            self.lines.insert(format!("non_exhaustive {path}"));
        }
    }

    /// Inherent methods, and traits implemented by hand (not auto or
    /// blanket ones, which follow from the rest).
    fn impls(&mut self, path: &str, impls: &Value) {
        for id in impls.as_array().into_iter().flatten() {
            let Some(block) = self.item(id).map(|i| i["inner"]["impl"].clone()) else {
                continue;
            };
            if block["is_synthetic"] == true || !block["blanket_impl"].is_null() {
                continue;
            }
            match block["trait"]["path"].as_str() {
                Some(name) => {
                    self.lines.insert(format!("impl {name} for {path}"));
                }
                None => {
                    for member in block["items"].as_array().into_iter().flatten() {
                        let Some(m) = self.item(member).filter(|m| Self::public(m)) else {
                            continue;
                        };
                        let sig = m["inner"]
                            .get("function")
                            .map(signature)
                            .unwrap_or_default();
                        self.lines.insert(format!(
                            "fn {path}::{}{sig}",
                            m["name"].as_str().unwrap_or("?")
                        ));
                    }
                }
            }
        }
    }
}

/// The crate's public surface, a line per item, from rustdoc's JSON.
fn surface() -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = crate_dir.join("../../target/public-api");
    let status = Command::new(env!("CARGO"))
        .args(["rustdoc", "-q", "-p", "warming-core", "--lib", "--"])
        .args(["-Z", "unstable-options", "--output-format", "json"])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(crate_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "rustdoc could not document the crate");
    let json = std::fs::read_to_string(target.join("doc/warming_core.json")).unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    let index = doc["index"].as_object().unwrap();
    let mut walk = Walk {
        index,
        lines: BTreeSet::new(),
    };
    walk.walk(&doc["root"], "", None);
    let mut text: String = walk.lines.into_iter().collect::<Vec<_>>().join("\n");
    text.push('\n');
    text
}

#[test]
fn the_public_surface_changes_only_on_purpose() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("public-api.txt");
    let now = surface();
    if std::env::var_os("WARMING_BLESS").is_some() {
        std::fs::write(&file, &now).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&file).unwrap_or_default();
    if now != recorded {
        let (now_lines, recorded_lines): (BTreeSet<&str>, BTreeSet<&str>) =
            (now.lines().collect(), recorded.lines().collect());
        let added: Vec<&&str> = now_lines.difference(&recorded_lines).collect();
        let removed: Vec<&&str> = recorded_lines.difference(&now_lines).collect();
        panic!(
            "warming-core's public surface changed.\nadded:\n  {}\nremoved:\n  {}\nIf this is \
             meant, regenerate public-api.txt with WARMING_BLESS=1 and review the diff.",
            added
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n  "),
            removed
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}
