//! Helpers shared by the `map_*` tests: a small seeded random generator (each process of a
//! test draws its own reproducible sequence), self-checking values (a reader can tell a
//! value some writer wrote for this key from a torn or foreign one), and killing/reaping.
#![allow(dead_code)]

/// SplitMix64: a tiny, fast, well-mixed generator; enough for test schedules.
pub struct Rng(u64);

impl Rng {
    /// A generator for process `who` of a test run seeded `seed`.
    pub fn new(seed: u64, who: u64) -> Rng {
        Rng(seed ^ who.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The seed of a randomised test: `SHMSTATE_TEST_SEED` if set (to replay a failure), else
/// the clock. Printed, so a failing run names the seed that replays it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("SHMSTATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: SHMSTATE_TEST_SEED={seed}");
    seed
}

/// FNV-1a over `parts`, one after the other.
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    h
}

/// A self-checking value for `key`, `len` bytes long (`len >= 24`): the writer's id and a
/// sequence number (8 bytes each), a filler pattern derived from the key and the sequence
/// number, and a checksum of the key and everything before it (8 bytes). A torn value (the
/// head of one write and the tail of another), a value written for another key, or hostile
/// bytes fail [`check_value`].
pub fn make_value(key: &[u8], writer: u64, seq: u64, len: usize) -> Vec<u8> {
    assert!(len >= 24);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    let mut x = fnv(&[key, &seq.to_le_bytes()]);
    while v.len() < len - 8 {
        x = x.rotate_left(7).wrapping_add(0x9E37_79B9_7F4A_7C15);
        v.push(x as u8);
    }
    let sum = fnv(&[key, &v]);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// Whether `v` is a whole value that [`make_value`] made for `key`; `Some((writer, seq))`
/// if so.
pub fn check_value(key: &[u8], v: &[u8]) -> Option<(u64, u64)> {
    if v.len() < 24 {
        return None;
    }
    let (body, sum) = v.split_at(v.len() - 8);
    if fnv(&[key, body]).to_le_bytes() != sum {
        return None;
    }
    let writer = u64::from_le_bytes(body[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(body[8..16].try_into().unwrap());
    (make_value(key, writer, seq, v.len()) == v).then_some((writer, seq))
}

/// SIGKILLs `pid` and reaps it.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The value of an `incr` counter: 8 bytes, little-endian.
pub fn as_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(v.try_into().ok()?))
}
