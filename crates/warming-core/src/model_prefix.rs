//! Tables keyed by model-name prefix: the rule every such table follows.

/// The value of the longest prefix of `model` among `entries`, so a dated
/// name (`claude-sonnet-4-5-20250929`) finds its family and a narrower entry
/// (`gpt-4o-mini`) wins over a wider one (`gpt-4o`); `None` when none
/// matches.
pub(crate) fn longest_prefix<'a, T>(
    model: &str,
    entries: impl IntoIterator<Item = (&'a str, T)>,
) -> Option<T> {
    entries
        .into_iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, value)| value)
}
