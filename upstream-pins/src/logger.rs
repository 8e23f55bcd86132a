//! Upstream logs through the `log` facade. This logger writes one line per
//! record to stderr (the wrapper turns it into JSON) and remembers whether an
//! error was logged, because some upstream failures only log and return.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static SAW_ERROR: AtomicBool = AtomicBool::new(false);

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if r.level() == log::Level::Error {
            SAW_ERROR.store(true, Ordering::SeqCst);
        }
        if self.enabled(r.metadata()) {
            let _ = writeln!(std::io::stderr(), "{} {}: {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

pub fn install(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

pub fn saw_error() -> bool {
    SAW_ERROR.load(Ordering::SeqCst)
}
