//! The product's image URLs as the client gave them.
//!
//! Only the shape is checked here (absolute http(s), a host, no credentials, bounded length,
//! no duplicates). Whether an address may actually be fetched is the image-processor's
//! decision, made on the resolved address at fetch time.

use url::Url;

use super::FieldError;

/// 1 to `max` distinct absolute http(s) URLs, in the client's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrls(Vec<String>);

impl ImageUrls {
    pub const MAX_URL_CHARS: usize = 2_048;

    pub fn parse(field: &str, raw: &[String], max: usize) -> Result<Self, Vec<FieldError>> {
        let error = |field: String, message: String| FieldError { field, message };
        if raw.is_empty() || raw.len() > max {
            return Err(vec![error(
                field.to_owned(),
                format!(
                    "must hold between 1 and {max} image URLs, got {}",
                    raw.len()
                ),
            )]);
        }
        let mut errors = Vec::new();
        let mut urls: Vec<String> = Vec::with_capacity(raw.len());
        for (i, text) in raw.iter().enumerate() {
            let at = format!("{field}[{i}]");
            match parse_one(text) {
                Ok(url) if urls.contains(&url) => {
                    errors.push(error(at, format!("repeats an earlier URL: {url}")))
                }
                Ok(url) => urls.push(url),
                Err(message) => errors.push(error(at, message)),
            }
        }
        if errors.is_empty() {
            Ok(Self(urls))
        } else {
            Err(errors)
        }
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<String> {
        self.0
    }
}

fn parse_one(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.chars().count() > ImageUrls::MAX_URL_CHARS {
        return Err(format!(
            "must be at most {} characters",
            ImageUrls::MAX_URL_CHARS
        ));
    }
    let url = Url::parse(text)
        .map_err(|e| format!("must be an absolute http or https URL ({e}): {text:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must use http or https, not {:?}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".into());
    }
    // Normalised (lower-case host, percent-encoding) so duplicates are found regardless of
    // spelling. The parsed URL may grow past the raw text when encoded, so check again.
    let normalised = url.to_string();
    if normalised.len() > ImageUrls::MAX_URL_CHARS {
        return Err(format!(
            "must be at most {} characters",
            ImageUrls::MAX_URL_CHARS
        ));
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(urls: &[&str]) -> Result<ImageUrls, Vec<FieldError>> {
        let owned: Vec<String> = urls.iter().map(|s| s.to_string()).collect();
        ImageUrls::parse("product_images", &owned, 3)
    }

    #[test]
    fn http_and_https_urls_are_kept_in_order() {
        let urls = parse(&["https://a.example/1.jpg", "http://b.example/2.png"]).unwrap();
        assert_eq!(
            urls.as_slice(),
            ["https://a.example/1.jpg", "http://b.example/2.png"]
        );
    }

    #[test]
    fn an_empty_list_and_too_many_urls_are_rejected() {
        assert!(parse(&[]).is_err());
        let four = ["http://a/1", "http://a/2", "http://a/3", "http://a/4"];
        assert!(
            parse(&four).unwrap_err()[0]
                .message
                .contains("between 1 and 3")
        );
    }

    #[test]
    fn other_schemes_relative_urls_and_credentials_are_rejected() {
        for bad in [
            "ftp://a.example/x.jpg",
            "/x.jpg",
            "file:///etc/passwd",
            "https://u:p@a.example/x",
        ] {
            let errors = parse(&[bad]).unwrap_err();
            assert_eq!(errors[0].field, "product_images[0]", "{bad}");
        }
    }

    #[test]
    fn duplicates_are_found_whatever_the_spelling_of_the_host() {
        let errors = parse(&["https://A.example/x.jpg", "https://a.example/x.jpg"]).unwrap_err();
        assert_eq!(errors[0].field, "product_images[1]");
    }

    #[test]
    fn an_overlong_url_is_rejected() {
        let long = format!("https://a.example/{}", "x".repeat(2_048));
        assert!(parse(&[&long]).unwrap_err()[0].message.contains("2048"));
    }

    #[test]
    fn every_bad_url_is_reported() {
        let errors = parse(&["nope", "https://ok.example/a", "ftp://x"]).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["product_images[0]", "product_images[2]"]);
    }
}
