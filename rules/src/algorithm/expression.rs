//! The `expression` algorithm: a name template such as
//! `users_${(user_id / 4) % 16}` whose placeholder is integer arithmetic over
//! the sharding column (`+ - * / %`, unary minus, parentheses). A small
//! recursive-descent parser; nothing else is evaluated.

use super::{AlgorithmError, ShardKey, ShardingAlgorithm, Targets};
use std::collections::HashMap;
use std::ops::Bound;
use thiserror::Error;

/// Parsed arithmetic over one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    Literal(i64),
    Column,
    Negate(Box<Expression>),
    Binary(Operator, Box<Expression>, Box<Expression>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Add,
    Subtract,
    Multiply,
    /// Integer division truncating toward zero, like MySQL's `DIV`.
    Divide,
    /// Remainder with the dividend's sign, like MySQL's `%`.
    Remainder,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpressionError {
    #[error("'{0}' must contain exactly one ${{...}} placeholder")]
    NotATemplate(String),
    #[error("unexpected '{found}' at offset {offset} in '{text}'")]
    Unexpected {
        found: String,
        offset: usize,
        text: String,
    },
    #[error("'{text}' ends too early")]
    UnexpectedEnd { text: String },
    #[error("'{found}' is not the sharding column '{column}'")]
    UnknownColumn { found: String, column: String },
    #[error("integer literal '{0}' is too large")]
    LiteralTooLarge(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArithmeticError {
    #[error("division by zero")]
    DivisionByZero,
    #[error("arithmetic overflow")]
    Overflow,
}

impl Expression {
    /// Parses arithmetic in which the only identifier allowed is `column`
    /// (compared case-insensitively, like MySQL column names).
    pub fn parse(text: &str, column: &str) -> Result<Expression, ExpressionError> {
        let mut parser = Parser {
            text,
            column,
            tokens: tokenize(text)?,
            position: 0,
        };
        let expression = parser.sum()?;
        match parser.tokens.get(parser.position) {
            None => Ok(expression),
            Some(token) => Err(parser.unexpected(token)),
        }
    }

    pub fn evaluate(&self, column_value: i64) -> Result<i64, ArithmeticError> {
        match self {
            Expression::Literal(value) => Ok(*value),
            Expression::Column => Ok(column_value),
            Expression::Negate(inner) => inner
                .evaluate(column_value)?
                .checked_neg()
                .ok_or(ArithmeticError::Overflow),
            Expression::Binary(operator, left, right) => {
                let (left, right) = (left.evaluate(column_value)?, right.evaluate(column_value)?);
                let result = match operator {
                    Operator::Add => left.checked_add(right),
                    Operator::Subtract => left.checked_sub(right),
                    Operator::Multiply => left.checked_mul(right),
                    Operator::Divide | Operator::Remainder if right == 0 => {
                        return Err(ArithmeticError::DivisionByZero)
                    }
                    Operator::Divide => left.checked_div(right),
                    Operator::Remainder => left.checked_rem(right),
                };
                result.ok_or(ArithmeticError::Overflow)
            }
        }
    }
}

/// `prefix${expression}suffix`: renders a target name from a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    /// As written in the configuration.
    text: String,
    prefix: String,
    expression: Expression,
    suffix: String,
}

impl NameTemplate {
    pub fn parse(text: &str, column: &str) -> Result<NameTemplate, ExpressionError> {
        let not_a_template = || ExpressionError::NotATemplate(text.to_string());
        let (prefix, rest) = text.split_once("${").ok_or_else(not_a_template)?;
        let (body, suffix) = rest.split_once('}').ok_or_else(not_a_template)?;
        if suffix.contains("${") {
            return Err(not_a_template());
        }
        Ok(NameTemplate {
            text: text.to_string(),
            prefix: prefix.to_string(),
            expression: Expression::parse(body, column)?,
            suffix: suffix.to_string(),
        })
    }

    /// The template as written in the configuration.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn render(&self, column_value: i64) -> Result<String, ArithmeticError> {
        let value = self.expression.evaluate(column_value)?;
        Ok(self.name_of(value))
    }

    fn name_of(&self, value: i64) -> String {
        format!("{}{value}{}", self.prefix, self.suffix)
    }

    /// The placeholder value for which the template renders `name`, if any.
    fn value_named(&self, name: &str) -> Option<i64> {
        let digits = name
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        let value: i64 = digits.parse().ok()?;
        // `users_+1` and `users_01` parse, but no value renders them.
        (value.to_string() == digits).then_some(value)
    }
}

/// Picks the target whose name the template renders.
#[derive(Debug, Clone)]
pub struct ExpressionAlgorithm {
    template: NameTemplate,
    /// Targets by the placeholder value that renders their name: routing
    /// evaluates the expression and looks the number up, without rendering
    /// a name for every statement.
    positions: Positions,
}

/// Target positions by placeholder value.
#[derive(Debug, Clone)]
enum Positions {
    /// Values from `first` on, mostly all present (`t_${id % 16}`): by index.
    Dense {
        first: i64,
        slots: Vec<Option<usize>>,
    },
    Sparse(HashMap<i64, usize>),
}

impl Positions {
    fn new(by_value: HashMap<i64, usize>) -> Self {
        let (Some(&first), Some(&last)) = (by_value.keys().min(), by_value.keys().max()) else {
            return Positions::Sparse(by_value);
        };
        let span = i128::from(last) - i128::from(first) + 1;
        if span > 2 * by_value.len() as i128 + 16 {
            return Positions::Sparse(by_value);
        }
        let mut slots = vec![None; span as usize];
        for (value, position) in by_value {
            slots[(value - first) as usize] = Some(position);
        }
        Positions::Dense { first, slots }
    }

    fn get(&self, value: i64) -> Option<usize> {
        match self {
            Positions::Dense { first, slots } => {
                let index = usize::try_from(value.checked_sub(*first)?).ok()?;
                slots.get(index).copied().flatten()
            }
            Positions::Sparse(by_value) => by_value.get(&value).copied(),
        }
    }
}

impl ExpressionAlgorithm {
    pub fn new(template: NameTemplate, targets: &[String]) -> Self {
        let by_value = targets
            .iter()
            .enumerate()
            .filter_map(|(position, name)| Some((template.value_named(name)?, position)))
            .collect();
        ExpressionAlgorithm {
            template,
            positions: Positions::new(by_value),
        }
    }
}

impl ShardingAlgorithm for ExpressionAlgorithm {
    fn target(&self, key: ShardKey<'_>) -> Result<usize, AlgorithmError> {
        let value = self.template.expression.evaluate(key.integer()?)?;
        self.positions
            .get(value)
            .ok_or_else(|| AlgorithmError::NoTarget(self.template.name_of(value)))
    }

    fn targets_in_range(
        &self,
        _: Bound<ShardKey<'_>>,
        _: Bound<ShardKey<'_>>,
    ) -> Result<Targets, AlgorithmError> {
        Ok(Targets::All)
    }

    fn takes_integers(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Number(i64),
    Identifier(String),
    Symbol(char),
}

/// A token and the byte offset where it starts, for error messages.
type Spanned = (Token, usize);

fn tokenize(text: &str) -> Result<Vec<Spanned>, ExpressionError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(offset, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_digit() || c.is_ascii_alphabetic() || c == '_' {
            let mut word = String::new();
            while let Some(&(_, c)) = chars
                .peek()
                .filter(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
            {
                word.push(c);
                chars.next();
            }
            let token = if word.bytes().all(|b| b.is_ascii_digit()) {
                Token::Number(
                    word.parse()
                        .map_err(|_| ExpressionError::LiteralTooLarge(word.clone()))?,
                )
            } else {
                Token::Identifier(word)
            };
            tokens.push((token, offset));
        } else if "+-*/%()".contains(c) {
            tokens.push((Token::Symbol(c), offset));
            chars.next();
        } else {
            return Err(ExpressionError::Unexpected {
                found: c.to_string(),
                offset,
                text: text.to_string(),
            });
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    column: &'a str,
    tokens: Vec<Spanned>,
    position: usize,
}

impl Parser<'_> {
    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<Expression, ExpressionError> {
        let mut left = self.product()?;
        while let Some(operator) =
            self.take_operator(&[('+', Operator::Add), ('-', Operator::Subtract)])
        {
            left = Expression::Binary(operator, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    /// product := unary (('*' | '/' | '%') unary)*
    fn product(&mut self) -> Result<Expression, ExpressionError> {
        let mut left = self.unary()?;
        let operators = [
            ('*', Operator::Multiply),
            ('/', Operator::Divide),
            ('%', Operator::Remainder),
        ];
        while let Some(operator) = self.take_operator(&operators) {
            left = Expression::Binary(operator, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    /// unary := '-' unary | number | column | '(' sum ')'
    fn unary(&mut self) -> Result<Expression, ExpressionError> {
        let (token, offset) = self.next()?;
        match token {
            Token::Symbol('-') => Ok(Expression::Negate(Box::new(self.unary()?))),
            Token::Number(value) => Ok(Expression::Literal(value)),
            Token::Identifier(name) if name.eq_ignore_ascii_case(self.column) => {
                Ok(Expression::Column)
            }
            Token::Identifier(name) => Err(ExpressionError::UnknownColumn {
                found: name,
                column: self.column.to_string(),
            }),
            Token::Symbol('(') => {
                let inner = self.sum()?;
                match self.next()? {
                    (Token::Symbol(')'), _) => Ok(inner),
                    other => Err(self.unexpected(&other)),
                }
            }
            symbol @ Token::Symbol(_) => Err(self.unexpected(&(symbol, offset))),
        }
    }

    fn next(&mut self) -> Result<Spanned, ExpressionError> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token.ok_or_else(|| ExpressionError::UnexpectedEnd {
            text: self.text.to_string(),
        })
    }

    fn take_operator(&mut self, operators: &[(char, Operator)]) -> Option<Operator> {
        let Some((Token::Symbol(symbol), _)) = self.tokens.get(self.position) else {
            return None;
        };
        let operator = operators
            .iter()
            .find(|(candidate, _)| candidate == symbol)
            .map(|(_, operator)| *operator)?;
        self.position += 1;
        Some(operator)
    }

    fn unexpected(&self, (token, offset): &Spanned) -> ExpressionError {
        let found = match token {
            Token::Number(value) => value.to_string(),
            Token::Identifier(name) => name.clone(),
            Token::Symbol(symbol) => symbol.to_string(),
        };
        ExpressionError::Unexpected {
            found,
            offset: *offset,
            text: self.text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluate(text: &str, value: i64) -> Result<i64, ArithmeticError> {
        Expression::parse(text, "user_id").unwrap().evaluate(value)
    }

    #[test]
    fn precedence_parentheses_and_unary_minus() {
        assert_eq!(evaluate("(user_id / 4) % 16", 67), Ok(0));
        assert_eq!(evaluate("(user_id / 4) % 16", 5), Ok(1));
        assert_eq!(evaluate("1 + 2 * 3", 0), Ok(7));
        assert_eq!(evaluate("(1 + 2) * 3", 0), Ok(9));
        assert_eq!(evaluate("10 - 4 - 3", 0), Ok(3));
        assert_eq!(evaluate("-user_id + 1", 5), Ok(-4));
        assert_eq!(evaluate("- -USER_ID", 5), Ok(5));
    }

    #[test]
    fn division_truncates_toward_zero_like_mysql() {
        assert_eq!(evaluate("user_id / 4", -5), Ok(-1));
        assert_eq!(evaluate("user_id % 4", -5), Ok(-1));
    }

    #[test]
    fn arithmetic_errors_are_reported() {
        assert_eq!(
            evaluate("user_id / 0", 1),
            Err(ArithmeticError::DivisionByZero)
        );
        assert_eq!(
            evaluate("user_id % (user_id - 1)", 1),
            Err(ArithmeticError::DivisionByZero)
        );
        assert_eq!(
            evaluate("user_id * 2", i64::MAX),
            Err(ArithmeticError::Overflow)
        );
        assert_eq!(
            evaluate("user_id / -1", i64::MIN),
            Err(ArithmeticError::Overflow)
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let unknown = Expression::parse("tenant_id % 4", "user_id").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "'tenant_id' is not the sharding column 'user_id'"
        );
        let stray = Expression::parse("user_id ^ 2", "user_id").unwrap_err();
        assert_eq!(
            stray.to_string(),
            "unexpected '^' at offset 8 in 'user_id ^ 2'"
        );
        assert!(matches!(
            Expression::parse("(user_id", "user_id"),
            Err(ExpressionError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            Expression::parse("user_id 4", "user_id"),
            Err(ExpressionError::Unexpected { .. })
        ));
        assert!(matches!(
            Expression::parse("* 4", "user_id"),
            Err(ExpressionError::Unexpected { .. })
        ));
        assert!(matches!(
            Expression::parse("", "user_id"),
            Err(ExpressionError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            Expression::parse("99999999999999999999", "user_id"),
            Err(ExpressionError::LiteralTooLarge(_))
        ));
    }

    #[test]
    fn templates_render_names_and_pick_targets() {
        let template = NameTemplate::parse("users_${(user_id / 4) % 16}", "user_id").unwrap();
        assert_eq!(template.render(67), Ok("users_0".to_string()));
        let targets: Vec<String> = (0..16).map(|i| format!("users_{i}")).collect();
        let algorithm = ExpressionAlgorithm::new(template, &targets);
        assert!(matches!(algorithm.positions, Positions::Dense { .. }));
        assert_eq!(algorithm.target(ShardKey::Int(5)), Ok(1));
        assert_eq!(algorithm.target(ShardKey::Text("63")), Ok(15));
        assert_eq!(
            algorithm.target(ShardKey::Int(-5)),
            Err(AlgorithmError::NoTarget("users_-1".into()))
        );
        // Values far apart are looked up by hash, not by index.
        let far: Vec<String> = ["t_-9000000000000000000", "t_7", "t_9000000000000000000"]
            .into_iter()
            .map(String::from)
            .collect();
        let template = NameTemplate::parse("t_${user_id}", "user_id").unwrap();
        let algorithm = ExpressionAlgorithm::new(template, &far);
        assert!(matches!(algorithm.positions, Positions::Sparse(_)));
        assert_eq!(algorithm.target(ShardKey::Int(7)), Ok(1));
        assert_eq!(
            algorithm.target(ShardKey::Int(9_000_000_000_000_000_000)),
            Ok(2)
        );
        assert!(algorithm.target(ShardKey::Int(8)).is_err());
        // Only names the template can render are targets.
        let odd: Vec<String> = ["t_01", "t_+2", "t_3", "t_x", "u_4"]
            .into_iter()
            .map(String::from)
            .collect();
        let template = NameTemplate::parse("t_${user_id}", "user_id").unwrap();
        let algorithm = ExpressionAlgorithm::new(template, &odd);
        assert_eq!(algorithm.target(ShardKey::Int(3)), Ok(2));
        for (value, name) in [(1, "t_1"), (2, "t_2"), (4, "t_4")] {
            assert_eq!(
                algorithm.target(ShardKey::Int(value)),
                Err(AlgorithmError::NoTarget(name.into()))
            );
        }
        assert!(matches!(
            NameTemplate::parse("users", "user_id"),
            Err(ExpressionError::NotATemplate(_))
        ));
        assert!(matches!(
            NameTemplate::parse("t_${user_id}_${user_id}", "user_id"),
            Err(ExpressionError::NotATemplate(_))
        ));
    }
}
