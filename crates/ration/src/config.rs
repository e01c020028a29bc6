//! `ration serve` settings: flag > environment > TOML file > default (DESIGN.md §1).
//!
//! The file format (`FileConfig`) is `Deserialize` with unknown keys rejected; it is turned into
//! the server's validated `ServerConfig`, which is not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Flags of `ration serve`; each also reads its `RATION_*` variable (clap handles flag > env).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to bind; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "RATION_LISTEN")]
    pub listen: Option<String>,
    /// The `iss` of every token (a trailing `/` is added if missing). Default: http://<listen>/
    #[arg(long, env = "RATION_ISSUER")]
    pub issuer: Option<String>,
    /// Directory of the embedded store and key material.
    #[arg(long, env = "RATION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "RATION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Quota counter durability: `process` (survives kill -9) or `fsync` (also power loss).
    #[arg(long, env = "RATION_QUOTA_DURABILITY")]
    pub quota_durability: Option<String>,
}

/// The TOML file. Every key is optional; unknown keys are an error that names the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to bind, e.g. `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Token issuer URL.
    pub issuer: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// `"process"` (default: counts survive `kill -9`) or `"fsync"` (also power loss).
    pub quota_durability: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
    }
}

/// Settings after merging, before binding.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None`: derived from the bound address.
    pub issuer: Option<String>,
    pub data_dir: PathBuf,
    pub quota_durability: ration_counters::Durability,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Settings {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text)?;
        let issuer = args.issuer.clone().or(file.issuer).map(|i| normalize_issuer(&i)).transpose()?;
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./ration-data"));
        let quota_durability = match args.quota_durability.clone().or(file.quota_durability).as_deref() {
            None | Some("process") => ration_counters::Durability::Process,
            Some("fsync") => ration_counters::Durability::Fsync,
            Some(other) => bail!("invalid quota_durability {other:?}: expected \"process\" or \"fsync\""),
        };
        Ok(Settings { listen, issuer, data_dir, quota_durability })
    }
}

/// Accepts `host:port` and `:port` (all interfaces is not assumed: `:0` means 127.0.0.1:0).
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') { format!("127.0.0.1{text}") } else { text.to_owned() };
    full.parse().with_context(|| format!("invalid listen address {text:?}: expected host:port, e.g. 127.0.0.1:8080"))
}

fn normalize_issuer(issuer: &str) -> anyhow::Result<String> {
    if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
        bail!("invalid issuer {issuer:?}: must be an absolute http(s) URL");
    }
    Ok(if issuer.ends_with('/') { issuer.to_owned() } else { format!("{issuer}/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("listen = \"x\"\nlisten_port = 3\n").unwrap_err();
        assert!(err.message().contains("listen_port"), "{}", err.message());
    }

    #[test]
    fn issuer_gets_trailing_slash() {
        assert_eq!(normalize_issuer("https://a.example").unwrap(), "https://a.example/");
        assert!(normalize_issuer("a.example").is_err());
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("ration-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\ndata_dir = \"/tmp/from-file\"\n").unwrap();
        let args = ServeArgs { listen: Some(":0".into()), config: Some(path), ..Default::default() };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(Settings::resolve(&ServeArgs::default()).unwrap().listen.port(), 8080);
    }
}
