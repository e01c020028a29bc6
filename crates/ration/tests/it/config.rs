//! `ration serve` settings: flags, `RATION_*` variables, the TOML file, precedence, unknown keys.

use reqwest::Method;

use crate::harness::*;

async fn discovered_issuer(s: &TestServer) -> String {
    let r = s.get("/.well-known/openid-configuration").await;
    r.expect(200)["issuer"].as_str().expect("issuer").to_owned()
}

/// The issuer is really in use: the admin token's `iss` and audience follow it.
async fn assert_issuer_in_use(s: &TestServer, issuer: &str) {
    assert_eq!(discovered_issuer(s).await, issuer);
    let token = s.admin_token().await;
    let (_, claims) = s.verify(&token, &format!("{issuer}api/v2/")).await;
    assert_eq!(claims["iss"], issuer);
    s.mgmt(Method::GET, "/clients", None).await.expect(200);
}

#[tokio::test]
async fn config_file_sets_listen_issuer_and_data_dir() {
    let s = TestServer::builder()
        .no_listen_flag()
        .data_dir_via(DataDirVia::Nothing)
        .config("listen = \"127.0.0.1:0\"\nissuer = \"http://from-file.test/\"\ndata_dir = \"{data_dir}\"\n")
        .expect_issuer("http://from-file.test/")
        .start()
        .await;
    assert_issuer_in_use(&s, "http://from-file.test/").await;
    let entries = std::fs::read_dir(s.data_dir()).unwrap().count();
    assert!(entries > 0, "the store lives in the configured data_dir");
}

#[tokio::test]
async fn environment_variables_configure_serve() {
    let s = TestServer::builder()
        .no_listen_flag()
        .data_dir_via(DataDirVia::Env)
        .env("RATION_LISTEN", "127.0.0.1:0")
        .env("RATION_ISSUER", "http://from-env.test/")
        .expect_issuer("http://from-env.test/")
        .start()
        .await;
    assert_issuer_in_use(&s, "http://from-env.test/").await;
    assert!(std::fs::read_dir(s.data_dir()).unwrap().count() > 0, "the store lives in RATION_DATA_DIR");
}

#[tokio::test]
async fn issuer_without_trailing_slash_gets_one() {
    let s = TestServer::builder()
        .arg("--issuer")
        .arg("http://no-slash.test")
        .expect_issuer("http://no-slash.test/")
        .start()
        .await;
    assert_issuer_in_use(&s, "http://no-slash.test/").await;
}

#[tokio::test]
async fn precedence_is_flag_then_env_then_file() {
    let file = "issuer = \"http://from-file.test/\"\n";
    let s = TestServer::builder()
        .config(file)
        .env("RATION_ISSUER", "http://from-env.test/")
        .issuer("http://from-flag.test/")
        .start()
        .await;
    assert_issuer_in_use(&s, "http://from-flag.test/").await;
    drop(s);

    let s = TestServer::builder()
        .config(file)
        .env("RATION_ISSUER", "http://from-env.test/")
        .expect_issuer("http://from-env.test/")
        .start()
        .await;
    assert_issuer_in_use(&s, "http://from-env.test/").await;
}

#[tokio::test]
async fn unknown_config_key_is_rejected_and_named() {
    let (status, out) =
        TestServer::builder().config("listen = \"127.0.0.1:0\"\nbogus_setting_xyz = 1\n").start_expect_failure().await;
    assert!(!status.success(), "unknown key must fail the start");
    assert!(out.all().contains("bogus_setting_xyz"), "the error names the unknown key:\n{}", out.all());
}
