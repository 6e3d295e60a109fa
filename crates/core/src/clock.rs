//! The wall clock as records name it, and run ids.

/// A new run id: UTC time, a label (the step name, `pipeline`, `repair`)
/// and random bits, so ids sort by time and two runners never collide.
pub fn new_run_id(label: &str) -> String {
    let now = time::OffsetDateTime::now_utc();
    // Microseconds, so that ids (and record file names) sort by start time.
    let fmt = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
    );
    format!(
        "{}-{label}-{:08x}",
        now.format(&fmt).unwrap_or_default(),
        rand::random::<u32>()
    )
}

/// The current time in RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_do_not_collide() {
        let a = new_run_id("step");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_run_id("step");
        assert!(a < b, "{a} then {b}");
        assert!(a.contains("-step-"));
        assert_ne!(new_run_id("x"), new_run_id("x"));
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
    }
}
