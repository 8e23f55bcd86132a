//! server.toml as the pinned upstream understands it, read strictly: an
//! unknown or mistyped key is an error that names the key and the file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use kanidm::audit::LogLevel;
use kanidm::config::Configuration;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub bindaddress: Option<String>,
    pub ldapbindaddress: Option<String>,
    pub db_path: String,
    pub tls_ca: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub log_level: Option<String>,
    #[serde(skip)]
    pub path: PathBuf,
}

impl ServerFile {
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {}", path.display(), e))?;
        let mut f: ServerFile = toml::from_str(&text)
            .map_err(|e| format!("invalid config {}: {}", path.display(), e))?;
        f.path = path.to_path_buf();
        if let Some(ll) = &f.log_level {
            LogLevel::from_str(ll).map_err(|_| {
                format!(
                    "invalid config {}: log_level = {:?} is not one of quiet, default, filter, verbose, perfbasic, perffull",
                    path.display(),
                    ll
                )
            })?;
        }
        // TLS is not optional for Kiwi ID: the wrapper pins this CA.
        for (key, v) in [("tls_ca", &f.tls_ca), ("tls_cert", &f.tls_cert), ("tls_key", &f.tls_key), ("db_path", &f.db_path)].iter() {
            if v.trim().is_empty() {
                return Err(format!("invalid config {}: {} must not be empty", path.display(), key));
            }
        }
        Ok(f)
    }

    pub fn bind(&self) -> String {
        self.bindaddress.clone().unwrap_or_else(|| "127.0.0.1:8443".to_string())
    }

    /// Relative paths in server.toml are relative to the file itself.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }

    pub fn log_level_filter(&self) -> log::LevelFilter {
        match self.log_level.as_deref().map(|s| s.to_lowercase()) {
            Some(ref s) if s == "quiet" => log::LevelFilter::Warn,
            Some(ref s) if s == "verbose" || s == "fulltrace" => log::LevelFilter::Debug,
            _ => log::LevelFilter::Info,
        }
    }

    pub fn to_upstream(&self) -> Configuration {
        let mut c = Configuration::new();
        let ll = self
            .log_level
            .as_ref()
            .map(|l| LogLevel::from_str(l).expect("validated in read") as u32);
        c.update_log_level(ll);
        c.update_db_path(&self.resolve(&self.db_path).to_string_lossy());
        let s = |p: &str| Some(self.resolve(p).to_string_lossy().into_owned());
        c.update_tls(&s(&self.tls_ca), &s(&self.tls_cert), &s(&self.tls_key));
        c.update_bind(&Some(self.bind()));
        c.update_ldapbind(&self.ldapbindaddress);
        c
    }
}
