//! The Kafka wire format's primitives, for the few requests [`super`] sends: big-endian
//! integers, strings and arrays, in the classic form and in the "flexible" (compact, tagged)
//! form of newer versions. Decoding never panics: a short or malformed answer is an error.

use super::WireError;

/// Builds one request body.
#[derive(Default)]
pub struct Encoder {
    pub bytes: Vec<u8>,
}

impl Encoder {
    pub fn i8(&mut self, value: i8) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i16(&mut self, value: i16) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    pub fn uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// A zigzag varint, as record fields are written (tests build record batches with it).
    #[cfg(test)]
    pub fn varint(&mut self, value: i64) {
        self.uvarint(((value << 1) ^ (value >> 63)) as u64);
    }

    /// A classic string: i16 length, then the bytes.
    pub fn string(&mut self, value: &str) {
        self.i16(i16::try_from(value.len()).unwrap_or(i16::MAX));
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// A classic array's length (`None`: the null array, "all").
    pub fn array_len(&mut self, len: Option<usize>) {
        self.i32(len.map_or(-1, |len| i32::try_from(len).unwrap_or(i32::MAX)));
    }

    /// A compact string: uvarint length + 1, then the bytes.
    pub fn compact_string(&mut self, value: &str) {
        self.uvarint(value.len() as u64 + 1);
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// A compact array's length (`None`: the null array).
    pub fn compact_array_len(&mut self, len: Option<usize>) {
        self.uvarint(len.map_or(0, |len| len as u64 + 1));
    }

    /// No tagged fields.
    pub fn no_tags(&mut self) {
        self.uvarint(0);
    }
}

/// Reads one response body.
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < count {
            return Err(WireError::Malformed("answer shorter than its fields"));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn i8(&mut self) -> Result<i8, WireError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn uvarint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::Malformed("varint too long"))
    }

    /// A zigzag varint, as record fields are read.
    pub fn varint(&mut self) -> Result<i64, WireError> {
        let raw = self.uvarint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// The next `count` bytes.
    pub fn bytes(&mut self, count: usize) -> Result<&'a [u8], WireError> {
        self.take(count)
    }

    /// Classic nullable bytes: i32 length (`None` for -1), then the bytes.
    pub fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }

    /// A classic nullable string (`None` for null).
    pub fn nullable_string(&mut self) -> Result<Option<&'a str>, WireError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| WireError::Malformed("a string that is not UTF-8"))
    }

    pub fn string(&mut self) -> Result<&'a str, WireError> {
        Ok(self.nullable_string()?.unwrap_or(""))
    }

    /// A classic array's length; null reads as empty.
    pub fn array_len(&mut self) -> Result<usize, WireError> {
        let len = self.i32()?;
        let len = usize::try_from(len).unwrap_or(0);
        // Each element takes at least one byte: a huge length is garbage, not an allocation.
        if len > self.bytes.len() {
            return Err(WireError::Malformed("array longer than the answer"));
        }
        Ok(len)
    }

    pub fn compact_nullable_string(&mut self) -> Result<Option<&'a str>, WireError> {
        let len = self.uvarint()?;
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.take(usize::try_from(len - 1).unwrap_or(usize::MAX))?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| WireError::Malformed("a string that is not UTF-8"))
    }

    pub fn compact_string(&mut self) -> Result<&'a str, WireError> {
        Ok(self.compact_nullable_string()?.unwrap_or(""))
    }

    /// A compact array's length; null reads as empty.
    pub fn compact_array_len(&mut self) -> Result<usize, WireError> {
        let len = usize::try_from(self.uvarint()?.saturating_sub(1)).unwrap_or(usize::MAX);
        if len > self.bytes.len() {
            return Err(WireError::Malformed("array longer than the answer"));
        }
        Ok(len)
    }

    /// Skips tagged fields: none of them is read.
    pub fn skip_tags(&mut self) -> Result<(), WireError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_classic_fields_read_back_as_written() {
        let mut encoder = Encoder::default();
        encoder.i16(-2);
        encoder.string("orders");
        encoder.uvarint(300);
        encoder.compact_string("g-1");
        encoder.compact_array_len(None);
        encoder.i64(1 << 40);
        encoder.no_tags();
        let mut decoder = Decoder::new(&encoder.bytes);
        assert_eq!(decoder.i16().unwrap(), -2);
        assert_eq!(decoder.string().unwrap(), "orders");
        assert_eq!(decoder.uvarint().unwrap(), 300);
        assert_eq!(decoder.compact_string().unwrap(), "g-1");
        assert_eq!(decoder.compact_array_len().unwrap(), 0);
        assert_eq!(decoder.i64().unwrap(), 1 << 40);
        decoder.skip_tags().unwrap();
        assert_eq!(decoder.remaining(), 0, "nothing left");
    }

    #[test]
    fn a_length_past_the_answer_is_an_error_not_an_allocation() {
        let mut decoder = Decoder::new(&[0x7f, 0xff, 0xff, 0xff, 1]);
        assert!(decoder.array_len().is_err());
    }
}
