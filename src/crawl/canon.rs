//! URL canonicalisation for dedup and storage, the way Scrapy's `canonicalize_url`
//! does it: query arguments sorted, percent-encoding normalised (unreserved bytes
//! decoded, hex digits upper case), no fragment.

use url::Url;

/// The canonical form of `url`.
pub fn canonical(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_fragment(None);
    let path = normalise_escapes(out.path());
    out.set_path(&path);
    if let Some(query) = out.query().filter(|q| !q.is_empty()) {
        let mut pairs: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(normalise_escapes)
            .collect();
        pairs.sort();
        let joined = pairs.join("&");
        out.set_query(Some(&joined));
    } else {
        out.set_query(None);
    }
    out
}

/// The canonical form of a URL string; the string unchanged when it does not parse.
pub fn canonical_str(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => canonical(&parsed).to_string(),
        Err(_) => url.to_string(),
    }
}

/// Decodes `%XX` of unreserved characters (`A-Z a-z 0-9 - . _ ~`) and upper-cases the
/// hex digits of the other escapes. `text` is a serialised URL part, hence ASCII.
fn normalise_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = high * 16 + low;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(byte as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        canonical(&Url::parse(text).unwrap()).to_string()
    }

    #[test]
    fn sorts_query_and_drops_fragment() {
        assert_eq!(canon("http://h/p?b=2&a=1#top"), "http://h/p?a=1&b=2");
        assert_eq!(canon("http://h/p?a=1&b=2"), canon("http://h/p?b=2&a=1"));
    }

    #[test]
    fn normalises_percent_encoding() {
        assert_eq!(canon("http://h/%7euser/a%2fb"), "http://h/~user/a%2Fb");
        assert_eq!(canon("http://h/~user"), canon("http://h/%7Euser"));
        assert_eq!(canon("http://h/p?"), "http://h/p");
    }
}
