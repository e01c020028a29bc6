//! Profiles: where the CLI keeps a server's URL and Management API credentials.
//!
//! One TOML file, `config.toml`, in `$RATION_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ration`, else
//! `~/.config/ration`. The directory is created 0700 and the file written 0600 (it holds a client
//! secret and a cached token), atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CliError, CliResult, Exit};

/// Name of the file in the configuration directory.
pub const FILE_NAME: &str = "config.toml";

/// Profile used when neither `--profile`, `RATION_PROFILE` nor `default_profile` names one.
pub const DEFAULT_PROFILE: &str = "default";

/// The whole configuration file.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Profile used when none is named; set by the first `ration login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One server and the Management API client used on it. No `Debug`: it holds a secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Base URL the server is reached at, without a trailing slash.
    pub url: String,
    /// The server's issuer (from its discovery document); the Management API audience is
    /// `<issuer>api/v2/`.
    pub issuer: String,
    /// Management API client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Cached Management API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix seconds at which `access_token` expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
}

impl Profile {
    /// The Management API audience of this server.
    pub fn audience(&self) -> String {
        format!("{}api/v2/", self.issuer)
    }
}

/// The configuration file's location.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Profile names stay simple: they appear in TOML keys and in commands people type.
pub fn check_profile_name(name: &str) -> CliResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!("invalid profile name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'")))
    }
}

impl Store {
    /// `$RATION_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ration` (when absolute), else
    /// `$HOME/.config/ration`.
    pub fn locate() -> CliResult<Store> {
        if let Some(dir) = env_nonempty("RATION_CONFIG_DIR") {
            return Ok(Store { dir: PathBuf::from(dir) });
        }
        if let Some(xdg) = env_nonempty("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
            return Ok(Store { dir: PathBuf::from(xdg).join("ration") });
        }
        if let Some(home) = env_nonempty("HOME") {
            return Ok(Store { dir: PathBuf::from(home).join(".config").join("ration") });
        }
        Err(CliError::new(Exit::NotLoggedIn, "cannot find a configuration directory: HOME is not set")
            .hint("set RATION_CONFIG_DIR to a directory for the CLI's profiles"))
    }

    /// Path of the configuration file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads the file; a missing file is an empty configuration.
    pub fn load(&self) -> CliResult<ConfigFile> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(e) => {
                return Err(CliError::new(Exit::NotLoggedIn, format!("cannot read {}: {e}", path.display()))
                    .hint("check the file's permissions, or set RATION_CONFIG_DIR"));
            }
        };
        warn_if_readable_by_others(&path);
        toml::from_str(&text).map_err(|e| {
            CliError::new(Exit::NotLoggedIn, format!("invalid configuration file {}: {}", path.display(), e.message()))
                .hint("fix the file, or delete it and run `ration login` again")
        })
    }

    /// Writes the file: directory 0700 when created, file 0600, replaced atomically.
    pub fn save(&self, config: &ConfigFile) -> CliResult<()> {
        let path = self.path();
        let fail = |what: &str, e: std::io::Error| {
            CliError::new(Exit::NotLoggedIn, format!("cannot {what} {}: {e}", path.display()))
                .hint("check the directory's permissions, or set RATION_CONFIG_DIR")
        };
        let text =
            toml::to_string(config).map_err(|e| CliError::new(Exit::Server, format!("cannot encode profiles: {e}")))?;
        create_private_dir(&self.dir).map_err(|e| fail("create the directory of", e))?;
        let tmp = self.dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let written = write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail("write", e));
        }
        Ok(())
    }

    /// Picks the profile: `--profile`, else `RATION_PROFILE`, else the file's `default_profile`,
    /// else `default`. Fails with exit 3 and the `ration login` command when it does not exist.
    pub fn profile(&self, requested: Option<&str>) -> CliResult<(String, Profile)> {
        let config = self.load()?;
        let name = resolve_name(requested, &config);
        match config.profiles.get(&name) {
            Some(p) => Ok((name, p.clone())),
            None => {
                let flag = if name == DEFAULT_PROFILE { String::new() } else { format!(" --profile {name}") };
                let message = if config.profiles.is_empty() {
                    format!("not logged in (no profiles in {})", self.path().display())
                } else {
                    let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
                    format!(
                        "not logged in: no profile {name:?} in {} (profiles: {})",
                        self.path().display(),
                        known.join(", ")
                    )
                };
                Err(CliError::new(Exit::NotLoggedIn, message).hint(format!(
                    "run `ration login{flag} --url <URL> --client-id <CLIENT_ID> --client-secret <CLIENT_SECRET>`"
                )))
            }
        }
    }

    /// Stores `profile` under `name` (re-reading the file first, so other profiles are kept).
    /// The first profile stored becomes the default.
    pub fn put_profile(&self, name: &str, profile: Profile) -> CliResult<()> {
        let mut config = self.load()?;
        config.profiles.insert(name.to_owned(), profile);
        if config.default_profile.as_ref().is_none_or(|d| !config.profiles.contains_key(d)) {
            config.default_profile = Some(name.to_owned());
        }
        self.save(&config)
    }
}

/// The profile name a command uses.
pub fn resolve_name(requested: Option<&str>, config: &ConfigFile) -> String {
    requested
        .map(str::to_owned)
        .or_else(|| env_nonempty("RATION_PROFILE"))
        .or_else(|| config.default_profile.clone())
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // A leftover file keeps its old mode; make sure it is private before the secret goes in.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!("warning: {} is accessible by other users; run `chmod 600 {}`", path.display(), path.display());
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            url: "http://127.0.0.1:8080".into(),
            issuer: "http://127.0.0.1:8080/".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            access_token: None,
            token_expires_at: None,
        }
    }

    #[test]
    fn round_trips_and_first_profile_is_default() {
        let dir = std::env::temp_dir().join(format!("ration-cli-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store { dir: dir.join("nested") };
        store.put_profile("prod", profile()).unwrap();
        store.put_profile("staging", profile()).unwrap();
        let config = store.load().unwrap();
        assert_eq!(config.default_profile.as_deref(), Some("prod"));
        assert_eq!(config.profiles.len(), 2);
        assert_eq!(config.profiles["staging"].audience(), "http://127.0.0.1:8080/api/v2/");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.path()), 0o600);
            assert_eq!(mode(&store.dir), 0o700);
        }
        let missing = store.profile(Some("nope")).err().unwrap();
        assert_eq!(missing.exit, Exit::NotLoggedIn);
        assert!(missing.hint.unwrap().contains("ration login --profile nope"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn profile_names_are_checked() {
        assert!(check_profile_name("prod-eu_1.a").is_ok());
        for bad in ["", "a b", "a/b", "é"] {
            assert!(check_profile_name(bad).is_err(), "{bad:?}");
        }
    }
}
