//! Reading a URL's query: one parameter, as sent.

/// The value of `name` in a URL's query, as sent (not decoded).
pub(crate) fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_found_by_its_whole_name() {
        assert_eq!(query_value(Some("alt=sse&key=k1"), "key"), Some("k1"));
        assert_eq!(query_value(Some("keys=x&key="), "key"), Some(""));
        assert_eq!(query_value(Some("tokens=x"), "token"), None);
        assert_eq!(query_value(None, "key"), None);
    }
}
