//! Pure APK layout code: EOCD, APK Signing Block parsing and rebuilding, on byte slices (no i/o).
//!
//! Offsets are `u64` throughout and the 32-bit EOCD fields are read unsigned, so APKs
//! between 2 and 4 GiB work. A buffer may hold only the end of a file: `base` is the file
//! offset of its first byte, and [`parse_tail`] says how far back it must reach.

use super::error::FormatError;

/// Magic that ends an APK Signing Block.
pub const BLOCK_MAGIC: &[u8; 16] = b"APK Sig Block 42";
/// Pair ID of the APK Signature Scheme v2 block.
pub const V2_ID: u32 = 0x7109_871a;
/// Pair ID of the APK Signature Scheme v3 block.
pub const V3_ID: u32 = 0xf053_68c0;
/// Pair ID of the APK Signature Scheme v3.1 block.
pub const V31_ID: u32 = 0x1b93_ad61;
/// Pair ID of the verity padding that keeps the block a multiple of 4096 bytes.
pub const PADDING_ID: u32 = 0x4272_6577;
/// Walle's channel pair ID (UTF-8 JSON).
pub const WALLE_ID: u32 = 0x7177_7777;
/// VasDolly's channel pair ID (raw UTF-8 channel string).
pub const VASDOLLY_ID: u32 = 0x8811_55ff;

/// Block size unit required by Android 9+ for v3-signed APKs that carried it.
pub const BLOCK_ALIGN: u64 = 4096;
/// Bytes to read from the end of a file so the EOCD and the ZIP64 locator are inside.
pub const EOCD_WINDOW: u64 = (EOCD_LEN + MAX_COMMENT + ZIP64_LOCATOR_LEN) as u64;
/// Largest signing block + central directory accepted (guards against absurd lengths).
pub const MAX_TAIL: u64 = 256 << 20;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD_LEN: usize = 22;
const MAX_COMMENT: usize = 0xffff;
const ZIP64_LOCATOR_LEN: usize = 20;
/// size field + magic that close the block.
const FOOTER_LEN: u64 = 24;
/// u64 length + u32 id in front of every value.
const PAIR_HEADER: u64 = 12;

/// One ID-value pair of the APK Signing Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub id: u32,
    pub value: Vec<u8>,
}

/// The end-of-central-directory record, with absolute file offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eocd {
    /// File offset of the record itself.
    pub offset: u64,
    pub cd_offset: u64,
    pub cd_size: u64,
}

/// Outcome of [`parse_tail`].
#[derive(Debug)]
pub enum TailParse {
    Parsed(SigningTail),
    /// The buffer must start at this file offset (or earlier) to parse.
    NeedFrom(u64),
}

/// The end of a signed APK: signing block, central directory and EOCD (with comment).
#[derive(Debug, Clone)]
pub struct SigningTail {
    pub block_offset: u64,
    pub eocd: Eocd,
    pub file_len: u64,
    pub pairs: Vec<Pair>,
    /// File bytes `[block_offset, file_len)`.
    bytes: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Finds the EOCD in `bytes` (file bytes from `base` to the end of the file).
///
/// Scans backwards over comment lengths and accepts a candidate only when its comment
/// length reaches exactly to the end of the file, as apksig does. `Ok(None)` means the
/// search window is not fully inside the buffer.
pub fn find_eocd(base: u64, bytes: &[u8]) -> Result<Option<Eocd>, FormatError> {
    let file_len = base + bytes.len() as u64;
    if file_len < EOCD_LEN as u64 {
        return Err(FormatError::NotZip);
    }
    let max_comment = (file_len - EOCD_LEN as u64).min(MAX_COMMENT as u64) as usize;
    for comment_len in 0..=max_comment {
        let Some(at) = bytes.len().checked_sub(EOCD_LEN + comment_len) else {
            return Ok(None);
        };
        if u32_at(bytes, at) == EOCD_SIG && usize::from(u16_at(bytes, at + 20)) == comment_len {
            return decode_eocd(base, bytes, at).map(Some);
        }
    }
    Err(FormatError::NotZip)
}

fn decode_eocd(base: u64, bytes: &[u8], at: usize) -> Result<Eocd, FormatError> {
    let (this_disk, cd_disk) = (u16_at(bytes, at + 4), u16_at(bytes, at + 6));
    let cd_size = u32_at(bytes, at + 12);
    let cd_offset = u32_at(bytes, at + 16);
    if cd_size == u32::MAX || cd_offset == u32::MAX {
        return Err(FormatError::Zip64);
    }
    if this_disk != 0 || cd_disk != 0 {
        return Err(FormatError::Corrupt("multi-disk zip"));
    }
    Ok(Eocd {
        offset: base + at as u64,
        cd_offset: u64::from(cd_offset),
        cd_size: u64::from(cd_size),
    })
}

/// Parses the signing block, central directory and EOCD from the end of a file.
///
/// `bytes` are the file bytes from offset `base` to the end of the file. When they do
/// not reach back far enough, returns [`TailParse::NeedFrom`] with the offset to read from.
pub fn parse_tail(base: u64, bytes: &[u8]) -> Result<TailParse, FormatError> {
    let file_len = base + bytes.len() as u64;
    let Some(eocd) = find_eocd(base, bytes)? else {
        return Ok(TailParse::NeedFrom(file_len.saturating_sub(EOCD_WINDOW)));
    };
    let need = |offset: u64| (offset < base).then_some(TailParse::NeedFrom(offset));
    if eocd.offset >= ZIP64_LOCATOR_LEN as u64 {
        let locator = eocd.offset - ZIP64_LOCATOR_LEN as u64;
        if let Some(more) = need(locator) {
            return Ok(more);
        }
        if u32_at(bytes, (locator - base) as usize) == ZIP64_LOCATOR_SIG {
            return Err(FormatError::Zip64);
        }
    }
    if eocd.cd_offset.checked_add(eocd.cd_size) != Some(eocd.offset) {
        return Err(FormatError::Corrupt(
            "central directory does not end at the eocd",
        ));
    }
    if eocd.cd_offset < FOOTER_LEN + 8 {
        return Err(FormatError::NoSigningBlock);
    }
    let footer = eocd.cd_offset - FOOTER_LEN;
    if file_len - footer > MAX_TAIL {
        return Err(FormatError::Corrupt("central directory too large"));
    }
    if let Some(more) = need(footer) {
        return Ok(more);
    }
    let footer_at = (footer - base) as usize;
    if &bytes[footer_at + 8..footer_at + 24] != BLOCK_MAGIC {
        return Err(FormatError::NoSigningBlock);
    }
    let block_size = u64_at(bytes, footer_at);
    let block_offset = block_start(eocd.cd_offset, block_size)?;
    if file_len - block_offset > MAX_TAIL {
        return Err(FormatError::Corrupt(
            "signing block and central directory too large",
        ));
    }
    if let Some(more) = need(block_offset) {
        return Ok(more);
    }
    let block = &bytes[(block_offset - base) as usize..(eocd.cd_offset - base) as usize];
    let pairs = parse_pairs(block, block_size)?;
    Ok(TailParse::Parsed(SigningTail {
        block_offset,
        eocd,
        file_len,
        pairs,
        bytes: bytes[(block_offset - base) as usize..].to_vec(),
    }))
}

/// File offset of a signing block of `block_size` (the size field's value) ending at `cd_offset`.
pub fn block_start(cd_offset: u64, block_size: u64) -> Result<u64, FormatError> {
    if block_size < FOOTER_LEN {
        return Err(FormatError::Corrupt("signing block size too small"));
    }
    block_size
        .checked_add(8)
        .and_then(|total| cd_offset.checked_sub(total))
        .ok_or(FormatError::Corrupt("signing block larger than its offset"))
}

/// Parses the pairs of a whole block (`block` = leading size field .. magic).
fn parse_pairs(block: &[u8], block_size: u64) -> Result<Vec<Pair>, FormatError> {
    if u64_at(block, 0) != block_size {
        return Err(FormatError::Corrupt("signing block size fields differ"));
    }
    let pairs_end = block.len() - FOOTER_LEN as usize;
    let mut at = 8usize;
    let mut pairs = Vec::new();
    while at < pairs_end {
        if pairs_end - at < 8 {
            return Err(FormatError::Corrupt("truncated signing block pair"));
        }
        let pair_len = u64_at(block, at);
        let room = (pairs_end - at - 8) as u64;
        if !(4..=room).contains(&pair_len) {
            return Err(FormatError::Corrupt(
                "signing block pair length out of bounds",
            ));
        }
        let id = u32_at(block, at + 8);
        let value = block[at + 12..at + 8 + pair_len as usize].to_vec();
        pairs.push(Pair { id, value });
        at += 8 + pair_len as usize;
    }
    Ok(pairs)
}

/// Serializes a signing block; with `page_align` a padding pair makes its total size a
/// multiple of [`BLOCK_ALIGN`] (same rule as apksig: a padding pair takes at least 12 bytes).
pub fn build_block(pairs: &[Pair], page_align: bool) -> Vec<u8> {
    let pairs_len: u64 = pairs
        .iter()
        .map(|p| PAIR_HEADER + p.value.len() as u64)
        .sum();
    let mut total = 8 + pairs_len + FOOTER_LEN;
    let mut padding = 0u64;
    if page_align && !total.is_multiple_of(BLOCK_ALIGN) {
        padding = BLOCK_ALIGN - total % BLOCK_ALIGN;
        if padding < PAIR_HEADER {
            padding += BLOCK_ALIGN;
        }
        total += padding;
    }
    let size_field = (total - 8).to_le_bytes();
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&size_field);
    let mut put = |id: u32, value: &[u8]| {
        out.extend_from_slice(&(4 + value.len() as u64).to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(value);
    };
    for pair in pairs {
        put(pair.id, &pair.value);
    }
    if padding > 0 {
        put(PADDING_ID, &vec![0u8; (padding - PAIR_HEADER) as usize]);
    }
    out.extend_from_slice(&size_field);
    out.extend_from_slice(BLOCK_MAGIC);
    debug_assert_eq!(out.len() as u64, total);
    out
}

impl SigningTail {
    /// Total size of the signing block in bytes (both size fields and magic included).
    pub fn block_len(&self) -> u64 {
        self.eocd.cd_offset - self.block_offset
    }

    /// File bytes from the block start to the end of the file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Central directory, EOCD and comment: the bytes after the block.
    pub fn after_block(&self) -> &[u8] {
        &self.bytes[self.block_len() as usize..]
    }

    /// Value of the first pair with this ID.
    pub fn value(&self, id: u32) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.value.as_slice())
    }

    /// Names of the signature schemes present (`v2`, `v3`, `v3.1`).
    pub fn schemes(&self) -> Vec<&'static str> {
        [(V2_ID, "v2"), (V3_ID, "v3"), (V31_ID, "v3.1")]
            .into_iter()
            .filter(|(id, _)| self.value(*id).is_some())
            .map(|(_, name)| name)
            .collect()
    }

    /// Whether the rebuilt block must again be a multiple of 4096 bytes.
    pub fn page_aligned(&self) -> bool {
        self.value(PADDING_ID).is_some() || self.block_len().is_multiple_of(BLOCK_ALIGN)
    }

    /// New tail bytes (block ‖ central directory ‖ EOCD) with every pair whose ID is in
    /// `drop` or `add` removed, `add` appended and the EOCD's CD offset moved.
    ///
    /// Everything signed (entries, central directory, EOCD but its CD offset) stays
    /// byte-identical and the block keeps its start offset, so v2/v3 signatures hold.
    pub fn rebuild(&self, drop: &[u32], add: &[Pair]) -> Result<Vec<u8>, FormatError> {
        let mut pairs: Vec<Pair> = self
            .pairs
            .iter()
            .filter(|p| p.id != PADDING_ID && !drop.contains(&p.id))
            .filter(|p| !add.iter().any(|a| a.id == p.id))
            .cloned()
            .collect();
        pairs.extend_from_slice(add);
        let block = build_block(&pairs, self.page_aligned());
        let new_cd_offset = self.block_offset + block.len() as u64;
        let new_cd_offset = u32::try_from(new_cd_offset).map_err(|_| FormatError::TooLarge)?;
        let mut out = block;
        let eocd_at = out.len() + (self.eocd.offset - self.eocd.cd_offset) as usize;
        out.extend_from_slice(self.after_block());
        out[eocd_at + 16..eocd_at + 20].copy_from_slice(&new_cd_offset.to_le_bytes());
        Ok(out)
    }
}
