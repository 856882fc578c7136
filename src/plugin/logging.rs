//! Logs as hclog JSON lines on stderr, which the Nomad agent re-logs with their levels.

use serde_json::{Map, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Writes one JSON object per event: `@level`, `@message`, `@module`, `@timestamp` (all strings;
/// anything else in those keys crashes the agent's log reader) plus the event's fields.
pub struct HclogLayer {
    module: &'static str,
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        let mut obj = Map::new();
        obj.insert(
            "@level".into(),
            Value::String(level(event.metadata().level()).into()),
        );
        obj.insert("@message".into(), Value::String(fields.message));
        obj.insert("@module".into(), Value::String(self.module.into()));
        obj.insert(
            "@timestamp".into(),
            Value::String(timestamp(SystemTime::now())),
        );
        for (k, v) in fields.rest {
            obj.entry(k).or_insert(v);
        }
        let mut line = serde_json::to_vec(&obj).unwrap_or_default();
        line.push(b'\n');
        // Once the agent is gone stderr is a broken pipe; logging must never panic or abort.
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

fn level(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

#[derive(Default)]
struct FieldMap {
    message: String,
    rest: Map<String, Value>,
}

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest.insert(field.name().into(), Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .insert(field.name().into(), Value::String(value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.insert(field.name().into(), value.into());
    }
}

/// hclog's layout `2006-01-02T15:04:05.000000Z07:00` in UTC: exactly six fractional digits.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Installs the hclog layer for `module`. Our own events pass at debug and above (trace with
/// `NOMAD_POT_DRIVER_TRACE=1`), the libraries' only at warn and above.
pub fn init(module: &'static str) {
    let ours = if std::env::var_os("NOMAD_POT_DRIVER_TRACE").is_some() {
        Level::TRACE
    } else {
        Level::DEBUG
    };
    let filter = tracing_subscriber::filter::filter_fn(move |meta| {
        let own = meta.target().starts_with(env!("CARGO_CRATE_NAME"));
        *meta.level() <= if own { ours } else { Level::WARN }
    });
    let subscriber = tracing_subscriber::registry().with(HclogLayer { module }.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_use_hclogs_layout() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_398_594_123_456);
        assert_eq!(timestamp(t), "2025-11-29T06:43:14.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
