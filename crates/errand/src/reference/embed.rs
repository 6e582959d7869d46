//! Text processing of the reference pipeline: chunking, terms, and a deterministic local
//! embedding (hashed term vectors). No model is downloaded; the same text always gives the
//! same vector, on every machine.

/// Dimensions of an embedding.
pub const DIMENSIONS: usize = 256;

/// Longest chunk, in characters.
pub const CHUNK_CHARS: usize = 800;

/// Lower-case alphanumeric terms of `text`, in order.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// Text being gathered into one chunk, with its length in characters (counted once per piece,
/// so long documents chunk in linear time).
#[derive(Default)]
struct Gather {
    text: String,
    chars: usize,
}

impl Gather {
    fn push(&mut self, piece: &str, chars: usize) {
        self.text.push_str(piece);
        self.chars += chars;
    }

    fn take(&mut self) -> String {
        self.chars = 0;
        std::mem::take(&mut self.text)
    }
}

/// Splits text into chunks of at most [`CHUNK_CHARS`] characters: paragraphs are kept whole
/// when they fit, long ones are cut at sentence ends, then at spaces.
pub fn chunk(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = Gather::default();
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        for piece in split_long(paragraph) {
            let n = piece.chars().count();
            if !current.text.is_empty() && current.chars + 2 + n > CHUNK_CHARS {
                chunks.push(current.take());
            }
            if !current.text.is_empty() {
                current.push("\n\n", 2);
            }
            current.push(&piece, n);
        }
    }
    if !current.text.is_empty() {
        chunks.push(current.take());
    }
    chunks
}

/// Cuts a paragraph longer than a chunk at sentence ends, then at spaces, then anywhere.
fn split_long(paragraph: &str) -> Vec<String> {
    if paragraph.chars().count() <= CHUNK_CHARS {
        return vec![paragraph.to_string()];
    }
    let mut out = Vec::new();
    let mut current = Gather::default();
    let flush = |current: &mut Gather, out: &mut Vec<String>| {
        let text = current.take();
        if !text.trim().is_empty() {
            out.push(text.trim().to_string());
        }
    };
    for word in paragraph.split_inclusive([' ', '\n']) {
        let n = word.chars().count();
        if current.chars + n > CHUNK_CHARS {
            flush(&mut current, &mut out);
        }
        if n > CHUNK_CHARS {
            // A single "word" longer than a chunk (e.g. a URL or base64): cut it.
            let chars: Vec<char> = word.chars().collect();
            out.extend(
                chars
                    .chunks(CHUNK_CHARS)
                    .map(|part| part.iter().collect::<String>()),
            );
            continue;
        }
        current.push(word, n);
        let ends_sentence = word.trim_end().ends_with(['.', '!', '?']);
        if ends_sentence && current.chars > CHUNK_CHARS / 2 {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// FNV-1a, 64 bits: a stable hash for term buckets.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The embedding of `text`: term frequencies hashed into [`DIMENSIONS`] signed buckets,
/// L2-normalised (all zeros for text without terms).
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    for term in terms(text) {
        let h = fnv1a(term.as_bytes());
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % DIMENSIONS as u64) as usize] += sign;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Cosine similarity of two normalised embeddings.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// An embedding as little-endian bytes, for storage.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An embedding back from its bytes (ignores a trailing partial value).
pub fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_deterministic_normalised_and_meaningful() {
        let a = embed("The quick brown fox jumps over the lazy dog");
        assert_eq!(a, embed("the QUICK brown fox, jumps over the lazy dog!"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let near = embed("a quick brown fox");
        let far = embed("quarterly revenue forecast spreadsheet");
        assert!(similarity(&a, &near) > similarity(&a, &far));
        assert_eq!(from_bytes(&to_bytes(&a)), a);
        assert!(embed("  ...  ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn chunks_respect_the_limit_and_keep_all_text() {
        let para = "Sentence number one is here. ".repeat(60);
        let text = format!(
            "Short intro.\n\n{para}\n\nClosing words.\n\n{}",
            "x".repeat(2000)
        );
        let chunks = chunk(&text);
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| c.chars().count() <= CHUNK_CHARS));
        let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(
            visible(&chunks.concat()),
            visible(&text),
            "no text is lost or reordered"
        );
        assert_eq!(chunk("one\n\ntwo"), ["one\n\ntwo"]);
        let big = "word ".repeat(400_000);
        assert!(chunk(&big).iter().all(|c| c.chars().count() <= CHUNK_CHARS));
        assert!(chunk("   \n\n  ").is_empty());
    }
}
