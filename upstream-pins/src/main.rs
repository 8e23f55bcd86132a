//! `kanidmd` for Kiwi ID: the pinned, unmodified Kanidm server library
//! (crate `kanidm`) behind a small command line that the wrapper can drive
//! non-interactively.
//!
//! Everything identity-related (database, schema, authentication, accounts,
//! groups, the HTTPS API) is upstream code called through its public API.
//! This file only parses arguments, reads the server.toml, generates local
//! TLS material and reports results as JSON.

mod certs;
mod config;
mod health;
mod logger;

use std::path::PathBuf;
use std::process::exit;

use kanidm::config::Configuration;
use kanidm::core::{create_server_core, recover_account_core};
use rand::distributions::Alphanumeric;
use rand::Rng;

const UPSTREAM_NAME: &str = "kanidm";
const UPSTREAM_VERSION: &str = "1.1.0-alpha";

const USAGE: &str = "usage:
  kanidmd server -c FILE                 run the Kanidm server
  kanidmd cert-generate -c FILE          create the CA, cert and key named in FILE (never overwrites)
  kanidmd recover-account NAME -c FILE   set a new random password, print it as JSON
  kanidmd healthcheck -c FILE            GET /status over TLS (CA pinned); exit 0 when it answers true
  kanidmd version                        print versions as JSON";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args.first() {
        Some(c) => c.as_str(),
        None => usage_exit(),
    };
    match cmd {
        "version" | "--version" | "-V" => {
            println!(
                "{}",
                serde_json::json!({
                    "upstream": UPSTREAM_NAME,
                    "upstream_version": UPSTREAM_VERSION,
                    "launcher_version": env!("CARGO_PKG_VERSION"),
                })
            );
        }
        "server" => {
            let path = config_arg(&args[1..]);
            run_server(load(&path));
        }
        "cert-generate" => {
            let path = config_arg(&args[1..]);
            let file = load_file(&path);
            match certs::generate(&file) {
                Ok(created) => println!("{}", serde_json::json!({ "created": created })),
                Err(e) => fail(&format!("cert-generate: {}", e)),
            }
        }
        "recover-account" => {
            let name = match args.get(1) {
                Some(n) if !n.starts_with('-') => n.clone(),
                _ => fail("recover-account: missing account NAME"),
            };
            let path = config_arg(&args[2..]);
            recover(load(&path), name);
        }
        "healthcheck" => {
            let path = config_arg(&args[1..]);
            let file = load_file(&path);
            match health::check(&file) {
                Ok(()) => println!("{}", serde_json::json!({ "status": true })),
                Err(e) => {
                    println!("{}", serde_json::json!({ "status": false, "error": e }));
                    exit(1);
                }
            }
        }
        "-h" | "--help" | "help" => println!("{}", USAGE),
        other => fail(&format!("unknown command '{}'\n{}", other, USAGE)),
    }
}

fn usage_exit() -> ! {
    eprintln!("{}", USAGE);
    exit(2)
}

fn fail(msg: &str) -> ! {
    eprintln!("kanidmd: {}", msg);
    exit(2)
}

/// `-c FILE` / `--config FILE` is the only option every subcommand takes.
fn config_arg(rest: &[String]) -> PathBuf {
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => match it.next() {
                Some(p) => return PathBuf::from(p),
                None => fail("-c needs a FILE"),
            },
            other => fail(&format!("unexpected argument '{}'", other)),
        }
    }
    fail("missing -c FILE")
}

fn load_file(path: &PathBuf) -> config::ServerFile {
    config::ServerFile::read(path).unwrap_or_else(|e| fail(&e))
}

fn load(path: &PathBuf) -> Configuration {
    let file = load_file(path);
    logger::install(file.log_level_filter());
    file.to_upstream()
}

fn run_server(cfg: Configuration) {
    let mut sys = actix_rt::System::new("kanidmd");
    sys.block_on(async move {
        let ctx = match create_server_core(cfg).await {
            Ok(ctx) => ctx,
            Err(()) => {
                eprintln!("kanidmd: failed to start server core");
                exit(1);
            }
        };
        // Upstream only listens for Ctrl-C; supervisors send SIGTERM.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("kanidmd: shutdown requested");
        ctx.stop();
    });
}

fn recover(cfg: Configuration, name: String) {
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .collect();
    // Upstream exits non-zero on most failures but only logs some (e.g. a
    // database it cannot open); the logger remembers any error it saw.
    recover_account_core(cfg, name.clone(), password.clone());
    if logger::saw_error() {
        fail(&format!("recover-account {}: upstream reported an error (see above)", name));
    }
    println!("{}", serde_json::json!({ "name": name, "password": password }));
}
