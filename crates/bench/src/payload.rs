//! The benchmark message body: who sent it, which one it is, and when it was due, padded to size.

/// Nanoseconds since the Unix epoch: comparable across the tool's processes on one machine.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A body `step:pair:seq:due_ns:` padded with `.` to `size` bytes (or longer if it must be).
pub fn encode(step: u32, pair: u32, seq: u64, due_ns: u64, size: usize) -> String {
    let mut s = format!("{step}:{pair}:{seq}:{due_ns}:");
    if s.len() < size {
        s.extend(std::iter::repeat_n('.', size - s.len()));
    }
    s
}

/// The fields of a body made by [`encode`].
pub fn decode(s: &str) -> Option<(u32, u32, u64, u64)> {
    let mut it = s.splitn(5, ':');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies_round_trip_at_the_requested_size() {
        let b = super::encode(2, 17, 99, 1_700_000_000_000_000_000, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(
            super::decode(&b),
            Some((2, 17, 99, 1_700_000_000_000_000_000))
        );
    }
}
