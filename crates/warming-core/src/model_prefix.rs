//! Tables keyed by model-name prefix: the rule every such table follows.

/// The value of the longest prefix of `model` among `entries`, so a dated
/// name (`claude-sonnet-4-5-20250929`) finds its family and a narrower entry
/// (`gpt-4o-mini`) wins over a wider one (`gpt-4o`); a model named by a
/// resource path no entry starts (Vertex AI's
/// `projects/p/locations/l/publishers/google/models/gemini-2.5-flash`) by
/// its last segment; `None` when none matches.
pub(crate) fn longest_prefix<'a, T, I>(model: &str, entries: I) -> Option<T>
where
    I: IntoIterator<Item = (&'a str, T)>,
    I::IntoIter: Clone,
{
    let entries = entries.into_iter();
    let best = |name: &str| {
        entries
            .clone()
            .filter(|(prefix, _)| name.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, value)| value)
    };
    best(model).or_else(|| model.rsplit_once('/').and_then(|(_, last)| best(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_path_finds_its_model_by_the_last_segment() {
        let table = [("gemini-2.5-flash", 1), ("gemini-2.5", 2), ("org/model", 3)];
        let path = "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash";
        assert_eq!(longest_prefix(path, table), Some(1));
        assert_eq!(longest_prefix("org/model-7b", table), Some(3));
        assert_eq!(longest_prefix("models/gemini-2.5-pro", table), Some(2));
        assert_eq!(longest_prefix("projects/p/other", table), None);
    }
}
