//! The key hash: SipHash-2-4 keyed with the map's seed (see "Hashing" in the
//! [module docs](super)).

use core::hash::Hasher;

use siphasher::sip::SipHasher24;

use super::options::Geometry;

/// SipHash-2-4 of `key`'s bytes (nothing else: no length prefix), keyed with `seed`
/// (`k0` = `seed[0..8]`, `k1` = `seed[8..16]`, little-endian, as the reference
/// implementation reads its 16-byte key).
#[inline]
pub(crate) fn sip(seed: &[u8; 16], key: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_key(seed);
    h.write(key);
    h.finish()
}

/// Where a key lives: its stripe, its home slot in the stripe, and the 24-bit tag kept in
/// the slot's meta word to skip most key comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) stripe: usize,
    pub(crate) home: usize,
    pub(crate) tag: u32,
}

/// The place of a key with hash `h` in a map of geometry `g`: stripe = the low bits of `h`
/// (`h mod stripes`, a power of two), home = `(h >> 32) * slots_per_stripe >> 32`, tag =
/// bits 8..32 of `h`.
#[inline]
pub(crate) fn place(g: &Geometry, h: u64) -> Place {
    let stripe = (h as usize) & (g.stripes - 1);
    let home = (((h >> 32) * g.sps as u64) >> 32) as usize;
    let tag = ((h >> 8) & 0x00FF_FFFF) as u32;
    Place { stripe, home, tag }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SipHash-2-4 paper's test vector (key 00..0f, message 00..0e).
    #[test]
    fn siphash_2_4_matches_the_reference_vector() {
        let seed: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(sip(&seed, &msg), 0xa129_ca61_49be_45e5);
    }
}
