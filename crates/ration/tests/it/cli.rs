//! Issue 8, part 1: the operator CLI. Every test runs the real `ration` binary as a subprocess,
//! with `RATION_CONFIG_DIR` in a temporary directory, against a real server started by the
//! harness: each command's success (stdout, and `--json` parsed) and a wrong-input case (exit code
//! and error text).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::quota::{OFFSET_ENV, offset_for};

const API: &str = "https://cli.example.com/billing";

/// What one CLI run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The CLI with its own configuration directory.
struct Cli {
    _root: tempfile::TempDir,
    config_dir: PathBuf,
}

impl Cli {
    fn new() -> Cli {
        let root = tempfile::tempdir().expect("temp dir");
        // Not created yet: the CLI must create it (0700).
        let config_dir = root.path().join("conf");
        Cli { _root: root, config_dir }
    }

    fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("RATION_") || k.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RATION_CONFIG_DIR", &self.config_dir).args(args).stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run ration");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs, asserts exit 0, returns stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "ration {args:?} failed: {r:?}");
        r.stdout
    }

    /// Runs with `--json`, asserts exit 0, parses stdout.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ration {all:?} printed no JSON ({e}): {out}"))
    }

    /// Runs, asserts the exit code and that stderr names `needle`; returns stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        let r = self.run(args);
        assert_eq!(r.code, code, "exit code of ration {args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "stderr of ration {args:?} lacks {needle:?}: {}", r.stderr);
        r.stderr
    }

    /// `ration login` with the server's admin client.
    #[track_caller]
    fn login(&self, s: &TestServer) {
        let (id, secret) = s.admin_credentials();
        self.ok(&["login", "--url", s.base_url(), "--client-id", &id, "--client-secret", &secret]);
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn cli_login_profiles_and_token_cache() {
    let s = TestServer::start().await;
    let cli = Cli::new();
    let (id, secret) = s.admin_credentials();

    // Not logged in: exit 3 and the login command to run.
    let err = cli.fails(&["apps", "list"], 3, "not logged in");
    assert!(err.contains("ration login --url"), "{err}");

    // Wrong secret: exit 4, nothing stored.
    let err = cli.fails(
        &["login", "--url", s.base_url(), "--client-id", &id, "--client-secret", "wrong-secret"],
        4,
        "authentication failed",
    );
    assert!(err.contains("access_denied") && err.contains("--client-secret"), "{err}");
    assert!(!cli.config_file().exists(), "a failed login stores nothing");
    // No server there: exit 7.
    cli.fails(
        &["login", "--url", "http://127.0.0.1:9", "--client-id", &id, "--client-secret", &secret],
        7,
        "cannot reach",
    );
    // Not a URL: usage error.
    cli.fails(&["login", "--url", "ftp://x", "--client-id", &id, "--client-secret", &secret], 2, "--url");

    // Success: profile stored privately, secrets not printed.
    let r = cli.run(&["login", "--url", s.base_url(), "--client-id", &id, "--client-secret", &secret]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("Logged in to {} as {id}", s.base_url())), "{}", r.stdout);
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret), "login printed the secret");
    #[cfg(unix)]
    {
        assert_eq!(mode(&cli.config_file()), 0o600, "config file mode");
        assert_eq!(mode(&cli.config_dir), 0o700, "config dir mode");
    }
    let config = std::fs::read_to_string(cli.config_file()).unwrap();
    assert!(config.contains("default_profile = \"default\""), "{config}");
    assert!(config.contains(&format!("issuer = \"{}\"", s.issuer())), "{config}");

    // A second profile with --json; the first stays the default.
    let v = cli.json(&[
        "login",
        "--profile",
        "second",
        "--url",
        s.base_url(),
        "--client-id",
        &id,
        "--client-secret",
        &secret,
    ]);
    assert_eq!((str_of(&v, "profile"), str_of(&v, "issuer")), ("second", s.issuer()));
    assert!(v.get("client_secret").is_none() && !v.to_string().contains(&secret), "{v}");
    assert!(cli.ok(&["--profile", "second", "apps", "list"]).contains(&id));
    let err = cli.fails(&["--profile", "third", "apps", "list"], 3, "no profile \"third\"");
    assert!(err.contains("ration login --profile third"), "{err}");
    cli.fails(&["--profile", "bad name", "apps", "list"], 2, "invalid profile name");

    // A cached token the server no longer accepts is replaced (401 → new token → retry).
    let config = std::fs::read_to_string(cli.config_file()).unwrap();
    let cached = config
        .lines()
        .find_map(|l| l.strip_prefix("access_token = \"").map(|t| t.trim_end_matches('"').to_owned()))
        .expect("cached token");
    std::fs::write(cli.config_file(), config.replace(&cached, "not-a-token")).unwrap();
    assert!(cli.ok(&["apps", "list"]).contains(&id));
    let config = std::fs::read_to_string(cli.config_file()).unwrap();
    assert!(!config.contains("not-a-token"), "the refreshed token is cached");
    #[cfg(unix)]
    assert_eq!(mode(&cli.config_file()), 0o600, "mode kept on rewrite");

    // A broken file: exit 3, naming the file.
    std::fs::write(cli.config_file(), "profiles = 3\n").unwrap();
    cli.fails(&["apps", "list"], 3, "invalid configuration file");

    // `serve` does not take the CLI's flags.
    let r = cli.run(&["serve", "--json"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[tokio::test]
async fn cli_apps() {
    let s = TestServer::start().await;
    s.create_api(API, json!({ "scopes": [{ "value": "read:invoices" }] })).await;
    let cli = Cli::new();
    cli.login(&s);
    let (admin, _) = s.admin_credentials();

    // list
    let out = cli.ok(&["apps", "list"]);
    let header = out.lines().next().unwrap_or_default();
    assert!(header.starts_with("CLIENT ID") && header.contains("STATUS"), "{out}");
    assert!(out.lines().any(|l| l.starts_with(&admin) && l.contains("active")), "{out}");
    let list = cli.json(&["apps", "list"]);
    assert!(list.as_array().unwrap().iter().any(|c| c["client_id"] == admin.as_str()), "{list}");

    // create: the secret is printed, once.
    let out = cli.ok(&["apps", "create", "--name", "Nightly billing", "--metadata", "team=billing"]);
    assert!(out.contains("Nightly billing") && out.contains("team=billing"), "{out}");
    let secret_line = out.lines().find(|l| l.starts_with("client_secret")).unwrap_or_else(|| panic!("{out}"));
    assert!(secret_line.split_whitespace().nth(1).is_some_and(|s| s.len() >= 32), "{out}");
    let created = cli.json(&[
        "apps",
        "create",
        "--name",
        "Other job",
        "--grant-types",
        "client_credentials,refresh_token",
        "--description",
        "d1",
    ]);
    let app = str_of(&created, "client_id").to_owned();
    let secret = str_of(&created, "client_secret").to_owned();
    assert_eq!(created["grant_types"], json!(["client_credentials", "refresh_token"]));
    cli.fails(&["apps", "create", "--name", "<script>"], 6, "'name'");
    cli.fails(&["apps", "create", "--name", "x", "--metadata", "novalue"], 2, "KEY=VALUE");

    // show / update
    let out = cli.ok(&["apps", "show", &app]);
    assert!(out.contains("Other job") && out.contains("d1") && out.contains("status"), "{out}");
    assert!(!out.contains(&secret), "show never prints the secret");
    let err = cli.fails(&["apps", "show", "no-such-app"], 5, "The client does not exist");
    assert!(err.contains("ration apps list"), "{err}");
    let v = cli.json(&["apps", "update", &app, "--description", "d2", "--name", "Renamed"]);
    assert_eq!((str_of(&v, "name"), str_of(&v, "description")), ("Renamed", "d2"));
    cli.fails(&["apps", "update", &app], 2, "nothing to update");
    cli.fails(&["apps", "update", &app, "--description", &"x".repeat(141)], 6, "'description'");

    // rotate-secret: the new secret works, the old one no longer.
    s.create_grant(&app, API, &["read:invoices"]).await;
    let rotated = cli.json(&["apps", "rotate-secret", &app]);
    let new_secret = str_of(&rotated, "client_secret").to_owned();
    assert_ne!(new_secret, secret);
    cli.fails(&["token", "--app", &app, "--secret", &secret, "--audience", API], 4, "access_denied");
    cli.ok(&["token", "--app", &app, "--secret", &new_secret, "--audience", API]);
    cli.fails(&["apps", "rotate-secret", "no-such-app"], 5, "The client does not exist");

    // pause / resume keep other grant types.
    let out = cli.ok(&["apps", "pause", &app]);
    assert!(out.contains("paused application"), "{out}");
    assert_eq!(cli.json(&["apps", "show", &app])["grant_types"], json!(["refresh_token"]));
    assert!(cli.ok(&["apps", "list"]).lines().any(|l| l.starts_with(&app) && l.contains("paused")));
    cli.fails(&["token", "--app", &app, "--secret", &new_secret, "--audience", API], 4, "unauthorized_client");
    let out = cli.ok(&["apps", "resume", &app]);
    assert!(out.contains("resumed application"), "{out}");
    assert_eq!(cli.json(&["apps", "show", &app])["grant_types"], json!(["refresh_token", "client_credentials"]));
    cli.ok(&["token", "--app", &app, "--secret", &new_secret, "--audience", API]);
    cli.fails(&["apps", "pause", &admin], 6, "lock this profile out");
    cli.fails(&["apps", "pause", "no-such-app"], 5, "The client does not exist");
    cli.fails(&["apps", "resume", "no-such-app"], 5, "The client does not exist");

    // delete
    assert!(cli.ok(&["apps", "delete", &app]).contains(&format!("deleted application {app}")));
    cli.fails(&["apps", "show", &app], 5, "The client does not exist");
    cli.fails(&["apps", "delete", &app], 5, "The client does not exist");
}

#[tokio::test]
async fn cli_apis_grants_and_orgs() {
    let s = TestServer::start().await;
    let cli = Cli::new();
    cli.login(&s);

    // apis
    let out = cli.ok(&[
        "apis",
        "create",
        "--identifier",
        API,
        "--scopes",
        "read:invoices,write:invoices",
        "--token-lifetime",
        "600",
    ]);
    assert!(out.contains(API) && out.contains("read:invoices,write:invoices") && out.contains("600s"), "{out}");
    let api_id = cli.json(&["apis", "show", API])["id"].as_str().expect("id").to_owned();
    let out = cli.ok(&["apis", "list"]);
    assert!(out.starts_with("ID") && out.lines().any(|l| l.starts_with(&api_id) && l.contains(API)), "{out}");
    assert_eq!(cli.json(&["apis", "list"]).as_array().map(Vec::len), Some(2), "the Management API and ours");
    let v = cli.json(&["apis", "update", &api_id, "--token-lifetime", "1200", "--name", "Billing"]);
    assert_eq!((v["token_lifetime"].as_u64(), str_of(&v, "name")), (Some(1200), "Billing"));
    cli.fails(
        &["apis", "create", "--identifier", "https://x.example.com", "--signing-alg", "none"],
        6,
        "'signing_alg'",
    );
    cli.fails(&["apis", "create", "--identifier", API], 6, "already exists");
    cli.fails(&["apis", "show", "https://nope.example.com"], 5, "ration apis list");
    cli.fails(&["apis", "update", &api_id], 2, "nothing to update");
    // HS256 keys are never printed.
    let hs = cli.json(&["apis", "create", "--identifier", "https://hs.example.com", "--signing-alg", "HS256"]);
    assert_eq!(hs["signing_secret"], "[REDACTED]", "{hs}");
    let out = cli.ok(&["apis", "show", "https://hs.example.com"]);
    assert!(out.contains("set (not shown)"), "{out}");
    assert!(cli.ok(&["apis", "delete", "https://hs.example.com"]).contains("deleted API"));
    cli.fails(&["apis", "delete", "https://hs.example.com"], 5, "does not exist");

    // grants
    let (app, _) = s.create_client(&unique("app-"), json!({})).await;
    let out = cli.ok(&[
        "grants",
        "create",
        "--app",
        &app,
        "--api",
        API,
        "--scopes",
        "read:invoices",
        "--organization-usage",
        "allow",
    ]);
    assert!(out.contains(&app) && out.contains("read:invoices") && out.contains("allow"), "{out}");
    let grants = cli.json(&["grants", "list", "--app", &app]);
    let grant = grants[0]["id"].as_str().expect("grant id").to_owned();
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
    let out = cli.ok(&["grants", "list", "--api", API]);
    assert!(out.starts_with("ID") && out.lines().any(|l| l.starts_with(&grant) && l.contains(&app)), "{out}");
    cli.fails(
        &["grants", "create", "--app", &app, "--api", API, "--scopes", "delete:everything"],
        6,
        "delete:everything",
    );
    cli.fails(&["grants", "create", "--app", "no-such-app", "--api", API], 5, "Client not found");
    let v = cli.json(&["grants", "update", &grant, "--scopes", "read:invoices,write:invoices"]);
    assert_eq!(v["scope"], json!(["read:invoices", "write:invoices"]));
    cli.fails(&["grants", "update", &grant, "--organization-usage", "sometimes"], 6, "'organization_usage'");
    cli.fails(&["grants", "update", "cgr_nope", "--scopes", ""], 5, "ration grants list");

    // orgs
    let out = cli.ok(&["orgs", "create", "--name", "acme", "--display-name", "Acme Inc"]);
    assert!(out.contains("acme") && out.contains("Acme Inc"), "{out}");
    cli.fails(&["orgs", "create", "--name", "Not Valid"], 6, "'name'");
    cli.fails(&["orgs", "create", "--name", "acme"], 6, "already exists");
    let orgs = cli.json(&["orgs", "list"]);
    let org = orgs[0]["id"].as_str().expect("org id").to_owned();
    assert!(cli.ok(&["orgs", "list"]).lines().any(|l| l.starts_with(&org) && l.contains("Acme Inc")));
    let v = cli.json(&["orgs", "update", &org, "--display-name", "Acme 2"]);
    assert_eq!(v["display_name"], "Acme 2");
    assert!(cli.ok(&["orgs", "add-grant", &org, "--grant", &grant]).contains("added grant"));
    cli.fails(&["orgs", "add-grant", &org, "--grant", &grant], 6, "already been added");
    let out = cli.ok(&["orgs", "show", &org]);
    assert!(out.contains("Acme 2") && out.lines().any(|l| l.starts_with(&grant)), "{out}");
    assert_eq!(cli.json(&["orgs", "show", &org])["client_grants"][0]["id"], grant.as_str());
    assert!(cli.ok(&["orgs", "remove-grant", &org, "--grant", &grant]).contains("removed grant"));
    cli.fails(&["orgs", "remove-grant", &org, "--grant", &grant], 5, "not associated");
    cli.fails(&["orgs", "show", "org_nope"], 5, "ration orgs list");
    assert!(cli.ok(&["orgs", "delete", &org]).contains("deleted organization"));
    cli.fails(&["orgs", "delete", &org], 5, "No organization found");

    assert!(cli.ok(&["grants", "delete", &grant]).contains("deleted grant"));
    cli.fails(&["grants", "delete", &grant], 5, "does not exist");
    assert!(cli.ok(&["apis", "delete", API]).contains("deleted API"));
}

#[tokio::test]
async fn cli_token_quota_and_logs() {
    // The server's clock at 10:00:05 UTC: far from any window roll-over.
    let s = TestServer::builder().env(OFFSET_ENV, &offset_for(10 * 3_600_000 + 5_000).to_string()).start().await;
    let (app, secret) = s.m2m_setup(API, &["read:invoices", "write:invoices"], &["read:invoices"]).await;
    let cli = Cli::new();
    let token_args = ["token", "--app", &app, "--secret", &secret, "--audience", API];

    // token works without a profile (--url), and needs one or --url otherwise.
    let mut with_url = token_args.to_vec();
    with_url.extend(["--url", s.base_url()]);
    let v = cli.json(&with_url);
    assert_eq!((str_of(&v, "token_type"), str_of(&v, "scope")), ("Bearer", "read:invoices"));
    cli.fails(&token_args, 3, "--url");
    cli.login(&s);

    // quota set: merged into the current quota; a bad value names the field.
    let out = cli.ok(&["quota", "set", "--app", &app, "--per-hour", "10", "--per-day", "100"]);
    assert!(out.contains("10/h 100/d"), "{out}");
    let v = cli.json(&["quota", "set", "--app", &app, "--enforce", "true"]);
    assert_eq!(v["token_quota"], json!({"client_credentials": {"enforce": true, "per_hour": 10, "per_day": 100}}));
    cli.fails(&["quota", "set", "--app", &app, "--per-hour", "0"], 6, "'token_quota.client_credentials.per_hour'");
    cli.fails(&["quota", "set", "--app", &app, "--per-hour", "ten"], 2, "--per-hour");
    cli.fails(&["quota", "set", "--app", &app], 2, "nothing to set");
    cli.fails(&["quota", "set", "--app", &app, "--clear", "--per-day", "3"], 2, "--clear");
    cli.fails(&["quota", "set", "--app", "no-such-app", "--per-day", "3"], 5, "ration apps list");

    // token: one already counted (before the quota existed, so not in these counts); two more.
    let out = cli.ok(&token_args);
    assert!(out.contains("access_token") && out.contains("per_hour 9 of 10 left"), "{out}");
    let decoded = cli.json(&[&token_args[..], &["--decode"]].concat());
    assert_eq!(decoded["claims"]["sub"], format!("{app}@clients"));
    assert_eq!(decoded["claims"]["aud"], API);
    let out = cli.ok(&[&token_args[..], &["--decode", "--scope", "read:invoices"]].concat());
    assert!(out.contains("claims:") && out.contains("\"gty\": \"client-credentials\""), "{out}");
    cli.fails(&["token", "--app", &app, "--secret", "wrong", "--audience", API], 4, "access_denied");
    cli.fails(&[&token_args[..], &["--scope", "write:invoices"]].concat(), 4, "write:invoices");

    // quota show: bars with the right numbers.
    let out = cli.ok(&["quota", "show", "--app", &app]);
    assert!(out.contains("own quota, enforced"), "{out}");
    assert!(out.contains("per_hour  [███░░░░░░░] 3/10   resets in "), "{out}");
    assert!(out.contains("per_day   [█░░░░░░░░░] 3/100  resets in "), "{out}");
    let v = cli.json(&["quota", "show", "--app", &app]);
    let used: Vec<(String, u64)> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (str_of(b, "bucket").to_owned(), b["used"].as_u64().unwrap()))
        .collect();
    assert_eq!(used, vec![("per_hour".to_owned(), 3), ("per_day".to_owned(), 3)]);
    cli.fails(&["quota", "show", "--app", "no-such-app"], 5, "The client does not exist");
    cli.fails(&["quota", "show"], 2, "--app");

    // An exhausted quota: exit 8.
    cli.ok(&["quota", "set", "--app", &app, "--per-day", "4"]);
    cli.ok(&token_args);
    let err = cli.fails(&token_args, 8, "too_many_requests");
    assert!(err.contains("ration quota show --app"), "{err}");
    assert!(cli.ok(&["quota", "show", "--app", &app]).contains("per_day   [██████████] 4/4"));
    let out = cli.ok(&["quota", "set", "--app", &app, "--clear"]);
    assert!(out.contains("removed the quota"), "{out}");
    assert!(cli.ok(&["quota", "show", "--app", &app]).contains("has no quota"));

    // Organizations and tenant defaults.
    let org = cli.json(&["orgs", "create", "--name", "acme"])["id"].as_str().expect("org id").to_owned();
    cli.ok(&["quota", "set", "--org", &org, "--per-minute", "50"]);
    let out = cli.ok(&["quota", "show", "--org", &org]);
    assert!(
        out.contains(&format!("organization {org}: own quota")) && out.contains("per_minute  [░░░░░░░░░░] 0/50"),
        "{out}"
    );
    cli.fails(&["quota", "show", "--org", "org_nope"], 5, "ration orgs list");
    let out = cli.ok(&["quota", "set", "--tenant-default", "clients", "--per-day", "1000", "--enforce", "false"]);
    assert!(out.contains("tenant default for clients: 1000/d (not enforced)"), "{out}");
    cli.ok(&["quota", "set", "--tenant-default", "organizations", "--per-hour", "7"]);
    let v = cli.json(&["quota", "show", "--tenant-default", "clients"]);
    assert_eq!(v["clients"], json!({"client_credentials": {"enforce": false, "per_day": 1000}}));
    let out = cli.ok(&["quota", "show", "--app", &app]);
    assert!(out.contains("tenant default quota, not enforced") && out.contains("4/1000"), "{out}");
    cli.ok(&["quota", "set", "--tenant-default", "clients", "--clear"]);
    let v = cli.json(&["quota", "show", "--tenant-default", "organizations"]);
    assert_eq!(v["organizations"]["client_credentials"]["per_hour"], 7, "the other default is kept: {v}");
    cli.fails(&["quota", "set", "--tenant-default", "users", "--per-day", "1"], 2, "users");

    // logs tail: the seccft of the tokens just issued, oldest first.
    let out = cli.ok(&["logs", "tail", "--type", "seccft", "--client", &app, "-n", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.contains("seccft") && l.contains(&app) && l.contains(API)), "{out}");
    let out = cli.ok(&["logs", "tail", "--type", "seccft", "--client", &app, "--json"]);
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON event per line")).collect();
    assert_eq!(events.len(), 5, "five tokens issued: {out}");
    assert!(events.windows(2).all(|w| str_of(&w[0], "log_id") < str_of(&w[1], "log_id")), "oldest first");
    assert!(cli.ok(&["logs", "tail", "--type", "feccft", "-n", "1"]).contains("feccft"));
    cli.fails(&["logs", "tail", "-n", "500"], 2, "500");

    // --follow prints a token issued after it started, then stops on Ctrl-C with exit 0.
    let mut child = cli
        .command(&["logs", "tail", "--follow", "--type", "seccft", "--client", &app, "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs tail --follow");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the last event first");
    assert!(first.contains("seccft"), "{first}");
    let before = s.token(&app, &secret, API, None).await;
    let jti = raw_claims(before["access_token"].as_str().unwrap())["jti"].as_str().unwrap().to_owned();
    let next = rx.recv_timeout(Duration::from_secs(10)).expect("the new event while following");
    assert!(next.contains("seccft") && next.contains(&app), "{next}");
    assert!(rx.try_recv().is_err(), "one new event only");
    let st = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().expect("kill -INT");
    assert!(st.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends the tail normally");
    let last = cli.json(&["logs", "tail", "--type", "seccft", "-n", "1"]);
    assert_eq!(last["details"]["access_token_jti"], jti.as_str());
}
