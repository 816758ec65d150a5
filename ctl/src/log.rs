//! runc's `--log FILE --log-format text|json`: errors (and with `--debug`, what ctl does) are
//! appended to the file in the form the callers parse. containerd's shim and podman's conmon
//! read the last `msg` of the JSON form to explain a failed call.

use std::io::Write;
use std::path::PathBuf;

use super::LogFormat;

/// Where ctl's log lines go (nowhere without `--log`).
pub struct Log {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Log {
    /// A log into `file`, in `format`; `debug` adds the debug lines.
    pub fn new(file: Option<PathBuf>, format: LogFormat, debug: bool) -> Self {
        // The file exists after every call, as runc's: containerd's shim reads it even after a
        // success, and a missing file garbles the error it reports.
        if let Some(path) = &file {
            let _ = std::fs::OpenOptions::new().create(true).append(true).open(path);
        }
        Self { file, format, debug }
    }

    /// Logs an error.
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    /// Logs what ctl does (with `--debug` only).
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let line = format_line(self.format, level, msg, std::time::SystemTime::now());
        // A log that cannot be written must not turn into a second failure.
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// One line of the log, newline included.
fn format_line(format: LogFormat, level: &str, msg: &str, at: std::time::SystemTime) -> String {
    let time = humantime::format_rfc3339_nanos(at).to_string();
    match format {
        LogFormat::Json => {
            format!("{}\n", serde_json::json!({ "level": level, "msg": msg, "time": time }))
        }
        LogFormat::Text => {
            format!("time={} level={level} msg={}\n", serde_json::json!(time), serde_json::json!(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_msg_and_time() {
        let line = format_line(LogFormat::Json, "error", "container \"x\" does not exist", std::time::UNIX_EPOCH);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn text_lines_quote_the_message() {
        let line = format_line(LogFormat::Text, "error", "a \"b\"", std::time::UNIX_EPOCH);
        assert_eq!(line, "time=\"1970-01-01T00:00:00.000000000Z\" level=error msg=\"a \\\"b\\\"\"\n");
    }
}
