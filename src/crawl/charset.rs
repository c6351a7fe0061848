//! Decoding of response bodies: which charset a page is in (BOM, `content.encode`,
//! Content-Type, `<meta>`, then a guess) and the decoding itself.

use std::sync::OnceLock;

use encoding_rs::{Encoding, UTF_8};
use regex::bytes::Regex;

/// How far into the body `<meta charset>` is looked for (the HTML prescan's limit).
const META_PRESCAN_BYTES: usize = 1024;

/// A decoded body and where its encoding came from.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// The encoding used (`GBK`, `UTF-8`, ...).
    pub encoding: &'static Encoding,
    /// `bom`, `content.encode`, `header`, `meta`, `utf-8` (valid UTF-8) or `guess`.
    pub source: &'static str,
    /// True when some bytes were not valid in that encoding (replaced by U+FFFD).
    pub had_errors: bool,
}

/// Decodes `body`. Order: a BOM; the task's `content.encode` (unless empty or
/// `auto`); the Content-Type charset; a `<meta>` charset in the first 1024 bytes;
/// UTF-8 if the bytes are valid UTF-8; else a statistical guess. A UTF-8 declaration
/// that the bytes contradict is skipped, so the seed's default `encode: utf-8` does
/// not garble GBK pages.
pub fn decode_body(body: &[u8], explicit: &str, content_type: Option<&str>) -> Decoded {
    if let Some((encoding, bom_len)) = Encoding::for_bom(body) {
        return decode_with(&body[bom_len..], encoding, "bom");
    }
    let utf8_valid = std::str::from_utf8(body).is_ok();
    let usable = |encoding: &'static Encoding| encoding != UTF_8 || utf8_valid;
    let explicit = explicit.trim();
    if !explicit.is_empty() && !explicit.eq_ignore_ascii_case("auto") {
        match Encoding::for_label(explicit.as_bytes()) {
            Some(encoding) if usable(encoding) => {
                return decode_with(body, encoding, "content.encode")
            }
            Some(_) => {}
            None => log::warn!("unknown content.encode {explicit:?}, detecting the charset"),
        }
    }
    if let Some(encoding) = content_type.and_then(header_charset).filter(|e| usable(e)) {
        return decode_with(body, encoding, "header");
    }
    if let Some(encoding) = meta_charset(body).filter(|e| usable(e)) {
        return decode_with(body, encoding, "meta");
    }
    if utf8_valid {
        return decode_with(body, UTF_8, "utf-8");
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(body, true);
    decode_with(
        body,
        detector.guess(None, chardetng::Utf8Detection::Deny),
        "guess",
    )
}

/// The charset named by a Content-Type header value, if encoding_rs knows it.
pub fn header_charset(content_type: &str) -> Option<&'static Encoding> {
    let mime: mime::Mime = content_type.parse().ok()?;
    let charset = mime.get_param(mime::CHARSET)?;
    Encoding::for_label(charset.as_str().as_bytes())
}

/// The charset of a `<meta charset=...>` or `<meta http-equiv content="...;
/// charset=...">` tag near the start of the page. UTF-16 labels mean UTF-8 here, as
/// in the HTML standard (a page that reached this point has no UTF-16 BOM).
pub fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        Regex::new(r#"(?i-u)<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_:.\-]+)"#)
            .expect("valid regex")
    });
    let head = &body[..body.len().min(META_PRESCAN_BYTES)];
    let label = pattern.captures(head)?.get(1)?.as_bytes();
    let encoding = Encoding::for_label(label)?;
    Some(if encoding.output_encoding() == UTF_8 {
        UTF_8
    } else {
        encoding
    })
}

fn decode_with(body: &[u8], encoding: &'static Encoding, source: &'static str) -> Decoded {
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    Decoded {
        text: text.into_owned(),
        encoding,
        source,
        had_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbk(text: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(text).0.into_owned()
    }

    #[test]
    fn header_meta_explicit_and_guess_all_decode_gbk() {
        let text = "中文页面，价格：一千二百九十九元。这是一个用于测试编码检测的较长段落。";
        let page = format!("<html><head><meta charset=\"gbk\"></head><body>{text}</body></html>");
        let bytes = gbk(&page);
        let by_header = decode_body(&gbk(text), "", Some("text/html; charset=GBK"));
        assert_eq!(
            (by_header.text.as_str(), by_header.source),
            (text, "header")
        );
        let by_meta = decode_body(&bytes, "", Some("text/html"));
        assert_eq!(
            (by_meta.text.as_str(), by_meta.source),
            (page.as_str(), "meta")
        );
        let explicit = decode_body(&gbk(text), "gbk", None);
        assert_eq!(
            (explicit.text.as_str(), explicit.source),
            (text, "content.encode")
        );
        let seed_default = decode_body(&gbk(text), "utf-8", None);
        assert_eq!(seed_default.text, text, "source {}", seed_default.source);
    }

    #[test]
    fn bom_wins_and_utf8_is_default() {
        let with_bom = [&[0xEF, 0xBB, 0xBF][..], "héllo".as_bytes()].concat();
        let decoded = decode_body(&with_bom, "gbk", Some("text/html; charset=gbk"));
        assert_eq!((decoded.text.as_str(), decoded.source), ("héllo", "bom"));
        assert_eq!(decode_body("héllo".as_bytes(), "", None).source, "utf-8");
    }

    #[test]
    fn meta_http_equiv_and_utf16_label() {
        let page = br#"<meta http-equiv="Content-Type" content="text/html; charset=gb2312">"#;
        assert_eq!(meta_charset(page), Some(encoding_rs::GBK));
        assert_eq!(meta_charset(b"<meta charset='utf-16le'>"), Some(UTF_8));
        assert_eq!(meta_charset(b"<p>no meta</p>"), None);
    }
}
