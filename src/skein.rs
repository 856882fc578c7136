//! Skein-1024-1024 (Skein 1.3), the hash of pot's `.skein` files (`skein1024 -q` in FreeBSD's
//! md5(1)), written for throughput: an import hashes every compressed byte of an image, so the
//! hasher must keep up with the xz decoder on the same cores.
//!
//! Threefish-1024 is fully unrolled: its 80 rounds and 21 subkey injections use constant word
//! indices only, so the state stays in registers (and stack slots) without bounds checks, and
//! its permutation costs nothing because it only renames words. The key schedule (the 17th key
//! word and the third tweak word) is computed once per block; no allocation anywhere.

/// Threefish's key schedule parity constant.
const C240: u64 = 0x1BD1_1BDA_A9FC_1A22;

/// Threefish-1024's rotation constants, by round mod 8 and word pair.
const ROT: [[u32; 8]; 8] = [
    [24, 13, 8, 47, 8, 17, 22, 37],
    [38, 19, 10, 55, 49, 18, 23, 52],
    [33, 4, 51, 13, 34, 41, 59, 17],
    [5, 20, 48, 41, 47, 28, 16, 25],
    [41, 9, 37, 31, 12, 47, 44, 30],
    [16, 34, 56, 51, 4, 53, 42, 41],
    [31, 44, 47, 46, 19, 42, 44, 25],
    [9, 48, 35, 52, 23, 31, 37, 20],
];

/// Threefish-1024's word permutation: after a round, word `i` is the old word `PERM[i]`.
const PERM: [usize; 16] = [0, 9, 2, 13, 6, 11, 4, 15, 10, 7, 12, 3, 14, 5, 8, 1];

/// The word pairs each of four consecutive rounds mixes, as indices into the unpermuted state.
/// The permutation has order 4, so after four rounds every word is back in its place, which is
/// where the next subkey is added.
const PAIRS: [[[usize; 2]; 8]; 4] = pairs();

const fn pairs() -> [[[usize; 2]; 8]; 4] {
    let mut at = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut out = [[[0; 2]; 8]; 4];
    let mut d = 0;
    while d < 4 {
        let mut j = 0;
        while j < 8 {
            out[d][j] = [at[2 * j], at[2 * j + 1]];
            j += 1;
        }
        let before = at;
        let mut i = 0;
        while i < 16 {
            at[i] = before[PERM[i]];
            i += 1;
        }
        d += 1;
    }
    let mut i = 0;
    while i < 16 {
        assert!(at[i] == i, "the permutation must have order 4");
        i += 1;
    }
    out
}

pub const BLOCK_BYTES: usize = 128;
/// Skein-1024-1024's output length in bytes.
pub const DIGEST_BYTES: usize = 128;

/// UBI tweak bits in the tweak's second word: first and final block, block type.
const FIRST: u64 = 1 << 62;
const FINAL: u64 = 1 << 63;
const TYPE_CFG: u64 = 4 << 56;
const TYPE_MSG: u64 = 48 << 56;
const TYPE_OUT: u64 = 63 << 56;

#[inline(always)]
fn mix(x: &mut [u64; 16], [a, b]: [usize; 2], r: u32) {
    x[a] = x[a].wrapping_add(x[b]);
    x[b] = x[b].rotate_left(r) ^ x[a];
}

/// Adds subkey `s`: key words `s..s+16` (mod 17), two tweak words and `s`.
#[inline(always)]
fn inject(x: &mut [u64; 16], k: &[u64; 17], t: &[u64; 3], s: usize) {
    for (i, w) in x.iter_mut().enumerate() {
        *w = w.wrapping_add(k[(s + i) % 17]);
    }
    x[13] = x[13].wrapping_add(t[s % 3]);
    x[14] = x[14].wrapping_add(t[(s + 1) % 3]);
    x[15] = x[15].wrapping_add(s as u64);
}

/// Four rounds with the rotation constants of rounds `row..row+4` (mod 8).
macro_rules! four_rounds {
    ($x:ident, $row:literal) => {
        four_rounds!(@round $x, 0, $row);
        four_rounds!(@round $x, 1, $row + 1);
        four_rounds!(@round $x, 2, $row + 2);
        four_rounds!(@round $x, 3, $row + 3);
    };
    (@round $x:ident, $d:literal, $row:expr) => {
        mix(&mut $x, PAIRS[$d][0], ROT[$row][0]);
        mix(&mut $x, PAIRS[$d][1], ROT[$row][1]);
        mix(&mut $x, PAIRS[$d][2], ROT[$row][2]);
        mix(&mut $x, PAIRS[$d][3], ROT[$row][3]);
        mix(&mut $x, PAIRS[$d][4], ROT[$row][4]);
        mix(&mut $x, PAIRS[$d][5], ROT[$row][5]);
        mix(&mut $x, PAIRS[$d][6], ROT[$row][6]);
        mix(&mut $x, PAIRS[$d][7], ROT[$row][7]);
    };
}

/// Eight rounds preceded by subkeys `s` and `s + 1`.
macro_rules! eight_rounds {
    ($x:ident, $k:ident, $t:ident, $s:literal) => {
        inject(&mut $x, &$k, &$t, $s);
        four_rounds!($x, 0);
        inject(&mut $x, &$k, &$t, $s + 1);
        four_rounds!($x, 4);
    };
}

/// One UBI step: `chain = Threefish-1024(key = chain, tweak, block) ^ block`.
#[inline(always)]
fn ubi_block(chain: &mut [u64; 16], block: &[u8; BLOCK_BYTES], t0: u64, t1: u64) {
    let mut m = [0u64; 16];
    for (w, bytes) in m.iter_mut().zip(block.as_chunks::<8>().0) {
        *w = u64::from_le_bytes(*bytes);
    }
    let mut k = [0u64; 17];
    k[..16].copy_from_slice(chain);
    k[16] = chain.iter().fold(C240, |acc, w| acc ^ w);
    let t = [t0, t1, t0 ^ t1];
    let mut x = m;
    eight_rounds!(x, k, t, 0);
    eight_rounds!(x, k, t, 2);
    eight_rounds!(x, k, t, 4);
    eight_rounds!(x, k, t, 6);
    eight_rounds!(x, k, t, 8);
    eight_rounds!(x, k, t, 10);
    eight_rounds!(x, k, t, 12);
    eight_rounds!(x, k, t, 14);
    eight_rounds!(x, k, t, 16);
    eight_rounds!(x, k, t, 18);
    inject(&mut x, &k, &t, 20);
    for ((c, x), m) in chain.iter_mut().zip(x).zip(m) {
        *c = x ^ m;
    }
}

/// A streaming Skein-1024-1024 hasher.
#[derive(Clone)]
pub struct Skein1024 {
    chain: [u64; 16],
    /// The last block seen, held back until more input shows it is not the final one.
    buf: [u8; BLOCK_BYTES],
    buf_len: usize,
    /// Message bytes already folded into `chain`.
    done: u128,
}

impl Default for Skein1024 {
    fn default() -> Self {
        Self::new()
    }
}

impl Skein1024 {
    pub fn new() -> Self {
        // The configuration block: schema "SHA3", version 1, output length in bits, no tree.
        let mut config = [0u8; BLOCK_BYTES];
        config[..4].copy_from_slice(b"SHA3");
        config[4..6].copy_from_slice(&1u16.to_le_bytes());
        config[8..16].copy_from_slice(&(DIGEST_BYTES as u64 * 8).to_le_bytes());
        let mut chain = [0u64; 16];
        ubi_block(&mut chain, &config, 32, FIRST | FINAL | TYPE_CFG);
        Skein1024 {
            chain,
            buf: [0; BLOCK_BYTES],
            buf_len: 0,
            done: 0,
        }
    }

    #[inline(always)]
    fn message_block(&mut self, block: &[u8; BLOCK_BYTES], extra: u64) {
        let first = if self.done == 0 { FIRST } else { 0 };
        self.done += BLOCK_BYTES as u128;
        let (t0, t1) = position(self.done);
        ubi_block(&mut self.chain, block, t0, t1 | TYPE_MSG | first | extra);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if self.buf_len + data.len() <= BLOCK_BYTES {
            self.buf[self.buf_len..self.buf_len + data.len()].copy_from_slice(data);
            self.buf_len += data.len();
            return;
        }
        // More than a block is at hand, so the buffered one is not the last.
        if self.buf_len > 0 {
            let fill = BLOCK_BYTES - self.buf_len;
            self.buf[self.buf_len..].copy_from_slice(&data[..fill]);
            data = &data[fill..];
            let block = self.buf;
            self.message_block(&block, 0);
            self.buf_len = 0;
        }
        // Keep the last 1..=128 bytes back.
        let keep = (data.len() - 1) % BLOCK_BYTES + 1;
        let (blocks, rest) = data.split_at(data.len() - keep);
        for block in blocks.as_chunks::<BLOCK_BYTES>().0 {
            self.message_block(block, 0);
        }
        self.buf[..keep].copy_from_slice(rest);
        self.buf_len = keep;
    }

    pub fn finalize(mut self) -> [u8; DIGEST_BYTES] {
        self.buf[self.buf_len..].fill(0);
        let first = if self.done == 0 { FIRST } else { 0 };
        self.done += self.buf_len as u128;
        let (t0, t1) = position(self.done);
        let block = self.buf;
        ubi_block(&mut self.chain, &block, t0, t1 | TYPE_MSG | first | FINAL);
        // Output: one UBI block over the 8-byte counter 0.
        let mut chain = self.chain;
        ubi_block(&mut chain, &[0; BLOCK_BYTES], 8, FIRST | FINAL | TYPE_OUT);
        let mut out = [0u8; DIGEST_BYTES];
        for (bytes, w) in out.as_chunks_mut::<8>().0.iter_mut().zip(chain) {
            *bytes = w.to_le_bytes();
        }
        out
    }

    /// The hash of `data` in one call.
    pub fn digest(data: &[u8]) -> [u8; DIGEST_BYTES] {
        let mut h = Self::new();
        h.update(data);
        h.finalize()
    }
}

/// The tweak's 96-bit position field, split over its two words.
fn position(bytes: u128) -> (u64, u64) {
    (bytes as u64, (bytes >> 64) as u64 & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // dependency-spike.md §2.c: Skein 1.3 KATs and FreeBSD libmd's SKEIN1024 tests.
        let cases: [(&[u8], &str); 4] = [
            (
                b"",
                "0fff9563bb3279289227ac77d319b6fff8d7e9f09da1247b72a0a265cd6d2a62645ad547ed8193db48cff847c06494a03f55666d3b47eb4c20456c9373c86297d630d5578ebd34cb40991578f9f52b18003efa35d3da6553ff35db91b81ab890bec1b189b7f52cb2a783ebb7d823d725b0b4a71f6824e88f68f982eefc6d19c6",
            ),
            (
                &[0xff],
                "e62c05802ea0152407cdd8787fda9e35703de862a4fbc119cff8590afe79250bccc8b3faf1bd2422ab5c0d263fb2f8afb3f796f048000381531b6f00d85161bc0fff4bef2486b1ebcd3773fabf50ad4ad5639af9040e3f29c6c931301bf79832e9da09857e831e82ef8b4691c235656515d437d2bda33bcec001c67ffde15ba8",
            ),
            (
                b"abc",
                "35a599a0f91abcdb4cb73c19b8cb8d947742d82c309137a7caed29e8e0a2ca7a9ff9a90c34c1908cc7e7fd99bb15032fb86e76df21b72628399b5f7c3cc209d7bb31c99cd4e19465622a049afbb87c03b5ce3888d17e6e667279ec0aa9b3e2712624c01b5f5bbe1a564220bdcf6990af0c2539019f313fdd7406cca3892a1f1f",
            ),
            (
                b"message digest",
                "ea891f5268acd0fac97467fc1aa89d1ce8681a9992a42540e53babee861483110c2d16f49e73bac27653ff173003e40cfb08516cd34262e6af95a5d8645c9c1abb3e813604d508b8511b30f9a5c1b352aa0791c7d2f27b2706dccea54bc7de6555b5202351751c3299f97c09cf89c40f67187e2521c0fad82b30edbb224f0458",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&Skein1024::digest(input)), want, "input {input:02x?}");
        }
        let desc = |n: usize| (0..n).map(|i| 0xff - i as u8).collect::<Vec<u8>>();
        assert_eq!(
            hex(&Skein1024::digest(&desc(128))),
            "1f3e02c46fb80a3fcd2dfbbc7c173800b40c60c2354af551189ebf433c3d85f9ff1803e6d920493179ed7ae7fce69c3581a5a2f82d3e0c7a295574d0cd7d217c484d2f6313d59a7718ead07d0729c24851d7e7d2491b902d489194e6b7d369db0ab7aa106f0ee0a39a42efc54f18d93776080985f907574f995ec6a37153a578"
        );
        assert_eq!(
            hex(&Skein1024::digest(&desc(256))),
            "842a53c99c12b0cf80cf69491be5e2f7515de8733b6ea9422dfd676665b5fa42ffb3a9c48c217777950848cecdb48f640f81fb92bef6f88f7a85c1f7cd1446c9161c0afe8f25ae444f40d3680081c35aa43f640fd5fa3c3c030bcc06abac01d098bcc984ebd8322712921e00b1ba07d6d01f26907050255ef2c8e24f716c52a5"
        );
    }

    /// A seeded generator for test inputs (splitmix64), so a failure names a seed to replay.
    struct Inputs(u64);

    impl Inputs {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn seed() -> u64 {
        use rand_core::RngCore;
        rand_core::OsRng.next_u64()
    }

    fn reference(data: &[u8]) -> [u8; DIGEST_BYTES] {
        use skein::Digest;
        skein::Skein1024::<skein::U128>::digest(data).into()
    }

    #[test]
    fn matches_rustcrypto_on_every_length_up_to_4096() {
        let seed = seed();
        let mut rng = Inputs(seed);
        for n in 0..=4096 {
            let data = rng.bytes(n);
            assert_eq!(
                Skein1024::digest(&data),
                reference(&data),
                "length {n}, seed {seed}"
            );
        }
    }

    #[test]
    fn matches_rustcrypto_on_large_inputs() {
        let seed = seed();
        let mut rng = Inputs(seed);
        for n in [
            1 << 20,
            (1 << 20) + 1,
            3 * (1 << 20) - 1,
            5 * (1 << 20) + 77,
        ] {
            let data = rng.bytes(n);
            assert_eq!(
                Skein1024::digest(&data),
                reference(&data),
                "length {n}, seed {seed}"
            );
        }
    }

    #[test]
    fn updates_in_random_pieces_equal_one_call() {
        let seed = seed();
        let mut rng = Inputs(seed);
        for round in 0..200 {
            let n = (rng.next() % 2048) as usize;
            let data = rng.bytes(n);
            let mut h = Skein1024::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                // Pieces of 0..=300 bytes: empty ones, ones within a block and across blocks.
                let take = ((rng.next() % 301) as usize).min(rest.len());
                h.update(&rest[..take]);
                rest = &rest[take..];
            }
            assert_eq!(
                h.finalize(),
                reference(&data),
                "round {round}, length {n}, seed {seed}"
            );
        }
    }
}
