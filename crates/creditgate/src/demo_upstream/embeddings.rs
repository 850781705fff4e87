//! The demo upstream's OpenAI embeddings answer: one deterministic vector per input (as floats,
//! or as base64 of little-endian `f32`s, which the `openai` SDK asks for by default).

use serde_json::{json, Value};

use super::request::EmbeddingsAsk;

/// A deterministic component: a hash of the input and the dimension made into an `f32` in
/// ±[2⁻⁷, 2⁻⁶) from its bits (no float arithmetic).
fn component(seed: &[u8], dimension: usize) -> f32 {
    // FNV-1a over the seed and the dimension.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in seed.iter().chain(&(dimension as u64).to_le_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    f32::from_bits((hash & 0x8000_0000) | 0x3C00_0000 | (hash & 0x007F_FFFF))
}

pub(super) fn embeddings(ask: &EmbeddingsAsk, malformed: bool) -> Value {
    let data: Vec<Value> = ask
        .inputs
        .iter()
        .enumerate()
        .map(|(index, (_, seed))| {
            let vector: Vec<f32> = (0..ask.dimensions).map(|d| component(seed, d)).collect();
            let embedding = if ask.base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = ask.input_tokens();
    let prompt_tokens = if malformed {
        json!(tokens.to_string())
    } else {
        json!(tokens)
    };
    json!({
        "object": "list",
        "data": data,
        "model": ask.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": tokens},
    })
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn components_are_deterministic_and_small() {
        for d in 0..64 {
            let x = component(b"hello", d);
            assert_eq!(x.to_bits(), component(b"hello", d).to_bits());
            let magnitude = x.abs();
            assert!((0.0078125..0.015625).contains(&magnitude), "{x}");
        }
        assert_ne!(component(b"hello", 0), component(b"world", 0));
    }
}
