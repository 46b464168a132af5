//! Where the config file and the database live by default (XDG).

use std::path::PathBuf;

/// The platform config file, if it exists: `$XDG_CONFIG_HOME/warming/config.toml`
/// or `~/.config/warming/config.toml`.
pub(super) fn default_config() -> Option<PathBuf> {
    let path = xdg_dir("XDG_CONFIG_HOME", ".config")?.join("warming/config.toml");
    path.is_file().then_some(path)
}

/// An XDG base directory: the variable `var` if set, else `~/<under_home>`.
pub(super) fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    set(var)
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(under_home)))
}

/// Where the database lives when nobody says.
pub(super) fn default_db() -> PathBuf {
    match xdg_dir("XDG_DATA_HOME", ".local/share") {
        Some(dir) => {
            let dir = dir.join("warming");
            if std::fs::create_dir_all(&dir).is_ok() {
                return dir.join("warming.db");
            }
            PathBuf::from("warming.db")
        }
        None => PathBuf::from("warming.db"),
    }
}
