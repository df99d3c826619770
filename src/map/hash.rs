//! The key hash: SipHash-1-3 keyed with the map's seed (see "Hashing" in the
//! [module docs](super)).

use super::layout::tail_word;
use super::options::Geometry;

/// SipHash-2-4 of `key`'s bytes (nothing else: no length prefix), keyed with `seed`
/// (`k0` = `seed[0..8]`, `k1` = `seed[8..16]`, little-endian, as the reference
/// implementation reads its 16-byte key).
#[inline]
#[cfg_attr(loom, allow(dead_code))] // the boot hash and test hooks: not under loom
pub(crate) fn sip(seed: &[u8; 16], key: &[u8]) -> u64 {
    sip_keys::<2, 4>(seed_keys(seed), key)
}

/// The seed's two little-endian words (`k0` = bytes 0..8, `k1` = 8..16), as SipHash reads
/// its 16-byte key.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn seed_keys(seed: &[u8; 16]) -> [u64; 2] {
    [
        u64::from_le_bytes(core::array::from_fn(|i| seed[i])),
        u64::from_le_bytes(core::array::from_fn(|i| seed[8 + i])),
    ]
}

/// The hash of `key` in a map of geometry `g`: SipHash-1-3 keyed with its seed.
#[inline(always)]
pub(crate) fn key_hash(g: &Geometry, key: &[u8]) -> u64 {
    sip_keys::<1, 3>(g.seed, key)
}

/// SipHash-`C`-`D` (`C` rounds per message word, `D` finalization rounds) of `key`, keyed
/// with the seed as its two little-endian words (`k0`, `k1`), in one
/// pass over the whole key (the streaming `siphasher` computes the same, checked by the
/// tests below, but buffers each write, which costs a lookup of a short key more than
/// the rounds do).
#[inline]
pub(crate) fn sip_keys<const C: usize, const D: usize>(keys: [u64; 2], key: &[u8]) -> u64 {
    let [k0, k1] = keys;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut rest = key;
    while let Some((c, r)) = rest.split_first_chunk::<8>() {
        let m = u64::from_le_bytes(*c);
        v[3] ^= m;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= m;
        rest = r;
    }
    let last = (key.len() as u64) << 56 | tail_word(rest);
    v[3] ^= last;
    for _ in 0..C {
        round(&mut v);
    }
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// One SipRound.
#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
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
/// bits 26..50 of `h` (above the stripe bits, at most 26, so the tag
/// tells apart keys of one stripe in every map).
#[inline]
pub(crate) fn place(g: &Geometry, h: u64) -> Place {
    let stripe = (h as usize) & (g.stripes - 1);
    let home = (((h >> 32) * g.sps as u64) >> 32) as usize;
    let tag = ((h >> 26) & 0x00FF_FFFF) as u32;
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

    /// In the map with the most stripes, a hash bit that selects no stripe and no home
    /// still changes the tag: keys of one stripe and home are told apart by 24 bits.
    #[test]
    fn the_tag_is_clear_of_the_stripe_bits() {
        let g = crate::map::MapOptions::new(crate::map::MAX_CAPACITY)
            .geometry()
            .unwrap();
        assert_eq!(g.stripes, 1 << 25);
        let h = 0x0123_4567_89ab_cdef_u64;
        for bit in 26..50 {
            let (a, b) = (place(&g, h), place(&g, h ^ (1 << bit)));
            assert_eq!(a.stripe, b.stripe);
            assert_ne!(a.tag, b.tag, "bit {bit}");
        }
    }

    /// The one-pass hashes equal the streaming `siphasher` ones (SipHash-2-4 and
    /// SipHash-1-3) for every length up to 64 and a few seeds.
    #[test]
    fn one_pass_siphash_matches_siphasher() {
        use core::hash::Hasher;
        for s in 0..4u8 {
            let seed: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ s);
            let keys = seed_keys(&seed);
            for len in 0..=64 {
                // Bytes with their high bit set too (0xFF from the third seed on): a tail
                // packed with a sign extension would differ.
                let msg: Vec<u8> = (0..len)
                    .map(|i| {
                        if s >= 2 {
                            0xFF - i as u8 % 3
                        } else {
                            (i as u8).wrapping_mul(s + 3)
                        }
                    })
                    .collect();
                let mut h = siphasher::sip::SipHasher24::new_with_key(&seed);
                h.write(&msg);
                assert_eq!(sip(&seed, &msg), h.finish(), "2-4: seed {s}, length {len}");
                let mut h = siphasher::sip::SipHasher13::new_with_key(&seed);
                h.write(&msg);
                assert_eq!(
                    sip_keys::<1, 3>(keys, &msg),
                    h.finish(),
                    "1-3: seed {s}, length {len}"
                );
            }
        }
    }
}
