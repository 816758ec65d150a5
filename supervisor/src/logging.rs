//! paddockd's log: stderr, as lines a person or journald reads. Under systemd (which sets
//! `JOURNAL_STREAM`) each line starts with its syslog priority (`<3>` for errors, `<4>`
//! warnings, `<6>` info, `<7>` debug), which journald turns into the entry's priority, and
//! carries no timestamp (the journal adds its own). The filter can change at run time
//! (SIGHUP reloads `log` from the configuration), unless `RUST_LOG` sets it.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the log filter while paddockd runs.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogControl {
    /// Sets the filter from the configuration's `log` (default `info`), unless `RUST_LOG`
    /// decided it.
    pub fn set_filter(&self, filter: Option<&str>) {
        if self.from_env {
            return;
        }
        if let Ok(f) = EnvFilter::try_new(filter.unwrap_or("info")) {
            let _ = self.handle.reload(f);
        }
    }
}

/// Installs the logger; `default` is the configuration's filter.
pub fn init(default: Option<&str>) -> LogControl {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::try_new(default.unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info")));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    if journald {
        tracing_subscriber::registry().with(filter).with(layer.event_format(Journald)).init();
    } else {
        tracing_subscriber::registry().with(filter).with(layer).init();
    }
    LogControl { handle, from_env }
}

/// `<priority>message key=value...`, for journald.
struct Journald;

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
