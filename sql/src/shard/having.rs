//! HAVING over several data nodes: the condition is taken out of the node
//! statements (a group's rows are spread over nodes) and evaluated on the
//! merged groups, its aggregates read from merged columns.

use shardgate_merge::error::MergeError;
use shardgate_merge::Value;

use super::error::MergeShapeError;
use super::scatter::Ix;

/// A HAVING condition over result columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Column(Ix),
    /// Resolved to its column index at run time.
    At(usize),
    Param(usize),
    Number(String),
    Text(Vec<u8>),
    Null,
    Compare(CmpOp, Box<Cond>, Box<Cond>),
    Arith(ArithOp, Box<Cond>, Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Neg(Box<Cond>),
    IsNull(Box<Cond>, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A value while evaluating: SQL's three-valued logic uses `Null`.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Int(i128),
    Num(f64),
    Text(Vec<u8>),
}

impl Cond {
    /// Replaces columns and parameters: `index` maps a column, `param` a `?`.
    pub fn bind(
        &self,
        index: &dyn Fn(Ix) -> usize,
        param: &dyn Fn(usize) -> Option<Cond>,
    ) -> Result<Cond, MergeShapeError> {
        let b = |c: &Cond| c.bind(index, param).map(Box::new);
        Ok(match self {
            Cond::Column(ix) => Cond::At(index(*ix)),
            Cond::Param(i) => param(*i).ok_or(MergeShapeError::UnboundHavingParameter(*i))?,
            Cond::Compare(op, a, c) => Cond::Compare(*op, b(a)?, b(c)?),
            Cond::Arith(op, a, c) => Cond::Arith(*op, b(a)?, b(c)?),
            Cond::And(a, c) => Cond::And(b(a)?, b(c)?),
            Cond::Or(a, c) => Cond::Or(b(a)?, b(c)?),
            Cond::Not(a) => Cond::Not(b(a)?),
            Cond::Neg(a) => Cond::Neg(b(a)?),
            Cond::IsNull(a, negated) => Cond::IsNull(b(a)?, *negated),
            other => other.clone(),
        })
    }

    /// Whether a merged row passes (NULL counts as false, as in SQL).
    pub fn passes(&self, row: &[Value]) -> Result<bool, MergeError> {
        Ok(matches!(self.eval(row)?, Scalar::Int(n) if n != 0)
            || matches!(self.eval(row)?, Scalar::Num(f) if f != 0.0))
    }

    fn eval(&self, row: &[Value]) -> Result<Scalar, MergeError> {
        let truth = |b: bool| Scalar::Int(i128::from(b));
        Ok(match self {
            Cond::At(i) => match row.get(*i) {
                Some(v) => scalar(v),
                None => return Err(MergeError::Plan(format!("HAVING column {i} is missing"))),
            },
            Cond::Column(_) | Cond::Param(_) => {
                return Err(MergeError::Plan("HAVING evaluated before binding".into()))
            }
            Cond::Number(n) => number(n),
            Cond::Text(t) => Scalar::Text(t.clone()),
            Cond::Null => Scalar::Null,
            Cond::Compare(op, a, b) => match compare(&a.eval(row)?, &b.eval(row)?)? {
                None => Scalar::Null,
                Some(ord) => truth(match op {
                    CmpOp::Eq => ord.is_eq(),
                    CmpOp::Ne => ord.is_ne(),
                    CmpOp::Lt => ord.is_lt(),
                    CmpOp::Le => ord.is_le(),
                    CmpOp::Gt => ord.is_gt(),
                    CmpOp::Ge => ord.is_ge(),
                }),
            },
            Cond::Arith(op, a, b) => arith(*op, a.eval(row)?, b.eval(row)?),
            Cond::And(a, b) => match (bool_of(&a.eval(row)?), bool_of(&b.eval(row)?)) {
                (Some(false), _) | (_, Some(false)) => truth(false),
                (Some(true), Some(true)) => truth(true),
                _ => Scalar::Null,
            },
            Cond::Or(a, b) => match (bool_of(&a.eval(row)?), bool_of(&b.eval(row)?)) {
                (Some(true), _) | (_, Some(true)) => truth(true),
                (Some(false), Some(false)) => truth(false),
                _ => Scalar::Null,
            },
            Cond::Not(a) => match bool_of(&a.eval(row)?) {
                Some(b) => truth(!b),
                None => Scalar::Null,
            },
            Cond::Neg(a) => match a.eval(row)? {
                Scalar::Int(n) => Scalar::Int(-n),
                Scalar::Num(f) => Scalar::Num(-f),
                Scalar::Null => Scalar::Null,
                Scalar::Text(_) => return Err(text_error()),
            },
            Cond::IsNull(a, negated) => truth((a.eval(row)? == Scalar::Null) != *negated),
        })
    }
}

fn text_error() -> MergeError {
    MergeError::Plan("HAVING comparisons of text across data nodes are not supported".into())
}

fn number(text: &str) -> Scalar {
    match text.parse::<i128>() {
        Ok(n) => Scalar::Int(n),
        Err(_) => text.parse::<f64>().map_or(Scalar::Null, Scalar::Num),
    }
}

fn scalar(v: &Value) -> Scalar {
    match v {
        Value::Null => Scalar::Null,
        Value::Int(i) => Scalar::Int(i128::from(*i)),
        Value::UInt(u) => Scalar::Int(i128::from(*u)),
        Value::Double(d) => Scalar::Num(*d),
        Value::Float(f) => Scalar::Num(f64::from(*f)),
        Value::Decimal(d) => number(d),
        Value::Bytes(b) => Scalar::Text(b.clone()),
    }
}

fn bool_of(s: &Scalar) -> Option<bool> {
    match s {
        Scalar::Null => None,
        Scalar::Int(n) => Some(*n != 0),
        Scalar::Num(f) => Some(*f != 0.0),
        Scalar::Text(t) => Some(
            std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .is_some_and(|f| f != 0.0),
        ),
    }
}

fn compare(a: &Scalar, b: &Scalar) -> Result<Option<std::cmp::Ordering>, MergeError> {
    Ok(match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => None,
        (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(y)),
        (Scalar::Text(_), Scalar::Text(_)) => return Err(text_error()),
        // Text against a number compares as numbers, as MariaDB does.
        (Scalar::Text(t), n) => to_f64(&text_number(t)).partial_cmp(&to_f64(n)),
        (n, Scalar::Text(t)) => to_f64(n).partial_cmp(&to_f64(&text_number(t))),
        (x, y) => to_f64(x).partial_cmp(&to_f64(y)),
    })
}

/// A string's numeric value in a comparison with a number: its leading
/// number, 0 when it has none (MariaDB warns and uses that value).
fn text_number(t: &[u8]) -> Scalar {
    let text = std::str::from_utf8(t).unwrap_or("").trim();
    let end = text
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit()
                || *c == '.'
                || ((*c == '-' || *c == '+') && *i == 0)
                || *c == 'e'
                || *c == 'E'
        })
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    match text[..end].parse::<f64>() {
        Ok(f) => Scalar::Num(f),
        Err(_) => Scalar::Num(0.0),
    }
}

fn to_f64(s: &Scalar) -> f64 {
    match s {
        Scalar::Int(n) => *n as f64,
        Scalar::Num(f) => *f,
        _ => f64::NAN,
    }
}

fn arith(op: ArithOp, a: Scalar, b: Scalar) -> Scalar {
    match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => Scalar::Null,
        (Scalar::Int(x), Scalar::Int(y)) if op != ArithOp::Div => match op {
            ArithOp::Add => Scalar::Int(x + y),
            ArithOp::Sub => Scalar::Int(x - y),
            _ => Scalar::Int(x * y),
        },
        (x, y) => {
            let (x, y) = (to_f64(&x), to_f64(&y));
            match op {
                ArithOp::Add => Scalar::Num(x + y),
                ArithOp::Sub => Scalar::Num(x - y),
                ArithOp::Mul => Scalar::Num(x * y),
                // Division by zero is NULL in MySQL.
                ArithOp::Div if y == 0.0 => Scalar::Null,
                ArithOp::Div => Scalar::Num(x / y),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(op: CmpOp, a: Cond, b: Cond) -> Cond {
        Cond::Compare(op, Box::new(a), Box::new(b))
    }

    #[test]
    fn evaluates_with_sql_null_logic() {
        let row = vec![
            Value::Int(80),
            Value::Decimal("-1.5000".into()),
            Value::Null,
        ];
        let count_gt = cmp(CmpOp::Gt, Cond::At(0), Cond::Number("75".into()));
        assert!(count_gt.passes(&row).unwrap());
        let sum_gt = cmp(CmpOp::Gt, Cond::At(1), Cond::Number("0".into()));
        assert!(!sum_gt.passes(&row).unwrap());
        let null_cmp = cmp(CmpOp::Eq, Cond::At(2), Cond::Number("1".into()));
        assert!(!null_cmp.passes(&row).unwrap());
        assert!(!Cond::Not(Box::new(null_cmp.clone())).passes(&row).unwrap());
        let or = Cond::Or(Box::new(null_cmp), Box::new(count_gt));
        assert!(or.passes(&row).unwrap());
        assert!(Cond::IsNull(Box::new(Cond::At(2)), false)
            .passes(&row)
            .unwrap());
        let avg = cmp(
            CmpOp::Ge,
            Cond::Arith(
                ArithOp::Div,
                Box::new(Cond::At(0)),
                Box::new(Cond::Number("3".into())),
            ),
            Cond::Number("26.6".into()),
        );
        assert!(avg.passes(&row).unwrap());
    }

    #[test]
    fn binds_columns_and_parameters() {
        let c = cmp(CmpOp::Gt, Cond::Column(Ix::Derived(1)), Cond::Param(0));
        let bound = c
            .bind(
                &|ix| match ix {
                    Ix::Visible(i) => i,
                    Ix::Derived(k) => 10 + k,
                },
                &|_| Some(Cond::Number("5".into())),
            )
            .unwrap();
        assert_eq!(
            bound,
            cmp(CmpOp::Gt, Cond::At(11), Cond::Number("5".into()))
        );
    }

    #[test]
    fn text_comparisons_are_refused() {
        let c = cmp(CmpOp::Eq, Cond::At(0), Cond::Text(b"a".to_vec()));
        assert!(c.passes(&[Value::Bytes(b"a".to_vec())]).is_err());
    }

    #[test]
    fn a_string_against_a_number_compares_as_numbers() {
        let c = cmp(CmpOp::Gt, Cond::At(0), Cond::Text(b"-1000000.5".to_vec()));
        assert!(c.passes(&[Value::Decimal("-3.0000".into())]).unwrap());
        let c = cmp(CmpOp::Gt, Cond::At(0), Cond::Text(b"75".to_vec()));
        assert!(!c.passes(&[Value::Int(75)]).unwrap());
    }
}
