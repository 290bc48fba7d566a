//! Lower-case hex for byte strings in JSON state files and protocol messages: base16ct (RustCrypto,
//! constant-time, already built for p256) does the encoding; this adds serde adapters.

use ::serde::{Deserialize, Deserializer, Serializer};

pub fn encode(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// Upper- or lower-case hex; constant-time, so decoding a key file says nothing about the key.
pub fn decode(text: &str) -> Result<Vec<u8>, base16ct::Error> {
    base16ct::mixed::decode_vec(text)
}

/// `#[serde(with = "aloha::hex::serde")]` for `Vec<u8>` fields.
pub mod serde {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).map_err(::serde::de::Error::custom)
    }
}

/// `#[serde(with = "aloha::hex::array")]` for fixed-size `[u8; N]` fields.
pub mod array {
    use super::*;

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = decode(&text).map_err(::serde::de::Error::custom)?;
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| ::serde::de::Error::custom(format!("expected {N} bytes, found {len}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_rejects() {
        let data = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::encode(&data), "0001abff");
        assert_eq!(super::decode("0001ABff").unwrap(), data);
        assert!(super::decode("abc").is_err());
        assert!(super::decode("zz").is_err());
    }
}
