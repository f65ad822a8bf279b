//! Inline expressions such as `ds${0..3}.users_${0..15}`: each `${...}` is a
//! numeric range or a list, and the text expands to the Cartesian product of
//! all placeholders, the leftmost varying slowest.

use std::fmt;
use thiserror::Error;

/// Cap on the names one expression may expand to: a typo such as
/// `${0..1000000000}` must be refused, not exhaust memory.
pub const MAX_EXPANSION: usize = 65_536;

/// A physical table on a data source: where rows actually live.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataNode {
    pub data_source: String,
    pub table: String,
}

impl DataNode {
    pub fn new(data_source: impl Into<String>, table: impl Into<String>) -> Self {
        DataNode {
            data_source: data_source.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for DataNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.data_source, self.table)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InlineError {
    #[error("unclosed '${{' in '{0}'")]
    Unclosed(String),
    #[error("range ${{{lower}..{upper}}} has lower bound greater than upper")]
    ReversedRange { lower: i64, upper: i64 },
    #[error("empty list in '${{{0}}}'")]
    EmptyList(String),
    #[error("'${{{0}}}' is neither a range like ${{0..3}} nor a list like ${{['a','b']}}")]
    UnsupportedPlaceholder(String),
    #[error("'{0}' expands to more than {MAX_EXPANSION} names")]
    TooLarge(String),
    #[error("'{0}' is not of the form data_source.table")]
    NotADataNode(String),
    #[error("empty expression")]
    Empty,
}

/// One piece of an expression: literal text, or the values of a placeholder.
enum Piece {
    Literal(String),
    Choices(Vec<String>),
}

/// Expands an inline expression into its names, in order.
/// Top-level commas separate independent expressions whose results are
/// concatenated (`ds0.t_0, ds1.t_${1..2}`), as ShardingSphere allows.
pub fn expand(expression: &str) -> Result<Vec<String>, InlineError> {
    let mut names = Vec::new();
    for part in split_top_level(expression, ',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(InlineError::Empty);
        }
        names.extend(expand_one(part)?);
        if names.len() > MAX_EXPANSION {
            return Err(InlineError::TooLarge(expression.to_string()));
        }
    }
    Ok(names)
}

/// Expands `data_source.table` expressions into data nodes, in order.
pub fn expand_data_nodes(expression: &str) -> Result<Vec<DataNode>, InlineError> {
    expand(expression)?
        .into_iter()
        .map(|name| match name.split_once('.') {
            Some((source, table))
                if !source.is_empty() && !table.is_empty() && !table.contains('.') =>
            {
                Ok(DataNode::new(source, table))
            }
            _ => Err(InlineError::NotADataNode(name)),
        })
        .collect()
}

fn expand_one(expression: &str) -> Result<Vec<String>, InlineError> {
    let mut names = vec![String::new()];
    for piece in parse_pieces(expression)? {
        match piece {
            Piece::Literal(text) => names.iter_mut().for_each(|name| name.push_str(&text)),
            Piece::Choices(choices) => {
                if names.len().saturating_mul(choices.len()) > MAX_EXPANSION {
                    return Err(InlineError::TooLarge(expression.to_string()));
                }
                names = names
                    .iter()
                    .flat_map(|name| choices.iter().map(move |choice| format!("{name}{choice}")))
                    .collect();
            }
        }
    }
    Ok(names)
}

fn parse_pieces(expression: &str) -> Result<Vec<Piece>, InlineError> {
    let mut pieces = Vec::new();
    let mut rest = expression;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Literal(rest[..start].to_string()));
        }
        let body_and_after = &rest[start + 2..];
        let end = body_and_after
            .find('}')
            .ok_or_else(|| InlineError::Unclosed(expression.to_string()))?;
        pieces.push(Piece::Choices(parse_placeholder(
            body_and_after[..end].trim(),
        )?));
        rest = &body_and_after[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_string()));
    }
    Ok(pieces)
}

fn parse_placeholder(body: &str) -> Result<Vec<String>, InlineError> {
    if let Some(items) = body
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
    {
        return parse_list(body, items);
    }
    let unsupported = || InlineError::UnsupportedPlaceholder(body.to_string());
    let (lower, upper) = body.split_once("..").ok_or_else(unsupported)?;
    let lower: i64 = lower.trim().parse().map_err(|_| unsupported())?;
    let upper: i64 = upper.trim().parse().map_err(|_| unsupported())?;
    if lower > upper {
        return Err(InlineError::ReversedRange { lower, upper });
    }
    if upper.abs_diff(lower) >= MAX_EXPANSION as u64 {
        return Err(InlineError::TooLarge(format!("${{{body}}}")));
    }
    Ok((lower..=upper).map(|value| value.to_string()).collect())
}

fn parse_list(body: &str, items: &str) -> Result<Vec<String>, InlineError> {
    if items.trim().is_empty() {
        return Err(InlineError::EmptyList(body.to_string()));
    }
    items
        .split(',')
        .map(|item| {
            let item = item.trim();
            let unquoted = ['\'', '"'].iter().find_map(|quote| {
                item.strip_prefix(*quote)
                    .and_then(|inner| inner.strip_suffix(*quote))
            });
            match unquoted {
                Some(text) => Ok(text.to_string()),
                None if !item.is_empty() && item.parse::<i64>().is_ok() => Ok(item.to_string()),
                None => Err(InlineError::UnsupportedPlaceholder(body.to_string())),
            }
        })
        .collect()
}

/// Splits on `separator` where it is not inside a `${...}` placeholder.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut previous = '\0';
    for (at, c) in text.char_indices() {
        match c {
            '{' if previous == '$' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if c == separator && depth == 0 => {
                parts.push(&text[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
        previous = c;
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cartesian_product_in_order() {
        let nodes = expand_data_nodes("ds${0..3}.users_${0..15}").unwrap();
        assert_eq!(nodes.len(), 64);
        assert_eq!(nodes[0], DataNode::new("ds0", "users_0"));
        assert_eq!(nodes[1], DataNode::new("ds0", "users_1"));
        assert_eq!(nodes[16], DataNode::new("ds1", "users_0"));
        assert_eq!(nodes[63], DataNode::new("ds3", "users_15"));
    }

    #[test]
    fn numeric_month_ranges() {
        let names = expand("message_records_${202401..202412}").unwrap();
        assert_eq!(
            names.first().map(String::as_str),
            Some("message_records_202401")
        );
        assert_eq!(
            names.last().map(String::as_str),
            Some("message_records_202412")
        );
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn lists_and_several_placeholders_in_one_segment() {
        assert_eq!(expand("t_${['a', \"b\"]}").unwrap(), ["t_a", "t_b"]);
        assert_eq!(expand("t_${[1,2]}").unwrap(), ["t_1", "t_2"]);
        assert_eq!(
            expand("t_${0..1}_${['x','y']}").unwrap(),
            ["t_0_x", "t_0_y", "t_1_x", "t_1_y"]
        );
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn top_level_commas_concatenate() {
        let nodes = expand_data_nodes("ds0.t_${0..1}, ds1.t_${[2,3]}").unwrap();
        let names: Vec<String> = nodes.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["ds0.t_0", "ds0.t_1", "ds1.t_2", "ds1.t_3"]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            expand("x_${5..3}").unwrap_err().to_string(),
            "range ${5..3} has lower bound greater than upper"
        );
        assert_eq!(
            expand("x_${0..3").unwrap_err().to_string(),
            "unclosed '${' in 'x_${0..3'"
        );
        assert_eq!(
            expand("x_${[]}").unwrap_err().to_string(),
            "empty list in '${[]}'"
        );
        assert!(matches!(
            expand("x_${abc}"),
            Err(InlineError::UnsupportedPlaceholder(_))
        ));
        assert!(matches!(
            expand("x_${[a]}"),
            Err(InlineError::UnsupportedPlaceholder(_))
        ));
        assert!(matches!(
            expand("x_${0..100000000}"),
            Err(InlineError::TooLarge(_))
        ));
        assert!(matches!(expand("a,,b"), Err(InlineError::Empty)));
        assert!(matches!(
            expand_data_nodes("users_${0..1}"),
            Err(InlineError::NotADataNode(_))
        ));
        assert!(matches!(
            expand_data_nodes("a.b.c"),
            Err(InlineError::NotADataNode(_))
        ));
    }
}
