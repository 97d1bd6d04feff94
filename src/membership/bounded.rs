//! Decoding that allocates only for what was actually read, shared by every wire type
//! with a sequence field (signatures, certificate votes).

use serde::Deserialize;

/// Deserializes a sequence growing only with the elements actually decoded: serde sizes
/// a `Vec` from the claimed length before reading any element (up to 1 MiB), so a
/// 10-byte frame claiming 2^64 votes or signature bytes would allocate 1 MiB at once.
/// Used on every `Vec` field of the wire types; the encoding is unchanged.
pub(crate) fn decoded_seq<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Grow<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Grow<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(Grow(std::marker::PhantomData))
}
